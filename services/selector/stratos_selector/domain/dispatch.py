"""Which server's workers must do a job's next piece of work: pure, from the job's ledger state.

The selector owns placements, so it also says where work runs. After each placement, data or training
event the ledger folds, `assignments` names the work the job's *current* placement owes: training once
its data is ready, serving once it is trained. Each assignment's id is (job, kind, revision), so saying
it again after every fold (or after a crash) publishes a duplicate JetStream drops, and a re-plan (a new
revision) assigns the same work again to the new server.
"""

from __future__ import annotations

from stratos_shared.contracts.base import Event, stable_id
from stratos_shared.contracts.events import DataReady, DeploymentAssigned, ModelTrained, TrainingAssigned
from stratos_shared.jobs import JobState

DISPATCHING = frozenset({"ServerChosen", "DataReady", "ModelTrained"})
"""The events after which a job's assignments can change."""


def assignments(state: JobState) -> list[Event]:
    """The work the job's current placement owes, or nothing (not placed, not ready, or ended)."""
    if not state.server_id or state.server_revision < 1 or state.status not in ("running", "completed"):
        return []
    server, revision = state.server_id, state.server_revision
    trained = state.inputs.get("ModelTrained")
    if trained is not None:
        return [
            DeploymentAssigned(
                event_id=stable_id(state.job_id, "assign-deploy", revision),
                job_id=state.job_id,
                server_id=server,
                revision=revision,
                trained=ModelTrained.model_validate(trained),
            )
        ]
    data = state.inputs.get("DataReady")
    if data is not None and state.status == "running":
        return [
            TrainingAssigned(
                event_id=stable_id(state.job_id, "assign-train", revision),
                job_id=state.job_id,
                server_id=server,
                revision=revision,
                data=DataReady.model_validate(data),
            )
        ]
    return []
