"""Trainer handlers: a TrainingAssigned for this server is the unit of work, shared by its trainer processes.

Each server's trainers pull from one durable consumer on ``stratos.work.train.<server>`` (the selector's
ledger assigns a job there once its data is ready and it is placed on that server). The message stays
un-acked (its lease extended) while the job trains, so N trainers of a server train N jobs at once and
never the same job twice; a trainer that dies stops extending the lease and JetStream hands the job to
another trainer of the same server, which resumes from the last checkpoint. When the job moves to
another server, that server gets its own assignment (a new revision) and this one is dropped.

Every process also hears re-plans and cancels as signals (core NATS, declared below), so a running
training stops at its next step when its job moves or is cancelled.
"""

from __future__ import annotations

import logging

from stratos_shared.bus.handler import EventRouter, HandlerContext, bind
from stratos_shared.bus.names import server_token, work_subject
from stratos_shared.bus.wiring import EACH_SERVER
from stratos_shared.contracts.base import Event
from stratos_shared.contracts.events import (
    JobCancelRequested,
    JobFailed,
    ModelTrained,
    ServerChosen,
    StudentChosen,
    TrainingAssigned,
    TrainingProgress,
)
from stratos_shared.jobcontext import StageResources
from stratos_shared.jobs import JobState
from stratos_trainer.jobs import JobSignals
from stratos_trainer.settings import TrainerSettings
from stratos_trainer.training import TrainingRun

log = logging.getLogger("stratos.trainer")


async def placed_state(resources: StageResources, job_id: str, revision: int) -> JobState:
    """The job's ledger entry once it shows this placement revision (the ledger may trail the work by a moment)."""

    def placed(state: JobState) -> bool:
        return bool(state.server_id) and state.server_revision >= revision

    return await resources.wait_for_state(job_id, placed, f"a placement at revision {revision}")


def still_owed(training: TrainingRun, event: TrainingAssigned, state: JobState) -> bool:
    """The assignment is this server's current work: not stale, not cancelled, this attempt not trained already."""
    me = training.settings.server_id
    if state.server_revision > event.revision or state.server_id != me:
        log.info(
            "job %s: assignment revision %d is stale (placed on %s at revision %d); dropped",
            event.job_id,
            event.revision,
            state.server_id,
            state.server_revision,
        )
        return False
    if state.status != "running" or event.job_id in training.signals.cancelled:
        return False
    if state.attempts and state.attempts[-1].attempt >= event.plan.attempt:
        # This attempt's ModelTrained is already out (the ledger folded it): a redelivery whose ack was lost, for
        # example to a broker restart. Training again would repeat the costliest side effect for nothing.
        log.info("job %s attempt %d is already trained; acknowledging it", event.job_id, event.plan.attempt)
        return False
    return True


async def on_training_assigned(training: TrainingRun, event: TrainingAssigned, ctx: HandlerContext) -> list[Event]:
    """Pre-screen students, train the chosen one (resuming from the last checkpoint), evaluate, upload."""
    me, signals = training.settings.server_id, training.signals
    if event.server_id != me:
        log.warning("job %s: work for %s reached %s; dropped", event.job_id, event.server_id, me)
        return []
    state = await placed_state(training.resources, event.job_id, event.revision)
    if not still_owed(training, event, state):
        return []
    signals.latest_revision[event.job_id] = max(state.server_revision, signals.latest_revision.get(event.job_id, 0))
    signals.active.add(event.job_id)
    try:
        return await training.run(event.data, state, ctx.publish, event.revision, event.plan, report=ctx.report)
    finally:
        signals.active.discard(event.job_id)


def build_events(settings: TrainerSettings, resources: StageResources, signals: JobSignals) -> EventRouter:
    """The trainer's work consumer (this server's) and the signals every trainer process hears."""
    events = EventRouter("trainer", max_deliver=settings.max_deliver, ack_wait_s=settings.ack_wait_s, on_servers=True)
    events.handler(
        consumes=TrainingAssigned,
        publishes=[StudentChosen, TrainingProgress, ModelTrained, JobFailed],
        durable=f"trainer-{server_token(settings.server_id)}",
        subject=work_subject("train", settings.server_id),
    )(bind(on_training_assigned, TrainingRun(settings, resources, signals)))

    @events.signal(consumes=ServerChosen)
    async def on_server_chosen(event: ServerChosen, subject: str) -> None:
        """A re-plan: a run of this job at an older revision stops at its next step."""
        signals.on_server_chosen(event)

    @events.signal(consumes=JobCancelRequested)
    async def on_cancel(event: JobCancelRequested, subject: str) -> None:
        """A cancel: a run of this job stops at its next step."""
        signals.on_cancel(event)

    return events


def declared() -> EventRouter:
    """This service's declarations, built without connecting to anything: what `tools/wiring.py` writes into the
    generated wiring table (`stratos_shared.bus.wiring_table`)."""
    return build_events(TrainerSettings(server_id=EACH_SERVER), StageResources(), JobSignals())
