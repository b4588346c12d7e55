"""Where each job is placed, kept in KV with compare-and-set.

Two keys per placement:
- ``job.<job_id>``: the job's current server, revision and the servers that failed it;
- ``server.<server_id>``: the jobs on that server, never more than its capacity.
A server slot is claimed with compare-and-set before `ServerChosen` is
published, so two concurrent decisions (two selector replicas, or two jobs at
once) can never double-book a server.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict, Field

from stratos_shared.bus.kv import MAX_CAS_ATTEMPTS, Follow, TypedKV, follow


class JobPlacement(BaseModel):
    model_config = ConfigDict(frozen=True)

    job_id: str
    server_id: str
    revision: int
    failed_servers: list[str] = Field(default_factory=list)
    active: bool = True
    trace_context: dict[str, str] = Field(
        default_factory=dict, description="W3C headers of the job's trace, so a re-plan joins the job's trace."
    )
    announcement: dict[str, Any] | None = Field(
        default=None,
        description="The ServerChosen event as published: a redelivered JobSubmitted re-sends it (same event id, "
        "so JetStream drops it if the first send went out) instead of losing it to a crash between record and send.",
    )


class ServerLoad(BaseModel):
    model_config = ConfigDict(frozen=True)

    server_id: str
    jobs: list[str] = Field(default_factory=list)


def submission_key(job_id: str) -> str:
    return f"submission.{job_id}"


def job_key(job_id: str) -> str:
    return f"job.{job_id}"


def server_key(server_id: str) -> str:
    return f"server.{server_id}"


class Placements:
    """Claims and releases of server slots, and the placement of each job.

    ``follow_loads`` keeps a local copy of every ``server.*`` key (value and KV revision) from a
    watcher, so `load` costs no round trip and a claim is one compare-and-set against the cached
    revision; a stale copy only costs a retry (the compare-and-set fails, the key is re-read).
    Without the watcher every call reads KV as before.
    """

    def __init__(self, jobs: TypedKV[JobPlacement], loads: TypedKV[ServerLoad]) -> None:
        self.jobs = jobs
        self.loads = loads
        self._cache: dict[str, tuple[ServerLoad, int]] | None = None

    # --- the local copy of the server.* keys --------------------------------------------------

    async def follow_loads(self) -> Follow:
        """Load the current server.* keys and return the loop that keeps them current (run it in the background)."""
        self._cache = {}
        return await follow(self.loads.kv, self._apply, self._stop_following, keys="server.>")

    def _stop_following(self) -> None:
        self._cache = None  # fall back to reading KV

    def _apply(self, entry: KeyValue.Entry) -> None:
        if self._cache is None:
            return
        revision = entry.revision or 0
        cached = self._cache.get(entry.key)
        if cached is not None and cached[1] >= revision:
            return  # we already hold this write (our own) or a newer one
        if entry.operation is not None or not entry.value:
            self._cache[entry.key] = (ServerLoad(server_id=entry.key.removeprefix("server.")), revision)
        else:
            self._cache[entry.key] = (ServerLoad.model_validate_json(entry.value), revision)

    def _remember(self, key: str, value: ServerLoad, revision: int) -> None:
        if self._cache is not None:
            cached = self._cache.get(key)
            if cached is None or cached[1] < revision:
                self._cache[key] = (value, revision)

    async def _read(self, key: str, *, fresh: bool) -> tuple[ServerLoad | None, int]:
        if not fresh and self._cache is not None:
            cached = self._cache.get(key)
            return cached if cached is not None else (None, 0)
        found = await self.loads.get(key)
        if found is None:
            return None, 0
        self._remember(key, *found)
        return found

    async def _change(
        self, server_id: str, change: Callable[[ServerLoad | None], ServerLoad | None]
    ) -> ServerLoad | None:
        """Compare-and-set ``change`` on the server's key, starting from the cached revision; the value now stored."""
        key = server_key(server_id)
        fresh = False
        for _ in range(MAX_CAS_ATTEMPTS):
            current, revision = await self._read(key, fresh=fresh)
            new = change(current)
            if new is None:
                if fresh or current is None:
                    return current
                fresh = True  # the cached copy says "nothing to do": make sure it is not stale
                continue
            data = new.model_dump_json().encode()
            try:
                if revision:
                    written = await self.loads.kv.update(key, data, last=revision)
                else:
                    written = await self.loads.kv.create(key, data)
            except KeyWrongLastSequenceError:
                fresh = True
                continue
            self._remember(key, new, written)
            return new
        raise RuntimeError(f"KV key {key!r} is too contended: {MAX_CAS_ATTEMPTS} compare-and-set attempts lost")

    # --- claims ---------------------------------------------------------------------------------

    async def claim(self, server_id: str, job_ids: Sequence[str], capacity: int) -> set[str]:
        """Take a slot on the server for each job, in order, while slots are free; the jobs that hold one now
        (those left out lost the race for its last slots to another decision). One compare-and-set for them all."""

        def add(current: ServerLoad | None) -> ServerLoad | None:
            jobs = current.jobs if current else []
            room = max(0, capacity - len(jobs))
            new = [job_id for job_id in dict.fromkeys(job_ids) if job_id not in jobs][:room]
            return ServerLoad(server_id=server_id, jobs=[*jobs, *new]) if new else None

        stored = await self._change(server_id, add)
        return set(job_ids) & set(stored.jobs if stored else ())

    async def release(self, server_id: str, job_ids: Collection[str]) -> None:
        """Give the jobs' slots on the server back (one compare-and-set for them all)."""
        gone = set(job_ids)

        def remove(current: ServerLoad | None) -> ServerLoad | None:
            if current is None or gone.isdisjoint(current.jobs):
                return None
            return ServerLoad(server_id=server_id, jobs=[j for j in current.jobs if j not in gone])

        await self._change(server_id, remove)

    async def load(self) -> dict[str, int]:
        """Jobs placed per server now (from the local copy when following)."""
        if self._cache is not None:
            return {load.server_id: len(load.jobs) for load, _ in self._cache.values() if load.jobs}
        return {
            load.server_id: len(load.jobs) for load in (await self.loads.items(prefix="server.")).values() if load.jobs
        }

    async def own_id(self, job_id: str, fingerprint: str) -> str:
        """Claim the job id for the submission with this fingerprint (first writer wins); the owner's fingerprint."""
        key = submission_key(job_id)
        try:
            await self.jobs.kv.create(key, fingerprint.encode())
        except KeyWrongLastSequenceError:
            entry = await self.jobs.kv.get(key)
            return (entry.value or b"").decode()
        return fingerprint

    async def get(self, job_id: str) -> JobPlacement | None:
        found = await self.jobs.get(job_key(job_id))
        return found[0] if found else None

    async def record(self, placement: JobPlacement) -> None:
        await self.jobs.put(job_key(placement.job_id), placement)

    async def on_server(self, server_id: str) -> list[str]:
        """The jobs holding a slot on the server (from the local copy when following: it holds every write of this
        process at once, and another replica's a watcher delivery later, no later than a fresh read would race)."""
        found, _ = await self._read(server_key(server_id), fresh=False)
        return list(found.jobs) if found else []
