"""What this trainer process knows about the jobs it trains: re-plans, cancellations and its own fence.

Each trainer process listens (core NATS, no durable state) to ServerChosen and JobCancelRequested, so a
training run can stop at its next step when its job moves to another server or is cancelled. The run's
fencing token is the placement revision it was assigned: a newer revision anywhere (a signal, the ledger)
means the work is no longer this server's, and a gap in its own heartbeats (see `ServerAgent`) means it
may have been declared dead meanwhile, so it stops and re-validates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stratos_shared.agent import ServerAgent
from stratos_shared.contracts.events import JobCancelRequested, ServerChosen


@dataclass
class JobSignals:
    latest_revision: dict[str, int] = field(default_factory=dict)
    cancelled: set[str] = field(default_factory=set)
    agent: ServerAgent | None = None
    active: set[str] = field(default_factory=set)
    """Jobs this process trains now (named in its heartbeats)."""

    def on_server_chosen(self, event: ServerChosen) -> None:
        self.latest_revision[event.job_id] = max(event.revision, self.latest_revision.get(event.job_id, 0))

    def on_cancel(self, event: JobCancelRequested) -> None:
        self.cancelled.add(event.job_id)

    def generation(self) -> int:
        return self.agent.generation if self.agent is not None else 0

    def moved(self, job_id: str, revision: int) -> bool:
        return self.latest_revision.get(job_id, revision) > revision

    def must_stop(self, job_id: str, revision: int, generation: int = 0) -> bool:
        fenced = self.agent is not None and self.agent.stale(generation)
        return job_id in self.cancelled or self.moved(job_id, revision) or fenced
