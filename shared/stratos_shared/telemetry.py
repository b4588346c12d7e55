"""Tracing set-up shared by every service (logs: `stratos_shared.logs`).

With ``OTEL_EXPORTER_OTLP_ENDPOINT`` set, spans go to that collector (Jaeger in
docker-compose). Without one (the embedded default) they are appended as JSON
lines to ``<trace_dir>/<service>.jsonl`` so `stratos trace JOB` can draw a job's
waterfall with no collector running.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator


class JsonlSpanExporter(SpanExporter):
    """Appends finished spans as one JSON object per line (safe across threads of one process)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = [json.dumps(span_to_dict(span)) for span in spans]
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.write("".join(line + "\n" for line in lines))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def span_to_dict(span: ReadableSpan) -> dict[str, object]:
    ctx = span.get_span_context()
    parent = span.parent
    return {
        "trace_id": f"{ctx.trace_id:032x}" if ctx else None,
        "span_id": f"{ctx.span_id:016x}" if ctx else None,
        "parent_id": f"{parent.span_id:016x}" if parent else None,
        "name": span.name,
        "service": span.resource.attributes.get("service.name"),
        "kind": span.kind.name,
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": span.status.status_code.name,
        "status_description": span.status.description,
        "attributes": {k: _plain(v) for k, v in (span.attributes or {}).items()},
        "links": [f"{link.context.trace_id:032x}:{link.context.span_id:016x}" for link in span.links],
        "events": [{"name": e.name, "attributes": dict(e.attributes or {})} for e in span.events],
    }


def _plain(value: object) -> object:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else str(value)


class EntropyIdGenerator(IdGenerator):
    """Span and trace ids from the OS, not Python's `random`.

    Training libraries call `random.seed(...)` (transformers' `set_seed`), and the
    SDK's default generator draws from that same global state: a seeded trainer
    would reissue identical span ids run after run, and traces would fold into
    cycles.
    """

    def generate_span_id(self) -> int:
        return int.from_bytes(os.urandom(8), "big") or 1

    def generate_trace_id(self) -> int:
        return int.from_bytes(os.urandom(16), "big") or 1


def setup_tracing(service_name: str, trace_dir: Path) -> TracerProvider:
    """Install a global tracer provider for this process and return it."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}), id_generator=EntropyIdGenerator()
    )
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    provider.add_span_processor(
        BatchSpanProcessor(JsonlSpanExporter(trace_dir / f"{service_name}.jsonl"), schedule_delay_millis=500)
    )
    trace.set_tracer_provider(provider)
    return provider
