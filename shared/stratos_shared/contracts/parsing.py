"""Turning raw bytes from the bus into a validated event, or a reason it is not one."""

from __future__ import annotations

import json
from typing import TypeVar

from pydantic import ValidationError

from stratos_shared.contracts.base import JOB_ID_PATTERN, Event
from stratos_shared.errors import InvalidEventError

E = TypeVar("E", bound=Event)

MAX_ERRORS = 20


def describe_validation_error(error: ValidationError) -> list[str]:
    """Pydantic errors as 'field.path: problem' lines a user can act on (input values left out)."""
    lines = []
    for item in error.errors()[:MAX_ERRORS]:
        where = ".".join(str(part) for part in item["loc"]) or "(root)"
        lines.append(f"{where}: {item['msg']}")
    return lines


def _job_id_of(data: object) -> str | None:
    import re

    if isinstance(data, dict):
        job_id = data.get("job_id")
        if isinstance(job_id, str) and re.fullmatch(JOB_ID_PATTERN, job_id):
            return job_id
    return None


def parse_event(cls: type[E], body: bytes) -> E:
    """Validate `body` as an event of type `cls`; raise InvalidEventError saying why not."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEventError(f"message is not valid JSON ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise InvalidEventError(f"message must be a JSON object, got {type(data).__name__}")
    job_id = _job_id_of(data)
    event_type = data.get("event_type", cls.__name__)
    if event_type != cls.__name__:
        raise InvalidEventError(
            f"expected a {cls.__name__} event on this subject, got event_type={str(event_type)[:64]!r}", job_id=job_id
        )
    version = data.get("schema_version", 1)
    if isinstance(version, int) and version > cls.VERSION:
        raise InvalidEventError(
            f"{cls.__name__} schema version {version} is newer than this service understands ({cls.VERSION}); "
            "upgrade the service",
            job_id=job_id,
        )
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        errors = describe_validation_error(exc)
        raise InvalidEventError(f"invalid {cls.__name__}: {errors[0]}", errors=errors, job_id=job_id) from None
