"""Selector handlers: place jobs, re-plan them when their server goes down, keep the job ledger.

All decisions come from the pure `stratos_selector.domain` package; this module
only reads the inventory and placements from KV, claims slots with
compare-and-set, and publishes the outcome.
"""

from __future__ import annotations

import logging
import time

from opentelemetry import propagate, trace

from stratos_shared.bus.handler import EventRouter, HandlerContext
from stratos_shared.bus.kv import TypedKV
from stratos_shared.contracts.base import Event, stable_id
from stratos_shared.contracts.events import (
    JobCancelRequested,
    JobCompleted,
    JobFailed,
    JobRejected,
    JobSubmitted,
    ServerChosen,
    ServerDown,
)
from stratos_shared.contracts.job import JobSpec
from stratos_shared.contracts.servers import ServerRecord
from stratos_shared.errors import InvalidEventError
from stratos_shared.jobs import JobState, apply
from stratos_selector.domain import Infeasible, select
from stratos_selector.placements import JobPlacement, Placements

log = logging.getLogger("stratos.selector")
tracer = trace.get_tracer("stratos.selector")

MAX_CLAIM_ATTEMPTS = 20


class Planner:
    """Chooses servers for jobs and records the choice; bound to KV once connected."""

    def __init__(self) -> None:
        self._servers: TypedKV[ServerRecord] | None = None
        self._specs: TypedKV[JobSpec] | None = None
        self._placements: Placements | None = None
        self._jobs: TypedKV[JobState] | None = None

    def attach(
        self,
        servers: TypedKV[ServerRecord],
        specs: TypedKV[JobSpec],
        placements: Placements,
        jobs: TypedKV[JobState],
    ) -> None:
        self._servers, self._specs, self._placements, self._jobs = servers, specs, placements, jobs

    @property
    def jobs(self) -> TypedKV[JobState]:
        assert self._jobs is not None, "planner used before attach()"
        return self._jobs

    @property
    def servers(self) -> TypedKV[ServerRecord]:
        assert self._servers is not None, "planner used before attach()"
        return self._servers

    @property
    def specs(self) -> TypedKV[JobSpec]:
        assert self._specs is not None, "planner used before attach()"
        return self._specs

    @property
    def placements(self) -> Placements:
        assert self._placements is not None, "planner used before attach()"
        return self._placements

    async def place(
        self, job_id: str, spec: JobSpec, *, revision: int, failed: list[str], reason: str, previous: str | None
    ) -> ServerChosen | Infeasible:
        """Select, claim a slot (retrying when a race fills the server), record and describe the placement."""
        records = await self.servers.items()
        up = [r.spec for r in records.values() if r.status == "up"]
        load = await self.placements.load()
        exclude = set(failed)
        outcome: ServerChosen | Infeasible | None = None
        for _ in range(MAX_CLAIM_ATTEMPTS):
            selection = select(up, spec, exclude=exclude, load=load)
            if isinstance(selection, Infeasible):
                return selection
            chosen = selection.server
            if await self.placements.claim(chosen.id, job_id, chosen.capacity):
                outcome = ServerChosen(
                    event_id=stable_id(job_id, "server-chosen", revision),
                    job_id=job_id,
                    revision=revision,
                    server=chosen,
                    previous_server_id=previous,
                    reason=reason,
                    explanation=selection.explanation,
                )
                break
            load = {**load, chosen.id: chosen.capacity}  # lost the race for its last slot: treat it as full
        if outcome is None:
            raise RuntimeError(f"could not claim a server slot for {job_id} in {MAX_CLAIM_ATTEMPTS} attempts")
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        await self.placements.record(
            JobPlacement(
                job_id=job_id, server_id=outcome.server.id, revision=revision, failed_servers=failed,
                trace_context=carrier,
            )
        )
        return outcome

    async def finish(self, job_id: str) -> None:
        placement = await self.placements.get(job_id)
        if placement is None or not placement.active:
            return
        await self.placements.release(placement.server_id, job_id)
        await self.placements.record(placement.model_copy(update={"active": False}))


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


def build_events(planner: Planner, max_deliver: int = 5, ack_wait_s: float = 30.0, with_ledger: bool = True) -> EventRouter:
    """The selector's handlers; `with_ledger` adds the job-state projector (one per deployment is enough)."""
    events = EventRouter("selector", max_deliver=max_deliver, ack_wait_s=ack_wait_s)

    @events.handler(
        consumes=JobSubmitted,
        publishes=[ServerChosen, JobRejected],
        durable="selector-jobs",
        on_invalid=reject_submission,
    )
    async def on_job_submitted(event: JobSubmitted, ctx: HandlerContext) -> list[Event]:
        """Accept the job (store its spec) and place it, or reject it naming the binding constraint."""
        with tracer.start_as_current_span("selector.place", attributes={"job.id": event.job_id}) as span:
            await planner.specs.create(event.job_id, event.spec)
            existing = await planner.placements.get(event.job_id)
            if existing is not None:
                log.info("job %s already placed on %s; nothing to do", event.job_id, existing.server_id)
                return []
            outcome = await planner.place(
                event.job_id, event.spec, revision=1, failed=[], reason="initial placement", previous=None
            )
            if isinstance(outcome, Infeasible):
                span.set_attribute("selector.infeasible", outcome.reason)
                return [
                    JobRejected(
                        event_id=stable_id(event.job_id, "rejected"), job_id=event.job_id, reason=outcome.reason
                    )
                ]
            span.set_attribute("server.id", outcome.server.id)
            return [outcome]

    @events.handler(consumes=ServerDown, publishes=[ServerChosen, JobFailed], durable="selector-server-down")
    async def on_server_down(event: ServerDown, ctx: HandlerContext) -> list[Event]:
        """Re-plan every active job on the lost server, excluding servers that already failed it."""
        started = time.perf_counter()
        moved = 0
        for job_id in await planner.placements.on_server(event.server_id):
            placement = await planner.placements.get(job_id)
            spec_entry = await planner.specs.get(job_id)
            if placement is None or spec_entry is None or not placement.active:
                continue
            if placement.server_id != event.server_id:
                continue
            failed = [*placement.failed_servers, event.server_id]
            # Re-plan inside the job's own trace, linked to the ServerDown that caused it.
            job_context = propagate.extract(placement.trace_context)
            cause = trace.Link(trace.get_current_span().get_span_context())
            with tracer.start_as_current_span(
                "selector.replan",
                context=job_context,
                links=[cause],
                attributes={"job.id": job_id, "server.down": event.server_id, "replan.revision": placement.revision + 1},
            ):
                outcome = await planner.place(
                    job_id,
                    spec_entry[0],
                    revision=placement.revision + 1,
                    failed=failed,
                    reason=f"server {event.server_id} went down ({event.reason})",
                    previous=event.server_id,
                )
                await planner.placements.release(event.server_id, job_id)
                if isinstance(outcome, Infeasible):
                    await ctx.publish(
                        JobFailed(
                            event_id=stable_id(job_id, "failed", "replan", placement.revision),
                            job_id=job_id,
                            stage="placement",
                            reason=f"server {event.server_id} went down and no other server fits: {outcome.reason}",
                        )
                    )
                    await planner.placements.record(
                        placement.model_copy(update={"active": False, "failed_servers": failed})
                    )
                else:
                    await ctx.publish(outcome)
                    moved += 1
        log.info("re-planned %d jobs off %s in %.1f ms", moved, event.server_id, (time.perf_counter() - started) * 1e3)
        return []

    async def release(event: Event, ctx: HandlerContext) -> None:
        """A finished, failed or cancelled job gives its server slot back."""
        assert event.job_id is not None
        await planner.finish(event.job_id)

    events.handler(consumes=JobCompleted, publishes=[], durable="selector-job-completed")(release)
    events.handler(consumes=JobFailed, publishes=[], durable="selector-job-failed")(release)
    events.handler(consumes=JobCancelRequested, publishes=[], durable="selector-job-cancelled")(release)

    if with_ledger:

        @events.handler(consumes=Event, publishes=[], durable="selector-ledger", subject="stratos.evt.>")
        async def project(event: Event, ctx: HandlerContext) -> None:
            """Fold every job event into the job's state in KV (what `stratos status` reads)."""
            if event.job_id is not None:
                await planner.jobs.update(event.job_id, lambda current: apply(current, event))

    return events
