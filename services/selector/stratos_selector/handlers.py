"""Selector handlers: place jobs, re-plan them when their server goes down, keep the job ledger.

Each handler adapts one event to a call: `admit` (`stratos_selector.planner`), `Replanner.replan`
(`stratos_selector.replanning`), and the job's workflow (`stratos_selector.workflow`: the ledger fold `apply`, then
`next_events`, the decision or the work it owes).
`build_events` is the wiring map: what each handler consumes, publishes, and on which durable consumer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from nats.js import JetStreamContext

from stratos_selector.planner import Planner, admit, poisoned
from stratos_selector.replanning import Replanner
from stratos_selector.settings import SelectorSettings
from stratos_selector.workflow import ENDINGS, apply, next_events
from stratos_shared.bus.handler import EventRouter, HandlerContext, Publisher, bind, parse_stored
from stratos_shared.contracts.advisories import MaxDeliveries
from stratos_shared.contracts.base import Event, stable_id
from stratos_shared.contracts.events import (
    AttemptDecided,
    DeploymentAssigned,
    JobCancelRequested,
    JobFailed,
    JobRejected,
    JobSubmitted,
    ServerChosen,
    ServerDown,
    TrainingAssigned,
)
from stratos_shared.errors import InvalidEventError
from stratos_shared.metrics import jobs_finished
from stratos_shared.policy import InputPolicy

__all__ = ["Planner", "Selector", "build_events", "declared"]

log = logging.getLogger("stratos.selector")

LEDGER = "selector-ledger"
REPLAN_BATCH = 256
"""ServerDowns pulled and handled at once (a region of a large catalog takes a few batches)."""


@dataclass(frozen=True)
class Selector:
    """What the selector's handlers use: the planner (bound to KV once connected) and the input policy."""

    planner: Planner
    policy: InputPolicy
    """The operator's limit on what a spec may reference (files, secrets, teacher networks)."""
    replanner: Replanner
    """Re-plans the jobs of lost servers, the ServerDowns handled at the same time in one round."""
    poison: Publisher | None = None
    """Where the failure of a job whose message killed its worker on every delivery is published."""


def reject_submission(invalid: InvalidEventError, subject: str) -> list[Event]:
    """A JobSubmitted that is not valid gets a JobRejected saying why (the consumer moves on)."""
    return [
        JobRejected(
            job_id=invalid.job_id,
            reason=invalid.reason,
            errors=invalid.errors,
            rejected_subject=subject,
        )
    ]


async def on_job_submitted(selector: Selector, event: JobSubmitted, ctx: HandlerContext) -> list[Event]:
    """Accept the job (store its spec) and place it, or reject it naming the binding constraint."""
    return await admit(selector.planner, event, selector.policy)


async def on_server_down(selector: Selector, event: ServerDown, ctx: HandlerContext) -> list[Event]:
    """Re-plan every active job on the lost server, excluding servers that already failed it (the ServerDowns of a
    batch in one round, `stratos_selector.replanning`); acknowledged once the round that covered it is done."""
    await selector.replanner.replan(event, ctx.publish)
    return []


async def release(selector: Selector, event: Event, ctx: HandlerContext) -> None:
    """A failed or cancelled job gives its server slot back."""
    assert event.job_id is not None
    await selector.planner.finish(event.job_id, event if isinstance(event, JobFailed) else None)


async def on_poison(selector: Selector, advisory: MaxDeliveries, js: JetStreamContext) -> None:
    """A message that exhausted its deliveries unacknowledged fails its job, instead of leaving it "running" for
    ever: its consumer's process died on every delivery. (A handler that raised fails the job itself.)"""
    if advisory.consumer == LEDGER:
        return  # the ledger is a projection: what it could not fold belongs to another consumer
    stored = await js.get_msg(advisory.stream, advisory.stream_seq)
    try:
        event = parse_stored(stored.data or b"", stored.subject or "")
    except InvalidEventError as invalid:
        log.info("message %d exhausted its deliveries on %s: %s", advisory.stream_seq, advisory.consumer, invalid)
        return  # dead-lettered by its consumer already
    if event.job_id is None:
        return
    assert selector.poison is not None, "build_events declares the poison publisher"
    failed = poisoned(event.job_id, event.event_type, advisory.consumer, advisory.deliveries, advisory.stream_seq)
    log.error("job %s: %s", event.job_id, failed.reason)
    await selector.poison.publish(failed)


async def fold_admitted_submission(selector: Selector, event: Event) -> bool:
    """An admitted job's event reached the ledger before its submission did: fold the submission from the
    admitted spec first. True when it did.

    JetStream redelivers an unacknowledged message only after its ack wait: a ledger killed while folding a
    JobSubmitted gets it back after the job's placement, data and training events, which the ledger would
    otherwise drop as events of no job (seen in the kill matrix: a job never trained). The spec in KV says
    the selector admitted the job, so this is no phantom entry; the submission arriving later is a duplicate.
    """
    assert event.job_id is not None
    spec = await selector.planner.spec_of(event.job_id)
    if spec is None:
        return False  # a stray event of no admitted job: dropped, as before
    log.info("job %s: %s reached the ledger before its submission; folding the admitted spec first",
             event.job_id, event.event_type)  # fmt: skip
    submitted = JobSubmitted(
        event_id=stable_id(event.job_id, "submitted", "admitted-spec"),
        job_id=event.job_id,
        spec=spec,
        submitted_by="ledger: the admitted spec",
    )
    state, _ = await selector.planner.jobs.update(event.job_id, lambda current: apply(current, submitted))
    return state is not None


async def project(selector: Selector, event: Event, ctx: HandlerContext) -> list[Event]:
    """Fold every job event into the job's state in KV (what `stratos status` reads), then publish what the job's
    workflow says follows it (`workflow.next_events`: a decision on an attempt, or the work the placement owes)."""
    if event.job_id is None:
        return []
    state, wrote = await selector.planner.jobs.update(event.job_id, lambda current: apply(current, event))
    if state is None and not isinstance(event, JobSubmitted) and await fold_admitted_submission(selector, event):
        state, wrote = await selector.planner.jobs.update(event.job_id, lambda current: apply(current, event))
    if wrote and state is not None and state.status != "running" and isinstance(event, ENDINGS):
        jobs_finished.add(1, {"outcome": state.status})
    return [] if state is None else await next_events(state, event, selector.planner.spec_of)


def build_events(
    planner: Planner,
    policy: InputPolicy,
    max_deliver: int = 5,
    ack_wait_s: float = 30.0,
    with_ledger: bool = True,
) -> EventRouter:
    """The selector's handlers; `with_ledger` adds the job-state projector (one per deployment is enough)."""
    events = EventRouter("selector", max_deliver=max_deliver, ack_wait_s=ack_wait_s)
    selector = Selector(planner, policy, Replanner(planner), events.publisher("poison", [JobFailed]))
    events.on_max_deliveries(bind(on_poison, selector))
    events.handler(
        consumes=JobSubmitted,
        publishes=[ServerChosen, JobRejected],
        durable="selector-jobs",
        on_invalid=reject_submission,
    )(bind(on_job_submitted, selector))
    # A region outage is hundreds of ServerDowns at once: pulled in batches, handled concurrently, re-planned
    # together (one round per batch) instead of one message, one pull and one ack after another.
    events.handler(
        consumes=ServerDown,
        publishes=[ServerChosen, JobFailed],
        durable="selector-server-down",
        max_batch=REPLAN_BATCH,
    )(bind(on_server_down, selector))
    # A completed job keeps its slot and stays active: its deployment serves on that server, so a
    # ServerDown must still re-plan it (the deployer follows). `stratos cancel` frees the slot.
    events.handler(consumes=JobFailed, publishes=[], durable="selector-job-failed")(bind(release, selector))
    events.handler(consumes=JobCancelRequested, publishes=[], durable="selector-job-cancelled")(bind(release, selector))
    if with_ledger:
        events.handler(
            consumes=Event,
            publishes=[AttemptDecided, TrainingAssigned, DeploymentAssigned, JobFailed],
            durable=LEDGER,
            subject="stratos.evt.>",
            projection=True,
        )(bind(project, selector))
    return events


def declared() -> EventRouter:
    """This service's declarations, built without connecting to anything: what `tools/wiring.py` writes into the
    generated wiring table (`stratos_shared.bus.wiring_table`)."""
    return build_events(Planner(), SelectorSettings().input_policy())
