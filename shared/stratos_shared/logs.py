"""Structured logs that join up with traces: every record carries the service, trace, span and job ids.

Services log one JSON object per line by default (``STRATOS_LOG_FORMAT=json``),
so a log shipper or ``jq 'select(.job_id=="JOB")'`` can follow one job across
six services; ``text`` is the same fields as a readable line for a terminal.
The job id comes from a context variable the event router sets for the
duration of each handler call, so domain code never has to pass it along.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Literal

from opentelemetry import trace

LogFormat = Literal["json", "text"]

current_job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("stratos_job_id", default=None)

# loggers that write one line per message or request: that is a trace, not a log
NOISY_LOGGERS = ("faststream", "httpx", "httpcore")


@contextlib.contextmanager
def job_context(job_id: str | None) -> Iterator[None]:
    """Tag every record logged inside the block (and in tasks/threads started from it) with `job_id`."""
    token = current_job_id.set(job_id)
    try:
        yield
    finally:
        current_job_id.reset(token)


class ContextFilter(logging.Filter):
    """Adds service, trace, span and job ids to each record."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = trace.get_current_span().get_span_context()
        valid = bool(ctx and ctx.trace_id)
        record.service = self.service
        record.trace_id = f"{ctx.trace_id:032x}" if valid else None
        record.span_id = f"{ctx.span_id:016x}" if valid else None
        record.job_id = current_job_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record; ids that are unknown are left out rather than written as null."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": getattr(record, "service", None),
            "logger": record.name,
            "message": record.getMessage(),
            "trace_id": getattr(record, "trace_id", None),
            "span_id": getattr(record, "span_id", None),
            "job_id": getattr(record, "job_id", None),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps({k: v for k, v in entry.items() if v is not None}, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The same fields on one readable line, for people tailing a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        ids = " ".join(
            f"{name}={value}" for name in ("job", "trace") if (value := getattr(record, f"{name}_id", None)) is not None
        )
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        line = f"{when} {record.levelname:<7} {getattr(record, 'service', '-')} {record.name}: {record.getMessage()}"
        line = f"{line} [{ids}]" if ids else line
        return f"{line}\n{self.formatException(record.exc_info)}" if record.exc_info else line


def setup_logging(service: str, level: str = "INFO", fmt: LogFormat = "json") -> None:
    """Route every logger of this process through one handler on stderr in the chosen format."""
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter(service))
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
