"""Trainer handlers: DataReady is the unit of work, shared by every trainer process through one durable consumer.

The message stays un-acked (its lease extended) while the job trains, so N
trainers train N jobs at once and never the same job twice; a trainer that dies
stops extending the lease and JetStream hands the job to another, which resumes
from the last checkpoint.
"""

from __future__ import annotations

import asyncio
import logging

from stratos_shared.bus.handler import EventRouter, HandlerContext
from stratos_shared.contracts.base import Event
from stratos_shared.contracts.events import DataReady, JobFailed, ModelTrained, StudentChosen, TrainingProgress
from stratos_shared.errors import JobStateError
from stratos_shared.jobcontext import StageResources
from stratos_shared.jobs import JobState
from stratos_trainer.jobs import JobSignals
from stratos_trainer.settings import TrainerSettings
from stratos_trainer.training import TrainingRun

LEDGER_WAIT_S = 10.0
log = logging.getLogger("stratos.trainer")


async def placed_state(resources: StageResources, job_id: str) -> JobState:
    """The job's ledger entry once it shows a placement (the ledger may trail the event we hold by a moment)."""
    deadline = asyncio.get_running_loop().time() + LEDGER_WAIT_S
    while True:
        state = await resources.job_state(job_id)
        if state is not None and state.server_id:
            return state
        if asyncio.get_running_loop().time() > deadline:
            raise JobStateError(f"job {job_id} has no placement in the ledger yet")
        await asyncio.sleep(0.2)


def build_events(settings: TrainerSettings, resources: StageResources, signals: JobSignals) -> EventRouter:
    events = EventRouter("trainer", max_deliver=settings.max_deliver, ack_wait_s=settings.ack_wait_s)
    training = TrainingRun(settings, resources, signals)

    @events.handler(
        consumes=DataReady,
        publishes=[StudentChosen, TrainingProgress, ModelTrained, JobFailed],
        durable="trainer",
    )
    async def on_data_ready(event: DataReady, ctx: HandlerContext) -> list[Event]:
        """Pre-screen students, train the chosen one (resuming from the last checkpoint), evaluate, upload."""
        state = await placed_state(resources, event.job_id)
        if state.status != "running" or event.job_id in signals.cancelled:
            return []
        if "training" in state.results:
            # ModelTrained is already out (the ledger folded it): this is a redelivery whose ack was lost, for
            # example to a broker restart. Training again would repeat the costliest side effect for nothing.
            log.info("job %s is already trained; acknowledging the redelivered DataReady", event.job_id)
            return []
        signals.latest_revision[event.job_id] = max(state.server_revision, signals.latest_revision.get(event.job_id, 0))
        return await training.run(event, state, ctx.publish)

    return events
