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
from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt

JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*$"
JOB_ID_MAX = 96
"""A job id is a KV key and an object-store folder: letters, digits, '_', '-', and dots only between them
(KV keys are dot-separated tokens, so a leading, trailing or doubled dot is refused by the store)."""
TOKEN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$"
"""An id that is one NATS subject token (server ids: ``stratos.hb.<server_id>``): no dots, no wildcards."""
EVENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
"""An event id travels as the ``Nats-Msg-Id`` header: no spaces or control characters."""
JobId = Annotated[str, Field(pattern=JOB_ID_PATTERN, max_length=JOB_ID_MAX, examples=["gsm8k-small-3f9a1c"])]
ServerId = Annotated[str, Field(pattern=TOKEN_ID_PATTERN, examples=["a100-us-east"])]
CONTRACT_CONFIG = ConfigDict(frozen=True, allow_inf_nan=False)
"""Shared by every contract model: immutable, and no NaN or infinity (JSON writes them as null, so a record
holding one would not read back)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


def stable_id(*parts: object) -> str:
    """A deterministic event id, so redoing a step after a crash publishes a duplicate JetStream drops."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:32]


class Event(BaseModel):
    """Base of all events: id, job, time, type and schema version."""

    model_config = ConfigDict(**CONTRACT_CONFIG, extra="ignore")

    SUBJECT: ClassVar[str]
    """The NATS subject this event is published on."""
    VERSION: ClassVar[int] = 1
    """The newest schema version this code reads and writes."""

    event_type: str = Field(description="The event's class name; each subclass pins it with a Literal.")
    schema_version: StrictInt = Field(default=1, ge=1, description="Schema version of this payload (an integer).")
    event_id: str = Field(
        default_factory=new_id, pattern=EVENT_ID_PATTERN, description="Unique id; the NATS message id."
    )
    job_id: JobId | None = Field(default=None, description="The job this event belongs to.")
    occurred_at: datetime = Field(default_factory=utcnow, description="When the event happened (UTC).")

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()
