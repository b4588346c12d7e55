"""Selector handlers: place jobs, re-plan them when their server goes down, keep the job ledger.

All decisions come from the pure `stratos_selector.domain` package; this module
keeps a local copy of the inventory and of the server loads (KV watchers), claims
slots with compare-and-set, and publishes the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import numpy as np
from nats.js.kv import KeyValue
from opentelemetry import propagate, trace

from stratos_selector.admission import admission_problem, fingerprint, resolve_paths
from stratos_selector.domain import Infeasible, ServerTable, select
from stratos_selector.domain.dispatch import DISPATCHING, assignments
from stratos_selector.domain.escalation import decide, needs_decision
from stratos_selector.placements import JobPlacement, Placements
from stratos_shared.bus.handler import EventRouter, HandlerContext
from stratos_shared.bus.kv import TypedKV
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
from stratos_shared.contracts.job import JobSpec
from stratos_shared.contracts.servers import ServerRecord
from stratos_shared.errors import InvalidEventError, PolicyError
from stratos_shared.jobs import JobState, apply
from stratos_shared.metrics import jobs_finished, replan_seconds, replans
from stratos_shared.policy import InputPolicy

log = logging.getLogger("stratos.selector")
tracer = trace.get_tracer("stratos.selector")

MAX_CLAIM_ATTEMPTS = 20
TERMINAL = {"JobCompleted", "JobFailed", "JobRejected", "JobCancelRequested"}


class Planner:
    """Chooses servers for jobs and records the choice; bound to KV once connected.

    With `follow_inventory` running, the server records are a local copy kept current by a KV
    watcher, and the `ServerTable` is cached per inventory version: rebuilt from the specs only
    when a spec is added, changed or removed; a status change (up/down) only re-cuts the table of
    servers that are up (`ServerTable.take`, no spec re-read). Without it, each placement reads
    the bucket as before.
    """

    def __init__(self, require_workers: bool = True) -> None:
        self.require_workers = require_workers
        self._servers: TypedKV[ServerRecord] | None = None
        self._specs: TypedKV[JobSpec] | None = None
        self._placements: Placements | None = None
        self._jobs: TypedKV[JobState] | None = None
        self._records: dict[str, ServerRecord] | None = None
        self._full: ServerTable | None = None
        self._up: ServerTable | None = None
        self._down_hints: set[str] = set()
        self._spec_cache: dict[str, JobSpec] = {}

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

    # --- inventory cache -------------------------------------------------------------------------

    async def follow_inventory(self) -> Callable[[], Awaitable[None]]:
        """Load the server records and return the loop that keeps them current (run it in the background)."""
        watcher = await self.servers.kv.watchall()
        self._records = {}
        async for entry in watcher:
            if entry is None:  # end of the initial values
                break
            self._apply_server(entry)

        async def follow() -> None:
            try:
                async for entry in watcher:
                    if entry is not None:
                        self._apply_server(entry)
            finally:
                self._records = None  # fall back to reading KV
                with contextlib.suppress(Exception):
                    await watcher.stop()  # type: ignore[no-untyped-call]

        return follow

    def _apply_server(self, entry: KeyValue.Entry) -> None:
        records = self._records
        if records is None:
            return
        self._up = None
        if entry.operation is not None or not entry.value:
            if records.pop(entry.key, None) is not None:
                self._full = None
            return
        try:
            record = ServerRecord.model_validate_json(entry.value)
        except ValueError as exc:
            log.error("server record %r is not valid; ignored: %s", entry.key, exc)
            return
        before = records.get(entry.key)
        records[entry.key] = record
        if before is None or before.spec != record.spec:
            self._full = None
        if record.status == "down":
            self._down_hints.discard(record.spec.id)  # the bucket has caught up with the ServerDown

    def server_down(self, server_id: str) -> None:
        """A ServerDown arrived: stop offering the server even before the watcher delivers its record.

        No hint when the watcher already delivered the down record: nothing would clear it, and the server
        would stay out of the table after it came back up.
        """
        records = self._records
        if records is not None and any(r.spec.id == server_id and r.status == "down" for r in records.values()):
            return
        self._down_hints.add(server_id)
        self._up = None

    async def table(self) -> ServerTable:
        """The servers that are up, as a table (cached per inventory version when following)."""
        records = self._records
        if not records:
            # Not following, or the watcher has not delivered the catalog yet (the selector started before the
            # inventory wrote it, and a job came in first): read the bucket rather than call the catalog empty.
            items = await self.servers.items()
            return ServerTable.from_servers([r.spec for r in items.values() if self._placeable(r)])
        if self._up is None:
            if self._full is None:
                self._full = ServerTable.from_servers([r.spec for r in records.values()])
            up = np.fromiter(
                (self._placeable(r) for r in records.values()),
                dtype=np.bool_,
                count=len(records),
            )
            self._up = self._full if up.all() else self._full.take(np.flatnonzero(up))
        return self._up

    def _placeable(self, record: ServerRecord) -> bool:
        """Up, not just reported down, and (unless configured otherwise) with live workers to run the job."""
        workers = record.monitored or not self.require_workers
        return record.status == "up" and workers and record.spec.id not in self._down_hints

    async def spec_of(self, job_id: str) -> JobSpec | None:
        """A job's spec (write-once in KV, so a local copy never goes stale)."""
        spec = self._spec_cache.get(job_id)
        if spec is None:
            found = await self.specs.get(job_id)
            if found is None:
                return None
            spec = self._spec_cache[job_id] = found[0]
        return spec

    async def accept(self, job_id: str, spec: JobSpec) -> None:
        """Store the job's spec (first writer wins)."""
        if await self.specs.create(job_id, spec):
            self._spec_cache[job_id] = spec

    # --- decisions -------------------------------------------------------------------------------

    async def choose(
        self, job_id: str, spec: JobSpec, *, revision: int, failed: list[str], reason: str, previous: str | None
    ) -> ServerChosen | Infeasible:
        """Select and claim a slot (retrying when a race fills the server); nothing recorded yet.

        Servers that failed this job before are a last resort, not banned: the table holds only servers that
        are up, and one that came back beats failing a job that has nowhere else to go.
        """
        table = await self.table()
        load = await self.placements.load()
        exclude = set(failed)
        for _ in range(MAX_CLAIM_ATTEMPTS):
            selection = select(table, spec, exclude=exclude, load=load)
            if isinstance(selection, Infeasible) and exclude:
                exclude = set()
                selection = select(table, spec, exclude=exclude, load=load)
            if isinstance(selection, Infeasible):
                return selection
            chosen = selection.server
            if await self.placements.claim(chosen.id, job_id, chosen.capacity):
                return ServerChosen(
                    event_id=stable_id(job_id, "server-chosen", revision),
                    job_id=job_id,
                    revision=revision,
                    server=chosen,
                    previous_server_id=previous,
                    reason=reason,
                    explanation=selection.explanation,
                )
            load = {**load, chosen.id: chosen.capacity}  # lost the race for its last slot: treat it as full
        raise RuntimeError(f"could not claim a server slot for {job_id} in {MAX_CLAIM_ATTEMPTS} attempts")

    async def remember(self, outcome: ServerChosen, failed: list[str], carrier: dict[str, str]) -> None:
        """Record the job's placement (with its trace context, so a later re-plan joins the trace)."""
        assert outcome.job_id is not None
        await self.placements.record(
            JobPlacement(
                job_id=outcome.job_id,
                server_id=outcome.server.id,
                revision=outcome.revision,
                failed_servers=failed,
                trace_context=carrier,
                announcement=outcome.model_dump(mode="json"),
            )
        )

    async def place(
        self, job_id: str, spec: JobSpec, *, revision: int, failed: list[str], reason: str, previous: str | None
    ) -> ServerChosen | Infeasible:
        """Select, claim a slot, record and describe the placement."""
        outcome = await self.choose(job_id, spec, revision=revision, failed=failed, reason=reason, previous=previous)
        if isinstance(outcome, ServerChosen):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            await self.remember(outcome, failed, carrier)
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


def reject(job_id: str, reason: str, *key: object) -> JobRejected:
    return JobRejected(event_id=stable_id(job_id, "rejected", *key), job_id=job_id, reason=reason)


def build_events(
    planner: Planner,
    policy: InputPolicy,
    max_deliver: int = 5,
    ack_wait_s: float = 30.0,
    with_ledger: bool = True,
) -> EventRouter:
    """The selector's handlers; `with_ledger` adds the job-state projector (one per deployment is enough).

    `policy` is the operator's limit on what a spec may reference (files, secrets, teacher networks).
    """
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
            mine = fingerprint(event.spec)
            if await planner.placements.own_id(event.job_id, mine) != mine:
                reason = f"job id {event.job_id} is already taken by another submission; submit under a new id"
                return [reject(event.job_id, reason, "id-in-use", mine)]
            existing = await planner.placements.get(event.job_id)
            if existing is not None:
                log.info("job %s already placed on %s; announcing it again", event.job_id, existing.server_id)
                again = existing.active and existing.announcement
                return [ServerChosen.model_validate(existing.announcement)] if again else []
            try:
                spec = resolve_paths(event.spec, policy)
            except PolicyError as exc:
                problem: str | None = str(exc)
            else:
                # Reading a user's data file (or resolving a teacher's host) can take a while: off the event loop.
                problem = await asyncio.to_thread(admission_problem, spec, policy)
            if problem is not None:
                span.set_attribute("selector.rejected", problem)
                return [reject(event.job_id, problem)]
            await planner.accept(event.job_id, spec)
            outcome = await planner.place(
                event.job_id, spec, revision=1, failed=[], reason="initial placement", previous=None
            )
            if isinstance(outcome, Infeasible):
                span.set_attribute("selector.infeasible", outcome.reason)
                return [reject(event.job_id, outcome.reason)]
            span.set_attribute("server.id", outcome.server.id)
            return [outcome]

    @events.handler(consumes=ServerDown, publishes=[ServerChosen, JobFailed], durable="selector-server-down")
    async def on_server_down(event: ServerDown, ctx: HandlerContext) -> list[Event]:
        """Re-plan every active job on the lost server, excluding servers that already failed it.

        One read of the server's job list, the jobs' placements and specs read concurrently, then per
        job: select from the cached table, claim with compare-and-set and publish its ServerChosen
        at once; the placement records and the release of the lost slots are written after all of
        the decisions are out.
        """
        started = time.perf_counter()
        planner.server_down(event.server_id)
        job_ids = await planner.placements.on_server(event.server_id)
        # One job's unreadable record must not stop the others from moving: it fails alone.
        placements = await asyncio.gather(
            *(planner.placements.get(job_id) for job_id in job_ids), return_exceptions=True
        )
        specs = await asyncio.gather(*(planner.spec_of(job_id) for job_id in job_ids), return_exceptions=True)
        moved = 0
        afterwards: list[Awaitable[None]] = []
        for job_id, placement, spec in zip(job_ids, placements, specs, strict=True):
            if isinstance(placement, BaseException) or isinstance(spec, BaseException):
                problem = placement if isinstance(placement, BaseException) else spec
                log.error(
                    "job %s on %s cannot be re-planned: its stored record is unreadable: %s",
                    job_id,
                    event.server_id,
                    problem,
                )
                await ctx.publish(
                    JobFailed(
                        event_id=stable_id(job_id, "failed", "unreadable", event.event_id),
                        job_id=job_id,
                        stage="placement",
                        reason=f"server {event.server_id} went down and the job's stored record cannot be read "
                        f"({type(problem).__name__})",
                    )
                )
                afterwards.append(planner.placements.release(event.server_id, job_id))
                continue
            if placement is None or spec is None or not placement.active:
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
                attributes={
                    "job.id": job_id,
                    "server.down": event.server_id,
                    "replan.revision": placement.revision + 1,
                },
            ):
                outcome = await planner.choose(
                    job_id,
                    spec,
                    revision=placement.revision + 1,
                    failed=failed,
                    reason=f"server {event.server_id} went down ({event.reason})",
                    previous=event.server_id,
                )
                if isinstance(outcome, Infeasible):
                    await ctx.publish(
                        JobFailed(
                            event_id=stable_id(job_id, "failed", "replan", placement.revision),
                            job_id=job_id,
                            stage="placement",
                            reason=f"server {event.server_id} went down and no other server fits: {outcome.reason}",
                        )
                    )
                    afterwards.append(
                        planner.placements.record(
                            placement.model_copy(update={"active": False, "failed_servers": failed})
                        )
                    )
                else:
                    await ctx.publish(outcome)
                    carrier: dict[str, str] = {}
                    propagate.inject(carrier)
                    afterwards.append(planner.remember(outcome, failed, carrier))
                    moved += 1
                    replans.add(1)
                    replan_seconds.record(time.perf_counter() - started)
            afterwards.append(planner.placements.release(event.server_id, job_id))
        await asyncio.gather(*afterwards)
        log.info("re-planned %d jobs off %s in %.1f ms", moved, event.server_id, (time.perf_counter() - started) * 1e3)
        return []

    async def release(event: Event, ctx: HandlerContext) -> None:
        """A failed or cancelled job gives its server slot back."""
        assert event.job_id is not None
        await planner.finish(event.job_id)

    # A completed job keeps its slot and stays active: its deployment serves on that server, so a
    # ServerDown must still re-plan it (the deployer follows). `stratos cancel` frees the slot.
    events.handler(consumes=JobFailed, publishes=[], durable="selector-job-failed")(release)
    events.handler(consumes=JobCancelRequested, publishes=[], durable="selector-job-cancelled")(release)

    if with_ledger:

        @events.handler(
            consumes=Event,
            publishes=[AttemptDecided, TrainingAssigned, DeploymentAssigned, JobFailed],
            durable="selector-ledger",
            subject="stratos.evt.>",
            projection=True,
        )
        async def project(event: Event, ctx: HandlerContext) -> list[Event]:
            """Fold every job event into the job's state in KV (what `stratos status` reads), and assign the work
            the job's current placement owes to that server's workers."""
            if event.job_id is None:
                return []
            state, wrote = await planner.jobs.update(event.job_id, lambda current: apply(current, event))
            if wrote and state is not None and state.status != "running" and event.event_type in TERMINAL:
                jobs_finished.add(1, {"outcome": state.status})
            # Also when nothing was written (a redelivery after a crash between the fold and the publish):
            # the assignment's id is stable, so saying it again is dropped as a duplicate.
            if state is None or event.event_type not in DISPATCHING:
                return []
            if needs_decision(state):
                # The decision is an event of its own (status, explain, the trace); folded, it dispatches the work.
                spec = await planner.spec_of(state.job_id)
                if spec is None:
                    reason = "its spec can no longer be read, so the next attempt cannot be decided"
                    return [
                        JobFailed(
                            event_id=stable_id(state.job_id, "failed", "escalation"),
                            job_id=state.job_id,
                            stage="escalation",
                            reason=reason,
                        )
                    ]
                return [decide(state, spec)]
            return assignments(state)

    return events
