"""A progress report that the stream does not acknowledge in time is dropped; the work it reports on goes on."""

from __future__ import annotations

from typing import Any, cast

import nats.errors
import pytest
from faststream.nats import NatsBroker

from stratos_shared.bus.handler import PUBLISH_ACK_TIMEOUT_S, HandlerContext
from stratos_shared.contracts.events import DataProgress, DataReady


class SlowStreamDouble:
    """Stands in for the broker of a loaded machine: every JetStream publish times out waiting for its ack."""

    def __init__(self) -> None:
        self.timeouts: list[float] = []

    async def publish(self, *args: Any, timeout: float, **kwargs: Any) -> None:  # noqa: ASYNC109 (FastStream's signature)
        self.timeouts.append(timeout)
        raise nats.errors.TimeoutError


def context(broker: SlowStreamDouble) -> HandlerContext:
    return HandlerContext(
        broker=cast(NatsBroker, broker),
        service="data-synth",
        delivery=1,
        subject="s",
        declared=(DataProgress, DataReady),
    )


async def test_a_report_that_times_out_is_dropped_and_a_result_is_not() -> None:
    broker = SlowStreamDouble()
    ctx = context(broker)
    await ctx.report(DataProgress(job_id="j", done=1, total=2, accepted=1))  # no exception: superseded later
    with pytest.raises(nats.errors.TimeoutError):
        await ctx.publish(DataProgress(job_id="j", done=2, total=2, accepted=2))
    assert broker.timeouts == [PUBLISH_ACK_TIMEOUT_S, PUBLISH_ACK_TIMEOUT_S], "waited FastStream's 0.5 s default"
    assert PUBLISH_ACK_TIMEOUT_S >= 5
