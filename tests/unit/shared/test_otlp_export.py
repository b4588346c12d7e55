"""With OTEL_EXPORTER_OTLP_ENDPOINT set, spans reach an OTLP/HTTP receiver (decoded from protobuf here)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from opentelemetry import trace
    from stratos_shared.telemetry import setup_tracing
    provider = setup_tracing("otlp-test", Path(sys.argv[1]))
    with trace.get_tracer("t").start_as_current_span("stage.work", attributes={"job.id": "job-otlp"}):
        pass
    provider.force_flush()
    provider.shutdown()
    """
)


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    received: list[ExportTraceServiceRequest] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/v1/traces":
                received.append(ExportTraceServiceRequest.FromString(body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()


def test_spans_are_exported_over_otlp_http(receiver, tmp_path: Path) -> None:
    endpoint, received = receiver
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env, check=True, timeout=60)
    spans = [
        span
        for request in received
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    assert [s.name for s in spans] == ["stage.work"]
    attributes = {a.key: a.value.string_value for a in spans[0].attributes}
    assert attributes["job.id"] == "job-otlp"
    services = {
        a.value.string_value
        for request in received
        for resource in request.resource_spans
        for a in resource.resource.attributes
        if a.key == "service.name"
    }
    assert services == {"otlp-test"}
    assert (tmp_path / "otlp-test.jsonl").read_text().count("stage.work") == 1  # the local store gets it too
