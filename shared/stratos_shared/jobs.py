"""A job's state as the ``stratos-jobs`` KV bucket holds it: the contract between the ledger and its readers.

The selector's workflow (`stratos_selector.workflow`) writes it, folding every job event in stream order;
`stratos status/watch/jobs/explain`, the trainers and the deployers read it. Only the shape lives here, so a
reader needs no stage's logic.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from stratos_shared.contracts.events import DataReady, ModelTrained, TrainingPlan
from stratos_shared.results import JobResults

Status = Literal["running", "completed", "failed", "rejected", "cancelled"]
Stage = Literal["submitted", "placing", "teacher-eval", "data-synth", "training", "deploying", "completed"]

STAGES: list[Stage] = ["submitted", "placing", "teacher-eval", "data-synth", "training", "deploying", "completed"]
"""The pipeline's stages in order; `stage` is the one the job is in now."""

MAX_HISTORY = 200
MAX_SEEN = 500
MAX_CURVE = 500


class HistoryEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    at: datetime
    event_type: str
    summary: str


class Progress(BaseModel):
    model_config = ConfigDict(frozen=True)

    done: int
    total: int
    detail: str = ""


class Decision(BaseModel):
    """What was decided after an attempt (from its AttemptDecided)."""

    model_config = ConfigDict(frozen=True)

    action: str
    reason: str
    estimated_cost_usd: float = 0.0
    next: TrainingPlan | None = None
    decided_at: datetime | None = Field(default=None, description="When it was decided (None in older entries).")


class Attempt(BaseModel):
    """One training attempt, as its ModelTrained reported it, and the decision that followed it."""

    model_config = ConfigDict(frozen=True)

    attempt: int
    action: str = Field(description="How the attempt came about: first, continue or next-student.")
    lineage: int = Field(default=1, description="The attempt that started this student's line of training.")
    student: str
    base_model: str
    start_step: int
    steps: int
    accuracy_before: float
    accuracy: float
    cost_usd: float
    seconds: float
    revision: int | None = None
    trained_at: datetime | None = Field(default=None, description="When it was reported (None in older entries).")
    decision: Decision | None = None

    @property
    def trained_steps(self) -> int:
        return self.steps - self.start_step

    @property
    def gain(self) -> float:
        return self.accuracy - self.accuracy_before


def best_attempt(attempts: list[Attempt]) -> Attempt:
    """The most accurate attempt; on a tie the earlier one (it is the smaller or the shorter-trained)."""
    return max(attempts, key=lambda a: (a.accuracy, -a.attempt))


class WorkInputs(BaseModel):
    """The events a job's work is made from, as published: what the selector assigns to the placed server's
    trainers (the data) and deployers (the best attempt), again after a re-plan.

    Stored under the events' names (``{"DataReady": {...}, "ModelTrained": {...}}``, an absent one left out), the
    shape the ledger has always written, so entries written before these fields were typed still read.
    """

    model_config = ConfigDict(frozen=True, validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    data: DataReady | None = Field(default=None, alias="DataReady", description="The job's training data.")
    trained: ModelTrained | None = Field(
        default=None, alias="ModelTrained", description="The best attempt so far: what is deployed once training stops."
    )

    @model_serializer(mode="wrap")
    def _present(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {name: value for name, value in handler(self).items() if value is not None}


class JobState(BaseModel):
    """What `stratos status` shows: stage, outcome, current server, key results and the event history."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    name: str = ""
    status: Status = "running"
    stage: Stage = "submitted"
    submitted_at: datetime | None = None
    updated_at: datetime | None = None
    server_id: str | None = None
    server_revision: int = 0
    servers: list[str] = Field(
        default_factory=list,
        description="Every server the job was placed on, each once, first placement first: whose artifact buckets "
        "hold what its workers wrote (checkpoints to resume from, a model to serve after a move).",
    )
    teacher: str | None = None
    mode: str | None = None
    student: str | None = None
    endpoint: str | None = None
    report_uri: str | None = None
    reason: str | None = None
    progress: dict[str, Progress] = Field(default_factory=dict, description="Latest progress per stage.")
    results: JobResults = Field(default_factory=JobResults, description="Headline numbers per stage.")
    history: list[HistoryEntry] = Field(default_factory=list)
    seen: list[str] = Field(default_factory=list, description="Ids of events already applied.")
    inputs: WorkInputs = Field(
        default_factory=WorkInputs, description="The data and the best attempt: what the placed server is assigned."
    )
    attempts: list[Attempt] = Field(default_factory=list, description="Every training attempt, in order.")

    def attempt(self, number: int) -> Attempt | None:
        return next((a for a in self.attempts if a.attempt == number), None)
