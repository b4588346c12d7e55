"""The event envelope every message on the bus shares.

Events are immutable and versioned. Each class names its subject and its
schema version; consumers refuse versions newer than they understand and
ignore unknown fields, so producers can add optional fields without breaking
older consumers. ``event_id`` doubles as the NATS message id, so publishing the
same event twice is de-duplicated by JetStream.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$"


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


def stable_id(*parts: object) -> str:
    """A deterministic event id, so redoing a step after a crash publishes a duplicate JetStream drops."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:32]


class Event(BaseModel):
    """Base of all events: id, job, time, type and schema version."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    SUBJECT: ClassVar[str]
    """The NATS subject this event is published on."""
    VERSION: ClassVar[int] = 1
    """The newest schema version this code reads and writes."""

    event_type: str = Field(description="The event's class name; each subclass pins it with a Literal.")
    schema_version: int = Field(default=1, ge=1, description="Schema version of this payload.")
    event_id: str = Field(
        default_factory=new_id, min_length=1, max_length=128, description="Unique id; the NATS message id."
    )
    job_id: str | None = Field(default=None, pattern=JOB_ID_PATTERN, description="The job this event belongs to.")
    occurred_at: datetime = Field(default_factory=utcnow, description="When the event happened (UTC).")

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()
