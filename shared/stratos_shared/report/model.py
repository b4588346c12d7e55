"""The job report's typed sections: each stage's typed result as the ledger folded it, plus what only the report adds.

The JSON keys are the ones the report always stored (the sections used to be plain dicts of these results), so a
report.json written before these types reads back unchanged; a section a job never reached is None (an old report
wrote ``{}``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from stratos_shared.jobs import Attempt
from stratos_shared.results import DataResult, EscalationResult, PlacedServer, TeacherEvalResult, TrainingResult

PLOT_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class ServerSection(PlacedServer):
    """The placed server, and how the selector came to it (from its SelectionExplanation)."""

    strategy: str | None = None
    feasible_count: int | None = None
    total_count: int | None = None
    pareto_size: int | None = None


class TeacherSection(TeacherEvalResult):
    """Every candidate's score, the chosen teacher and mode, and the chosen teacher's held-out accuracy."""

    accuracy: float | None = Field(default=None, description="The chosen teacher's accuracy; None if not scored.")


class EndpointMeasurements(_Section):
    """What the deployer measured through the endpoint, as a client would."""

    ttft_p50_ms: float
    ttft_p95_ms: float
    latency_p50_ms: float = Field(description="End-to-end, one request at a time.")
    latency_p95_ms: float
    accuracy: float = Field(description="Held-out accuracy of the answers the endpoint gave.")


class ServedEndpoint(EndpointMeasurements):
    """One deployment: where it serves, with which engine, and its measurements (kept in the deployment record)."""

    endpoint: str
    backend: str
    server_id: str
    auth: Literal["bearer"] | None = Field(default=None, description="bearer: clients need the deployment's key.")
    engine_note: str | None = Field(default=None, description="Why the engine is not the one the backend prefers.")


class ServingSection(ServedEndpoint):
    """The deployment held against the job's constraints."""

    network_latency_ms: float = Field(description="The users' round trip to the server (the catalog's figure).")
    total_latency_ms: float = Field(description="Network latency plus the measured end-to-end p50.")
    slo_ms: float
    meets_slo: bool
    accuracy_target: float = Field(description="0 when the job set none.")
    meets_accuracy_target: bool


StageName = Literal["admission", "teacher-eval", "data-synth", "pre-screen", "training", "deployment", "re-plan"]


class StageSpan(_Section):
    """One stage of the job on the clock, from the ledger's event times; a re-plan is an instant (start = end)."""

    stage: StageName
    label: str = Field(description="What the reader sees, e.g. 'attempt 2: continue tiny-1m'.")
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


class CostBreakdown(_Section):
    teacher_eval_usd: float = 0.0
    data_synth_usd: float = 0.0
    training_usd: float = 0.0
    serving_usd: float = Field(default=0.0, description="Serving hours from the constraints × server price.")
    budget_usd: float

    @property
    def total_usd(self) -> float:
        return self.teacher_eval_usd + self.data_synth_usd + self.training_usd + self.serving_usd


class ScoreBreakdown(_Section):
    accuracy: float
    latency: float
    cost: float

    @property
    def total(self) -> float:
        return (self.accuracy + self.latency + self.cost) / 3


def multi_objective_score(
    accuracy: float, total_latency_ms: float, slo_ms: float, total_cost_usd: float, budget_usd: float
) -> ScoreBreakdown:
    latency = 1.0 if total_latency_ms <= 0 else min(1.0, slo_ms / total_latency_ms)
    cost = max(0.0, 1.0 - total_cost_usd / budget_usd) if budget_usd > 0 else 0.0
    return ScoreBreakdown(accuracy=accuracy, latency=latency, cost=cost)


class JobReport(_Section):
    """Everything `stratos report` shows; stored as JSON next to its plots in the artifact store."""

    job_id: str
    name: str
    task: str
    generated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    server: ServerSection
    teacher: TeacherSection | None = None
    data: DataResult | None = None
    student: TrainingResult = Field(description="The deployed attempt's line of training.")
    serving: ServingSection
    cost: CostBreakdown
    score: ScoreBreakdown
    loss_curve: list[tuple[int, float]] = Field(default_factory=list)
    attempts: list[Attempt] = Field(
        default_factory=list,
        description="Every training attempt: how it came about, student, steps, accuracy, cost, the decision after.",
    )
    escalation: EscalationResult | None = Field(default=None, description="The last decision: target met or why not.")
    timeline: list[StageSpan] = Field(default_factory=list, description="Each stage's start and end, in order.")
    plots: dict[str, str] = Field(default_factory=dict, description="Plot name -> artifact URI (PNG).")

    @field_validator("teacher", "data", "escalation", mode="before")
    @classmethod
    def _empty_is_absent(cls, value: Any) -> Any:
        """Reports written before the sections were typed stored a missing stage as ``{}``."""
        return None if value == {} else value

    @field_validator("plots")
    @classmethod
    def _plain_plot_names(cls, value: dict[str, str]) -> dict[str, str]:
        """A plot name becomes a file name in the user's report folder: letters, digits, '-' and '_' only."""
        for name in value:
            if not PLOT_NAME.fullmatch(name):
                raise ValueError(f"plot name {name[:80]!r} must be 1-64 letters, digits, '-' or '_'")
        return value
