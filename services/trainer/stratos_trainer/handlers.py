"""Trainer handlers: a TrainingAssigned for this server is the unit of work, shared by its trainer processes.

Each server's trainers pull from one durable consumer on ``stratos.work.train.<server>`` (the selector's
ledger assigns a job there once its data is ready and it is placed on that server). The message stays
un-acked (its lease extended) while the job trains, so N trainers of a server train N jobs at once and
never the same job twice; a trainer that dies stops extending the lease and JetStream hands the job to
another trainer of the same server, which resumes from the last checkpoint. When the job moves to
another server, that server gets its own assignment (a new revision) and this one is dropped.
"""

from __future__ import annotations

import asyncio
import logging

from stratos_shared.bus.handler import EventRouter, HandlerContext
from stratos_shared.bus.names import server_token, work_subject
from stratos_shared.contracts.base import Event
from stratos_shared.contracts.events import JobFailed, ModelTrained, StudentChosen, TrainingAssigned, TrainingProgress
from stratos_shared.errors import JobStateError
from stratos_shared.jobcontext import StageResources
from stratos_shared.jobs import JobState
from stratos_trainer.jobs import JobSignals
from stratos_trainer.settings import TrainerSettings
from stratos_trainer.training import TrainingRun

LEDGER_WAIT_S = 10.0
log = logging.getLogger("stratos.trainer")


async def placed_state(resources: StageResources, job_id: str, revision: int) -> JobState:
    """The job's ledger entry once it shows this placement revision (the ledger may trail the work by a moment)."""
    deadline = asyncio.get_running_loop().time() + LEDGER_WAIT_S
    while True:
        state = await resources.job_state(job_id)
        if state is not None and state.server_id and state.server_revision >= revision:
            return state
        if asyncio.get_running_loop().time() > deadline:
            raise JobStateError(f"job {job_id} has no placement at revision {revision} in the ledger yet")
        await asyncio.sleep(0.2)


def build_events(settings: TrainerSettings, resources: StageResources, signals: JobSignals) -> EventRouter:
    events = EventRouter("trainer", max_deliver=settings.max_deliver, ack_wait_s=settings.ack_wait_s)
    training = TrainingRun(settings, resources, signals)

    @events.handler(
        consumes=TrainingAssigned,
        publishes=[StudentChosen, TrainingProgress, ModelTrained, JobFailed],
        durable=f"trainer-{server_token(settings.server_id)}",
        subject=work_subject("train", settings.server_id),
    )
    async def on_training_assigned(event: TrainingAssigned, ctx: HandlerContext) -> list[Event]:
        """Pre-screen students, train the chosen one (resuming from the last checkpoint), evaluate, upload."""
        if event.server_id != settings.server_id:
            log.warning("job %s: work for %s reached %s; dropped", event.job_id, event.server_id, settings.server_id)
            return []
        state = await placed_state(resources, event.job_id, event.revision)
        if state.server_revision > event.revision or state.server_id != settings.server_id:
            log.info(
                "job %s: assignment revision %d is stale (placed on %s at revision %d); dropped",
                event.job_id,
                event.revision,
                state.server_id,
                state.server_revision,
            )
            return []
        if state.status != "running" or event.job_id in signals.cancelled:
            return []
        if state.attempts and state.attempts[-1].attempt >= event.plan.attempt:
            # This attempt's ModelTrained is already out (the ledger folded it): a redelivery whose ack was lost,
            # for example to a broker restart. Training again would repeat the costliest side effect for nothing.
            log.info("job %s attempt %d is already trained; acknowledging it", event.job_id, event.plan.attempt)
            return []
        signals.latest_revision[event.job_id] = max(state.server_revision, signals.latest_revision.get(event.job_id, 0))
        signals.active.add(event.job_id)
        try:
            return await training.run(event.data, state, ctx.publish, event.revision, event.plan)
        finally:
            signals.active.discard(event.job_id)

    return events
