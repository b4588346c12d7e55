"""Where each job is placed, kept in KV with compare-and-set.

Two keys per placement:
- ``job.<job_id>``: the job's current server, revision and the servers that failed it;
- ``server.<server_id>``: the jobs on that server, never more than its capacity.
A server slot is claimed with compare-and-set before `ServerChosen` is
published, so two concurrent decisions (two selector replicas, or two jobs at
once) can never double-book a server.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from stratos_shared.bus.kv import TypedKV


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


class ServerLoad(BaseModel):
    model_config = ConfigDict(frozen=True)

    server_id: str
    jobs: list[str] = Field(default_factory=list)


def job_key(job_id: str) -> str:
    return f"job.{job_id}"


def server_key(server_id: str) -> str:
    return f"server.{server_id}"


class Placements:
    """Claims and releases of server slots, and the placement of each job."""

    def __init__(self, jobs: TypedKV[JobPlacement], loads: TypedKV[ServerLoad]) -> None:
        self.jobs = jobs
        self.loads = loads

    async def claim(self, server_id: str, job_id: str, capacity: int) -> bool:
        """Take a slot on the server for the job; False when it is full (someone else won the race)."""

        def add(current: ServerLoad | None) -> ServerLoad | None:
            jobs = current.jobs if current else []
            if job_id in jobs or len(jobs) >= capacity:
                return None
            return ServerLoad(server_id=server_id, jobs=[*jobs, job_id])

        stored, _ = await self.loads.update(server_key(server_id), add)
        return stored is not None and job_id in stored.jobs

    async def release(self, server_id: str, job_id: str) -> None:
        def remove(current: ServerLoad | None) -> ServerLoad | None:
            if current is None or job_id not in current.jobs:
                return None
            return ServerLoad(server_id=server_id, jobs=[j for j in current.jobs if j != job_id])

        await self.loads.update(server_key(server_id), remove)

    async def load(self) -> dict[str, int]:
        """Jobs placed per server now."""
        return {load.server_id: len(load.jobs) for load in (await self.loads.items(prefix="server.")).values() if load.jobs}

    async def get(self, job_id: str) -> JobPlacement | None:
        found = await self.jobs.get(job_key(job_id))
        return found[0] if found else None

    async def record(self, placement: JobPlacement) -> None:
        await self.jobs.put(job_key(placement.job_id), placement)

    async def on_server(self, server_id: str) -> list[str]:
        found = await self.loads.get(server_key(server_id))
        return list(found[0].jobs) if found else []
