"""Turning raw bytes from the bus into a validated event, or a reason it is not one."""

from __future__ import annotations

import json
import math
import re
from typing import Any, TypeVar

from pydantic import ValidationError

from stratos_shared.contracts.base import JOB_ID_MAX, JOB_ID_PATTERN, TOKEN_ID_PATTERN, Event
from stratos_shared.errors import InvalidEventError, StratosError

E = TypeVar("E", bound=Event)

MAX_ERRORS = 20
MAX_DEPTH = 64
"""No event nests deeper than this; deeper JSON is refused before Python's recursion limit is near."""


class _NotPlainJson(StratosError, ValueError):
    """A number JSON allows but an event must not carry (too large for a float, NaN, Infinity).

    A ValueError because `json.loads` calls the hooks that raise it; `load_json` turns it into InvalidEventError.
    """


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotPlainJson(f"number {text[:32]} is too large to be represented")
    return value


def _no_constant(text: str) -> float:
    raise _NotPlainJson(f"{text} is not a JSON number")


def _depth(data: Any) -> int:
    """Deepest nesting of lists and objects, walked without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = node.values()
        elif not isinstance(node, list):
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in node if isinstance(child, (dict, list)))
    return deepest


def load_json(body: bytes) -> Any:
    """Plain JSON: finite numbers only, nested at most MAX_DEPTH levels; raises InvalidEventError why not."""
    try:
        data = json.loads(body, parse_float=_finite, parse_constant=_no_constant)
    except RecursionError:
        raise InvalidEventError(f"message nests too deeply (at most {MAX_DEPTH} levels are allowed)") from None
    except _NotPlainJson as exc:
        raise InvalidEventError(f"message is not plain JSON: {exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEventError(f"message is not valid JSON ({exc.__class__.__name__}: {exc})") from None
    except ValueError as exc:  # int() of a digit string longer than Python converts
        raise InvalidEventError(f"message cannot be read as JSON ({exc.__class__.__name__}: {exc})"[:300]) from None
    if (deepest := _depth(data)) > MAX_DEPTH:
        raise InvalidEventError(f"message nests {deepest} levels deep; at most {MAX_DEPTH} are allowed")
    return data


PATTERN_HINTS = {
    "job_id": "job ids are letters, digits, '_' and '-', with single dots between them (at most 96 characters)",
    "name": "names are letters, digits, '_' and '-', with single dots between them (at most 64 characters)",
    "server_id": "server ids are letters, digits, '_' and '-' (one NATS subject token, no dots)",
    "previous_server_id": "server ids are letters, digits, '_' and '-' (one NATS subject token, no dots)",
    "id": "server ids are letters, digits, '_' and '-' (one NATS subject token, no dots)",
    "event_id": "event ids are letters, digits and '_', '.', ':', '-' (at most 128 characters)",
}


def describe_validation_error(error: ValidationError) -> list[str]:
    """Pydantic errors as 'field.path: problem' lines a user can act on (input values left out; a refused id
    says what ids may hold instead of quoting a regular expression)."""
    lines = []
    for item in error.errors()[:MAX_ERRORS]:
        where = ".".join(str(part) for part in item["loc"]) or "(root)"
        field = str(item["loc"][-1]) if item["loc"] else ""
        message = item["msg"]
        if item["type"] == "string_pattern_mismatch" and field in PATTERN_HINTS:
            message = f"not a valid id: {PATTERN_HINTS[field]}"
        lines.append(f"{where}: {message}")
    return lines


def valid_job_id(job_id: object) -> bool:
    """Whether `job_id` is a job id the stores accept (the pattern every event's job_id field carries)."""
    return isinstance(job_id, str) and len(job_id) <= JOB_ID_MAX and re.fullmatch(JOB_ID_PATTERN, job_id) is not None


def valid_server_id(server_id: object) -> bool:
    """Whether `server_id` is a server id the catalog accepts (one subject token: the contracts' `ServerId`)."""
    return isinstance(server_id, str) and re.fullmatch(TOKEN_ID_PATTERN, server_id) is not None


def _job_id_of(data: object) -> str | None:
    if isinstance(data, dict):
        job_id = data.get("job_id")
        if valid_job_id(job_id):
            return str(job_id)
    return None


def _lenient_job_id(body: bytes) -> str | None:
    """The job id of a payload refused as not plain JSON (NaN, 1e309), so the rejection can name the job."""
    try:
        return _job_id_of(json.loads(body))
    except Exception:  # unreadable even leniently (too deep, not JSON): no job to name
        return None


def parse_event(cls: type[E], body: bytes) -> E:
    """Validate `body` as an event of type `cls`; raise InvalidEventError saying why not."""
    try:
        data = load_json(body)
    except InvalidEventError as refused:
        refused.job_id = _lenient_job_id(body)
        raise
    if not isinstance(data, dict):
        raise InvalidEventError(f"message must be a JSON object, got {type(data).__name__}")
    job_id = _job_id_of(data)
    event_type = data.get("event_type", cls.__name__)
    if event_type != cls.__name__:
        raise InvalidEventError(
            f"expected a {cls.__name__} event on this subject, got event_type={str(event_type)[:64]!r}", job_id=job_id
        )
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise InvalidEventError(f"schema_version must be an integer, got {type(version).__name__}", job_id=job_id)
    if version > cls.VERSION:
        raise InvalidEventError(
            f"{cls.__name__} schema version {version} is newer than this service understands ({cls.VERSION}); "
            "upgrade the service",
            job_id=job_id,
        )
    try:
        return cls.model_validate(data)
    except RecursionError:
        raise InvalidEventError(f"invalid {cls.__name__}: nested too deeply", job_id=job_id) from None
    except ValidationError as exc:
        errors = describe_validation_error(exc)
        raise InvalidEventError(f"invalid {cls.__name__}: {errors[0]}", errors=errors, job_id=job_id) from None
