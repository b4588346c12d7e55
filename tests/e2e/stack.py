"""The six services as separate processes against a test nats-server, as `stratos up` runs them."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from stratos_cli.stack import SERVICES, launch_service, service_env, stop_pids
from stratos_shared.embedded import NatsServerProcess

ROOT = Path(__file__).parents[2]


@contextlib.contextmanager
def service_processes(
    nats_server: NatsServerProcess, home: Path, extra_env: dict[str, str] | None = None
) -> Iterator[dict[str, int]]:
    """Start every service as its own process; SIGTERM them all afterwards (logs in `<home>/logs`)."""
    (home / "logs").mkdir(parents=True, exist_ok=True)
    env = service_env(home, nats_server.url, 1, {"STRATOS_CATALOG": str(ROOT / "examples" / "servers.yaml")})
    env.update(extra_env or {})
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    pids = {service: launch_service(service, home, env) for service in SERVICES}
    try:
        yield pids
    finally:
        stop_pids(pids)
        for pid in pids.values():
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def logs_of(home: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted((home / "logs").glob("*.log")))


__all__ = ["ROOT", "logs_of", "service_processes", "subprocess"]
