"""Which server's workers must do a job's next piece of work: pure, from the job's ledger state.

The selector owns placements, so it also says where work runs. After each placement, data, training or
decision event the ledger folds, `assignments` names the work the job's *current* placement owes: the first
training attempt once its data is ready, the attempt the last decision asked for (`escalation.decide`), and
serving the best attempt once the decision is to stop. Each assignment's id is (job, kind, revision,
attempt), so saying it again after every fold (or after a crash) publishes a duplicate JetStream drops, and a
re-plan (a new revision) assigns the same work again to the new server: an escalation resumes, not restarts.
"""

from __future__ import annotations

from stratos_shared.contracts.base import Event, stable_id
from stratos_shared.contracts.events import (
    DataReady,
    DeploymentAssigned,
    ModelTrained,
    TrainingAssigned,
    TrainingPlan,
)
from stratos_shared.jobs import JobState

DISPATCHING = frozenset({"ServerChosen", "DataReady", "ModelTrained", "AttemptDecided"})
"""The events after which a job's assignments can change."""


def _training(state: JobState, server: str, revision: int, plan: TrainingPlan) -> TrainingAssigned | None:
    data = state.inputs.get("DataReady")
    if data is None or state.status != "running":
        return None
    parts: tuple[object, ...] = (state.job_id, "assign-train", revision)
    if plan.attempt > 1:
        parts += ("attempt", plan.attempt)
    return TrainingAssigned(
        event_id=stable_id(*parts),
        job_id=state.job_id,
        server_id=server,
        revision=revision,
        data=DataReady.model_validate(data),
        plan=plan,
    )


def assignments(state: JobState) -> list[Event]:
    """The work the job's current placement owes, or nothing (not placed, not ready, undecided, or ended)."""
    if not state.server_id or state.server_revision < 1 or state.status not in ("running", "completed"):
        return []
    server, revision = state.server_id, state.server_revision
    if not state.attempts:
        first = _training(state, server, revision, TrainingPlan())
        return [first] if first else []
    decision = state.attempts[-1].decision
    if decision is None:
        return []  # the ledger decides first (escalation.decide), then assigns what it decided
    if decision.next is not None:
        following = _training(state, server, revision, decision.next)
        return [following] if following else []
    trained = state.inputs.get("ModelTrained")  # the best attempt's
    if trained is None:
        return []
    return [
        DeploymentAssigned(
            event_id=stable_id(state.job_id, "assign-deploy", revision),
            job_id=state.job_id,
            server_id=server,
            revision=revision,
            trained=ModelTrained.model_validate(trained),
        )
    ]
