"""Re-planning after ServerDowns: every active job of a lost server moves to another, or fails saying why.

A region outage is hundreds of ServerDowns at once. The selector pulls them in batches and handles a batch's
messages concurrently (`handlers.build_events`); the ServerDowns that arrive together are re-planned in one
round: each lost server's job list from the local copy of the loads, every job's placement read concurrently,
one selection per distinct job between fills (`Planner.choose_each`), one compare-and-set per chosen server,
the decisions published concurrently, then the placements recorded and the lost slots released (one
compare-and-set per lost server). Each ServerDown is acknowledged once the round that covered it is done.

Rounds run one at a time, and a server leaves every table the moment its ServerDown arrives
(`Planner.server_down`): a round reads a lost server's jobs after every claim of the rounds before it, so a job
an earlier round placed on a server whose ServerDown came later is in that server's list and moves again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from opentelemetry import propagate, trace

from stratos_selector.domain import Infeasible
from stratos_selector.placements import JobPlacement
from stratos_selector.planner import Planner, Wanted
from stratos_shared.contracts.base import Event, stable_id
from stratos_shared.contracts.events import JobFailed, ServerChosen, ServerDown
from stratos_shared.contracts.job import JobSpec
from stratos_shared.metrics import replan_seconds, replans

log = logging.getLogger("stratos.selector")
tracer = trace.get_tracer("stratos.selector")

CONCURRENCY = 64
"""KV reads and writes, and publishes, in flight at once during a round."""

Publish = Callable[[Event], Awaitable[None]]
T = TypeVar("T")


@dataclass(frozen=True)
class Lost:
    """A ServerDown being handled: how its handler publishes, and its span (each job's re-plan links to it)."""

    event: ServerDown
    publish: Publish
    cause: trace.Link
    received: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class Move:
    """An active job of a lost server, to be placed again."""

    placement: JobPlacement
    spec: JobSpec
    lost: Lost
    trace_carrier: dict[str, str] = field(default_factory=dict)
    """The job's trace context once its decision is published (recorded with the placement)."""

    def wanted(self) -> Wanted:
        event = self.lost.event
        return Wanted(
            job_id=self.placement.job_id,
            spec=self.spec,
            revision=self.placement.revision + 1,
            failed=(*self.placement.failed_servers, event.server_id),
            reason=f"server {event.server_id} went down ({event.reason})",
            previous=event.server_id,
        )


class Replanner:
    """Coalesces the ServerDowns handled at the same time into rounds, one round at a time."""

    def __init__(self, planner: Planner, concurrency: int = CONCURRENCY) -> None:
        self.planner = planner
        self.concurrency = concurrency
        self._waiting: list[tuple[Lost, asyncio.Future[None]]] = []
        self._turn = asyncio.Lock()

    async def replan(self, event: ServerDown, publish: Publish) -> None:
        """Move the lost server's active jobs; returns when a round that read its job list after this call is
        done (raising what that round raised, so the ServerDown is delivered again)."""
        self.planner.server_down(event.server_id)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        cause = trace.Link(trace.get_current_span().get_span_context())
        self._waiting.append((Lost(event, publish, cause), done))
        async with self._turn:
            if not done.done():
                await self._round(done)
        await done

    async def _round(self, mine: asyncio.Future[None]) -> None:
        batch, self._waiting = self._waiting, []
        try:
            await replan_round(self.planner, [lost for lost, _ in batch], self.concurrency)
        except Exception as exc:
            for _, done in batch:
                done.set_exception(exc)
            return
        except BaseException:  # cancelled (the service stops): the others are handed back and come again
            for _, done in batch:
                if done is mine:
                    done.cancel()
                else:
                    done.set_exception(RuntimeError("the re-plan round was interrupted"))
            raise
        for _, done in batch:
            done.set_result(None)


async def gather_bounded(limit: int, calls: Iterable[Awaitable[T]]) -> list[T | BaseException]:
    """Await `calls` at most `limit` at a time; each one's result or exception, in order."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Awaitable[T]) -> T:
        async with gate:
            return await call

    return await asyncio.gather(*(one(call) for call in calls), return_exceptions=True)


@dataclass
class Round:
    """What a round found on the lost servers: the jobs to move, the jobs that fail unread, the slots to free."""

    moves: list[Move] = field(default_factory=list)
    failures: list[tuple[JobFailed, Lost]] = field(default_factory=list)
    releases: dict[str, list[str]] = field(default_factory=dict)

    def free(self, server_id: str, job_id: str) -> None:
        self.releases.setdefault(server_id, []).append(job_id)


async def read_round(planner: Planner, lost: Sequence[Lost], limit: int) -> Round:
    """Each lost server's job list, then every listed job's placement and spec, concurrently. A job moves when its
    active placement names a lost server; one whose stored placement or spec cannot be read fails alone."""
    servers = {one.event.server_id: one for one in lost}
    listed = await asyncio.gather(*(planner.placements.on_server(server_id) for server_id in servers))
    on: dict[str, list[str]] = {}
    for server_id, jobs in zip(servers, listed, strict=True):
        for job_id in jobs:
            on.setdefault(job_id, []).append(server_id)
    placements = await gather_bounded(limit, (planner.placements.get(job_id) for job_id in on))
    specs = await gather_bounded(limit, (planner.spec_of(job_id) for job_id in on))
    found = Round()
    for (job_id, where), placement, spec in zip(on.items(), placements, specs, strict=True):
        problem = next((p for p in (placement, spec) if isinstance(p, BaseException)), None)
        if problem is not None:
            found.failures.append((unreadable(job_id, servers[where[0]].event, problem), servers[where[0]]))
            for server_id in where:
                found.free(server_id, job_id)
        elif _moves(placement, spec, where):
            assert isinstance(placement, JobPlacement) and isinstance(spec, JobSpec)
            found.moves.append(Move(placement, spec, servers[placement.server_id]))
            found.free(placement.server_id, job_id)
    return found


def _moves(placement: object, spec: object, lost: list[str]) -> bool:
    """An active placement on a lost server, with its spec: a job to move (others moved on or ended)."""
    active = isinstance(placement, JobPlacement) and placement.active and placement.server_id in lost
    return active and isinstance(spec, JobSpec)


async def replan_round(planner: Planner, lost: Sequence[Lost], limit: int = CONCURRENCY) -> int:
    """Move every active job off the lost servers, excluding servers that already failed it; how many moved.

    Every decision is published before any placement is recorded or slot released, as one job at a time did.
    """
    started = time.perf_counter()
    found = await read_round(planner, lost, limit)
    moves = found.moves
    outcomes = await planner.choose_each([move.wanted() for move in moves])
    announcements = (announce(move, outcome) for move, outcome in zip(moves, outcomes, strict=True))
    failures = (one.publish(failed) for failed, one in found.failures)
    raise_first(await gather_bounded(limit, [*announcements, *failures]))
    records = (record(planner, move, outcome) for move, outcome in zip(moves, outcomes, strict=True))
    frees = (planner.placements.release(server_id, jobs) for server_id, jobs in found.releases.items())
    raise_first(await gather_bounded(limit, [*records, *frees]))
    moved = sum(isinstance(outcome, ServerChosen) for outcome in outcomes)
    took = (time.perf_counter() - started) * 1e3
    log.info("re-planned %d of %d jobs off %d servers in %.1f ms", moved, len(moves), len(lost), took)
    return moved


def raise_first(results: Sequence[object]) -> None:
    """Raise the first exception among `results` (the round fails, and its ServerDowns come again)."""
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def announce(move: Move, outcome: ServerChosen | Infeasible) -> None:
    """Publish one job's decision inside its own trace (linked to the ServerDown that caused it)."""
    placement, event = move.placement, move.lost.event
    with tracer.start_as_current_span(
        "selector.replan",
        context=propagate.extract(placement.trace_context),
        links=[move.lost.cause],
        attributes={
            "job.id": placement.job_id,
            "server.down": event.server_id,
            "replan.revision": placement.revision + 1,
        },
    ):
        if isinstance(outcome, Infeasible):
            await move.lost.publish(
                JobFailed(
                    event_id=stable_id(placement.job_id, "failed", "replan", placement.revision),
                    job_id=placement.job_id,
                    stage="placement",
                    reason=f"server {event.server_id} went down and no other server fits: {outcome.reason}",
                )
            )
            return
        await move.lost.publish(outcome)
        replans.add(1)
        replan_seconds.record(time.perf_counter() - move.lost.received)
        carrier: dict[str, str] = {}
        propagate.inject(carrier)  # the job's trace, so a later re-plan joins it
        move.trace_carrier.update(carrier)


async def record(planner: Planner, move: Move, outcome: ServerChosen | Infeasible) -> None:
    """Write the job's placement once its decision is out: the new one, or the old one marked inactive."""
    wanted = move.wanted()
    if isinstance(outcome, Infeasible):
        failed = list(wanted.failed)
        await planner.placements.record(move.placement.model_copy(update={"active": False, "failed_servers": failed}))
    else:
        await planner.remember(outcome, list(wanted.failed), move.trace_carrier)


def unreadable(job_id: str, event: ServerDown, problem: BaseException) -> JobFailed:
    """A job on the lost server whose stored placement or spec cannot be read fails alone."""
    log.error(
        "job %s on %s cannot be re-planned: its stored record is unreadable: %s", job_id, event.server_id, problem
    )
    return JobFailed(
        event_id=stable_id(job_id, "failed", "unreadable", event.event_id),
        job_id=job_id,
        stage="placement",
        reason=f"server {event.server_id} went down and the job's stored record cannot be read "
        f"({type(problem).__name__})",
    )
