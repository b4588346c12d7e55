"""Reading task JSONL files strictly, with file and line in every complaint."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stratos_shared.tasks.errors import TaskDataError


def read_records(path: str | Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)`` for each non-blank line; raise on the first bad one.

    Every field named in ``required`` must be present and a non-empty string.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TaskDataError(p, 0, "file not found") from None
    except UnicodeDecodeError as exc:
        raise TaskDataError(p, 0, f"not UTF-8 text ({exc.reason})") from None
    seen = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TaskDataError(p, number, f"not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise TaskDataError(p, number, "expected a JSON object")
        for field in required:
            value = record.get(field)
            if not isinstance(value, str) or not value.strip():
                raise TaskDataError(p, number, f"field '{field}' is missing or not a non-empty string")
        seen += 1
        yield number, record
    if seen == 0:
        raise TaskDataError(p, 0, "file has no examples")


def record_id(path: str | Path, number: int, record: dict[str, Any], seen: set[str]) -> str:
    """The record's ``id`` (or ``line-N``), refusing duplicates so ids stay unique."""
    raw = record.get("id", f"line-{number}")
    if not isinstance(raw, (str, int)) or isinstance(raw, bool):
        raise TaskDataError(path, number, "field 'id' must be a string or integer")
    ident = str(raw)
    if ident in seen:
        raise TaskDataError(path, number, f"duplicate id '{ident}'")
    seen.add(ident)
    return ident
