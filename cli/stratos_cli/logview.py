"""`stratos logs`: one job's log lines from every service, merged in time order.

Services write JSON lines (see `stratos_shared.logs`) to `<home>/logs/<service>.log`
under `stratos up`; lines that are not JSON (a library printing to stderr,
a traceback from a crash) are kept with the file's service name so nothing is hidden.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

LEVEL_STYLES = {"WARNING": "yellow", "ERROR": "red", "CRITICAL": "bold red", "DEBUG": "dim"}


@dataclass(frozen=True)
class LogLine:
    ts: str
    level: str
    service: str
    message: str
    job_id: str | None = None
    trace_id: str | None = None


def parse_line(raw: str, service: str) -> LogLine | None:
    """A structured record, or the raw text attributed to the file's service; None for blank lines."""
    text = raw.rstrip("\n")
    if not text.strip():
        return None
    try:
        entry = json.loads(text)
    except ValueError:
        entry = None
    if not isinstance(entry, dict) or "message" not in entry:
        return LogLine(ts="", level="", service=service, message=text)
    message = str(entry["message"])
    if entry.get("exception"):
        message = f"{message}\n{entry['exception']}"
    return LogLine(
        ts=str(entry.get("ts", "")),
        level=str(entry.get("level", "")),
        service=str(entry.get("service") or service),
        message=message,
        job_id=entry.get("job_id"),
        trace_id=entry.get("trace_id"),
    )


def read_logs(log_dir: Path) -> Iterator[LogLine]:
    """Every line of every service log; an unstructured line takes the time of the line before it."""
    for path in sorted(log_dir.glob("*.log")):
        service, last_ts = path.stem, ""
        with path.open(encoding="utf-8", errors="replace") as lines:
            for raw in lines:
                line = parse_line(raw, service)
                if line is None:
                    continue
                if line.ts:
                    last_ts = line.ts
                else:
                    line = LogLine(ts=last_ts, level="", service=service, message=line.message)
                yield line


def select(
    lines: Iterable[LogLine], job_id: str | None = None, services: set[str] | None = None, min_level: str = "DEBUG"
) -> list[LogLine]:
    """Lines of one job (or all), of some services, at or above a level, oldest first.

    Unstructured lines have no job id, so a job filter leaves them out; they stay in the unfiltered view.
    """
    order = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
    floor = order.index(min_level.upper())
    chosen = [
        line
        for line in lines
        if (job_id is None or line.job_id == job_id)
        and (services is None or line.service in services)
        and (not line.level or line.level not in order or order.index(line.level) >= floor)
    ]
    return sorted(chosen, key=lambda line: line.ts)
