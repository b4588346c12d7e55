"""What this trainer process knows about the jobs it trains: re-plans and cancellations, as they happen.

Each trainer process listens (core NATS, no durable state) to ServerChosen and
JobCancelRequested, so a training run can stop at its next step when its job
moves to another server or is cancelled; the job message then goes back to the
queue and whichever trainer takes it resumes from the last checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stratos_shared.contracts.events import JobCancelRequested, ServerChosen


@dataclass
class JobSignals:
    latest_revision: dict[str, int] = field(default_factory=dict)
    cancelled: set[str] = field(default_factory=set)

    def on_server_chosen(self, event: ServerChosen) -> None:
        self.latest_revision[event.job_id] = max(event.revision, self.latest_revision.get(event.job_id, 0))

    def on_cancel(self, event: JobCancelRequested) -> None:
        self.cancelled.add(event.job_id)

    def must_stop(self, job_id: str, revision: int) -> bool:
        return job_id in self.cancelled or self.latest_revision.get(job_id, revision) > revision
