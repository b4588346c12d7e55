"""The Prometheus endpoint serves Stratos' instruments once a port is set."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import httpx

from stratos_shared.embedded import free_port, wait_for_port

SCRIPT = textwrap.dedent(
    """
    import sys, time
    from stratos_shared.metrics import events_handled, replans, setup_metrics
    setup_metrics("test-service", int(sys.argv[1]))
    events_handled.add(3, {"service": "test-service", "event_type": "JobSubmitted", "outcome": "ok"})
    replans.add(2)
    time.sleep(30)
    """
)


def test_metrics_endpoint_exports_stratos_instruments() -> None:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", SCRIPT, str(port)])
    try:
        wait_for_port(port, 20)
        body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        process.kill()
        process.wait()
    lines = body.splitlines()
    handled = [line for line in lines if line.startswith("stratos_events_handled_total{")]
    assert len(handled) == 1
    assert all(f'{k}="{v}"' in handled[0] for k, v in [("event_type", "JobSubmitted"), ("outcome", "ok")])
    assert handled[0].endswith(" 3.0")
    assert any(line.startswith("stratos_replans_total{") and line.endswith(" 2.0") for line in lines)
