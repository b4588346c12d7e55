"""Advisories JetStream itself publishes (its schema, not ours): read, never published by Stratos."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_DELIVERIES_PREFIX = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"


def max_deliveries_subject(stream: str) -> str:
    """Where JetStream says a message of `stream` reached its consumer's ``max_deliver`` without an ack."""
    return f"{MAX_DELIVERIES_PREFIX}.{stream}.*"


class MaxDeliveries(BaseModel):
    """A message delivered ``max_deliver`` times and never acknowledged: its consumer died (or handed it back) on
    each delivery, and JetStream will not deliver it again (``io.nats.jetstream.advisory.v1.max_deliver``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Literal["io.nats.jetstream.advisory.v1.max_deliver"]
    stream: str = Field(max_length=256)
    consumer: str = Field(max_length=256)
    stream_seq: int = Field(ge=1)
    deliveries: int = Field(ge=1)
