"""The ledger keeps a job's events when its submission comes back last.

A selector killed while folding a JobSubmitted leaves it unacknowledged; JetStream hands it back only after the
ack wait, by which time the new selector has placed the job and the stages have moved it on. Seen in the kill
matrix on a loaded machine: the ledger dropped every later event as one of no job, and the job never trained.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from stratos_selector.handlers import LEDGER
from stratos_shared.bus.kv import TypedKV
from stratos_shared.bus.names import EVENTS_STREAM, JOBS_BUCKET
from stratos_shared.contracts.events import JobSubmitted
from stratos_shared.embedded import NatsServerProcess
from stratos_shared.jobs import JobState
from tests.hostile import BASE
from tests.nats.services import running
from tests.nats.test_hostile_input import publish, stack


async def test_events_folded_before_the_submission_are_kept(
    nats_server: NatsServerProcess, tmp_path: Path, nc: Client, collect
) -> None:
    chosen = await collect("stratos.evt.server.chosen")
    js = nc.jetstream()
    # The ledger that took the submission and died: its durable holds it for a whole minute, past this test.
    config = ConsumerConfig(
        durable_name=LEDGER,
        filter_subject="stratos.evt.>",
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=60,
        max_deliver=5,
        deliver_policy=DeliverPolicy.ALL,
    )
    await js.add_consumer(EVENTS_STREAM, config)
    dying = await js.pull_subscribe("stratos.evt.>", durable=LEDGER, stream=EVENTS_STREAM)
    await publish(nc, JobSubmitted(job_id="late", spec=BASE).to_bytes(), "late")
    taken = await dying.fetch(1, timeout=5)
    assert json.loads(taken[0].data)["event_type"] == "JobSubmitted"
    await dying.unsubscribe()

    jobs = TypedKV(await js.key_value(JOBS_BUCKET), JobState)
    state: JobState | None = None
    async with running(*stack(nats_server, tmp_path)):
        await chosen.wait_for(lambda c: len(c.messages) == 1)
        for _ in range(200):
            found = await jobs.get("late")
            state = found[0] if found else None
            if state is not None and state.server_id:
                break
            await asyncio.sleep(0.05)
    assert state is not None, "the ledger dropped the placement of a job whose submission it had not folded yet"
    assert state.server_id == chosen.bodies()[0]["server"]["id"] and state.server_revision == 1
    assert state.name == BASE.name and state.submitted_at is not None
    assert [h.event_type for h in state.history][:2] == ["JobSubmitted", "ServerChosen"]
