"""The selector's planner: chooses servers for jobs, claims their slots and records the placements.

The choice itself is pure (`stratos_selector.domain.select` over a `ServerTable`, `domain.batch.select_each`
for many jobs at once); the planner adds what needs the buckets: a local copy of the inventory, the slot claims
(`Placements`, compare-and-set) and the job specs. The handlers only adapt events to its calls; `admit` and
`stratos_selector.replanning` (re-planning after ServerDowns) are the two stage decisions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from nats.js.kv import KeyValue
from opentelemetry import propagate, trace

from stratos_selector.admission import admit_spec, fingerprint
from stratos_selector.domain import Infeasible, Selection, ServerTable
from stratos_selector.domain.batch import Request, select_each
from stratos_selector.placements import JobPlacement, Placements
from stratos_shared.artifacts import ArtifactStore
from stratos_shared.bus.kv import Follow, TypedKV, follow
from stratos_shared.contracts.base import Event, stable_id
from stratos_shared.contracts.events import JobFailed, JobRejected, JobSubmitted, ServerChosen
from stratos_shared.contracts.job import JobSpec
from stratos_shared.contracts.servers import ServerRecord
from stratos_shared.jobs import JobState
from stratos_shared.layout import Artifact
from stratos_shared.policy import InputPolicy

log = logging.getLogger("stratos.selector")
tracer = trace.get_tracer("stratos.selector")

MAX_CLAIM_ATTEMPTS = 20


@dataclass(frozen=True)
class Wanted:
    """A job that needs a server, and what its ServerChosen will say."""

    job_id: str
    spec: JobSpec
    revision: int
    failed: tuple[str, ...]
    """Servers that failed the job before (a last resort)."""
    reason: str
    previous: str | None

    def announcement(self, selection: Selection) -> ServerChosen:
        return ServerChosen(
            event_id=stable_id(self.job_id, "server-chosen", self.revision),
            job_id=self.job_id,
            revision=self.revision,
            server=selection.server,
            previous_server_id=self.previous,
            reason=self.reason,
            explanation=selection.explanation,
        )


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
        self._artifacts: ArtifactStore | None = None
        self._records: dict[str, ServerRecord] | None = None
        self._full: ServerTable | None = None
        self._up: ServerTable | None = None
        self._down_hints: set[str] = set()
        self._down_records: set[str] = set()
        """Servers whose record says down (so a ServerDown costs no scan of the catalog)."""
        self._spec_cache: dict[str, JobSpec] = {}

    def attach(
        self,
        servers: TypedKV[ServerRecord],
        specs: TypedKV[JobSpec],
        placements: Placements,
        jobs: TypedKV[JobState],
        artifacts: ArtifactStore | None = None,
    ) -> None:
        self._servers, self._specs, self._placements, self._jobs = servers, specs, placements, jobs
        self._artifacts = artifacts

    @property
    def artifacts(self) -> ArtifactStore:
        """Where admission snapshots a job's task data."""
        assert self._artifacts is not None, "planner attached without an artifact store"
        return self._artifacts

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

    async def follow_inventory(self) -> Follow:
        """Load the server records and return the loop that keeps them current (run it in the background)."""
        self._records = {}
        self._down_records = set()
        return await follow(self.servers.kv, self._apply_server, self._stop_following)

    def _stop_following(self) -> None:
        self._records = None  # fall back to reading KV

    def _apply_server(self, entry: KeyValue.Entry) -> None:
        records = self._records
        if records is None:
            return
        self._up = None
        if entry.operation is not None or not entry.value:
            if (gone := records.pop(entry.key, None)) is not None:
                self._full = None
                self._down_records.discard(gone.spec.id)
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
            self._down_records.add(record.spec.id)
            self._down_hints.discard(record.spec.id)  # the bucket has caught up with the ServerDown
        else:
            self._down_records.discard(record.spec.id)

    def server_down(self, server_id: str) -> None:
        """A ServerDown arrived: stop offering the server even before the watcher delivers its record.

        No hint when the watcher already delivered the down record: nothing would clear it, and the server
        would stay out of the table after it came back up.
        """
        if self._records is not None and server_id in self._down_records:
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

    async def accept(self, job_id: str, spec: JobSpec, data: bytes | None) -> JobSpec:
        """Store the job's task data snapshot, then its spec (first writer wins); the spec that is stored.

        Called only while the job has no stored spec (`admit` looks first), so the snapshot is written before the
        spec and never after it: a stored spec's `data_sha256` always names the stored snapshot, even when a
        redelivered submission finds its file changed.
        """
        if data is not None:
            await self.artifacts.put_bytes(job_id, Artifact.TASK_DATA, data)
        if await self.specs.create(job_id, spec):
            self._spec_cache[job_id] = spec
            return spec
        return await self.spec_of(job_id) or spec

    # --- decisions -------------------------------------------------------------------------------

    async def choose(
        self, job_id: str, spec: JobSpec, *, revision: int, failed: list[str], reason: str, previous: str | None
    ) -> ServerChosen | Infeasible:
        """Select and claim a slot for one job (see `choose_each`); nothing recorded yet."""
        return (await self.choose_each([Wanted(job_id, spec, revision, tuple(failed), reason, previous)]))[0]

    async def choose_each(self, wanted: Sequence[Wanted]) -> list[ServerChosen | Infeasible]:
        """Select and claim a slot for each job, in order, each counting the slots the earlier ones took; nothing
        recorded yet. One selection per distinct job between fills (`select_each`), one compare-and-set per chosen
        server for all its jobs, those concurrently; the jobs that lost a server's last slots to another decision
        are chosen again with that server full.

        Servers that failed a job before are a last resort, not banned: the table holds only servers that
        are up, and one that came back beats failing a job that has nowhere else to go.
        """
        table = await self.table()
        outcomes: dict[int, ServerChosen | Infeasible] = {}
        full: dict[str, int] = {}
        pending = list(range(len(wanted)))
        for _ in range(MAX_CLAIM_ATTEMPTS):
            load = {**(await self.placements.load()), **full}
            requests = [Request(wanted[i].spec, frozenset(wanted[i].failed)) for i in pending]
            chosen: dict[str, list[tuple[int, Selection]]] = {}
            for i, selection in zip(pending, select_each(table, requests, load), strict=True):
                if isinstance(selection, Infeasible):
                    outcomes[i] = selection
                else:
                    chosen.setdefault(selection.server.id, []).append((i, selection))
            claims = [self.placements.claim(sid, [wanted[i].job_id for i, _ in jobs], jobs[0][1].server.capacity)
                      for sid, jobs in chosen.items()]  # fmt: skip
            pending = []
            for (server_id, jobs), won in zip(chosen.items(), await asyncio.gather(*claims), strict=True):
                for i, selection in jobs:
                    if wanted[i].job_id in won:
                        outcomes[i] = wanted[i].announcement(selection)
                    else:  # lost the race for its last slots: treat it as full
                        pending.append(i)
                        full[server_id] = selection.server.capacity
            if not pending:
                return [outcomes[i] for i in range(len(wanted))]
        names = ", ".join(wanted[i].job_id for i in pending[:5])
        raise RuntimeError(f"could not claim a server slot for {names} in {MAX_CLAIM_ATTEMPTS} attempts")

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

    async def finish(self, job_id: str, failure: JobFailed | None = None) -> None:
        """The job ended: its server slot is free. A worker's `failure` frees it only from the job's placement."""
        placement = await self.placements.get(job_id)
        if placement is None or not placement.active:
            return
        if failure is not None and not counts(failure, placement):
            log.warning(
                "job %s: a failure from %s at revision %s ignored (placed on %s at revision %d)",
                job_id,
                failure.server_id,
                failure.revision,
                placement.server_id,
                placement.revision,
            )
            return
        await self.placements.release(placement.server_id, [job_id])
        await self.placements.record(placement.model_copy(update={"active": False}))


def poisoned(job_id: str, event_type: str, consumer: str, deliveries: int, stream_seq: int) -> JobFailed:
    """The failure of a job whose message its consumer never finished: the process died on every delivery (out of
    memory, a crash in native code), so no handler was left to say so."""
    reason = (
        f"{consumer} never finished {event_type}: its process stopped on each of {deliveries} deliveries (out of "
        "memory or a crash in native code?); see that worker's log"
    )
    return JobFailed(
        event_id=stable_id(job_id, "failed", "poison", consumer, stream_seq),
        job_id=job_id,
        stage=consumer,
        reason=reason,
    )


def counts(failure: JobFailed, placement: JobPlacement) -> bool:
    """A control service's failure always counts; a worker's only from the server holding the placement, at its
    revision (another server's credential must not free, and so lose, a job that is not its own)."""
    return failure.server_id is None or (failure.server_id, failure.revision) == (
        placement.server_id,
        placement.revision,
    )


def reject(job_id: str, reason: str, *key: object) -> JobRejected:
    return JobRejected(event_id=stable_id(job_id, "rejected", *key), job_id=job_id, reason=reason)


async def admit(planner: Planner, event: JobSubmitted, policy: InputPolicy) -> list[Event]:
    """Accept the job (store its spec) and place it, or reject it naming why: an id another submission owns,
    a spec the input policy refuses, a task that cannot work, or no server that fits. A redelivered
    submission re-announces its recorded placement (same event id) instead of placing it twice."""
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
        spec = await planner.spec_of(event.job_id)
        if spec is None:  # not accepted yet (a redelivery after acceptance keeps what was admitted)
            # Reading a user's data file (or resolving a teacher's host) can take a while: off the event loop.
            admitted = await asyncio.to_thread(admit_spec, event.spec, policy)
            if isinstance(admitted, str):
                span.set_attribute("selector.rejected", admitted)
                return [reject(event.job_id, admitted)]
            spec = await planner.accept(event.job_id, admitted.spec, admitted.data)
        outcome = await planner.place(
            event.job_id, spec, revision=1, failed=[], reason="initial placement", previous=None
        )
        if isinstance(outcome, Infeasible):
            span.set_attribute("selector.infeasible", outcome.reason)
            return [reject(event.job_id, outcome.reason)]
        span.set_attribute("server.id", outcome.server.id)
        return [outcome]
