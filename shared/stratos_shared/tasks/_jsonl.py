"""Reading task JSONL files strictly, with file and line in every complaint."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stratos_shared.errors import PolicyError
from stratos_shared.policy import read_regular_file
from stratos_shared.tasks.errors import TaskDataError

MAX_FILE_BYTES = 2**30
"""A hard ceiling for any stage; the selector admits only files under the operator's (smaller) limit."""


def read_records(
    path: str | Path, required: tuple[str, ...], data: bytes | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)`` for each non-blank line; raise on the first bad one.

    Every field named in ``required`` must be present and a non-empty string. With ``data`` (the file's bytes as
    the selector snapshotted them at admission) nothing is opened: ``path`` only names the data in complaints,
    so a stage never reads a file the submitter could have changed since it was checked.
    """
    p = Path(path)
    try:
        raw = read_regular_file(p, MAX_FILE_BYTES, "task file") if data is None else data
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise TaskDataError(p, 0, "file not found") from None
    except PolicyError as exc:
        raise TaskDataError(p, 0, str(exc)) from None
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
        except (RecursionError, ValueError) as exc:  # nested too deeply, or a number too long to convert
            raise TaskDataError(p, number, f"not plain JSON ({type(exc).__name__})") from None
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
