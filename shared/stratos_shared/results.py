"""Each stage's headline results, as the ledger folds them into a job's state (`JobState.results`).

Typed, so the stages that read another stage's results (the trainer the server's price, the escalation the
spend so far, the deployer everything for the report) use fields, not string keys. The JSON shape is the one the
ledger always stored, so entries written before these types read back unchanged.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stratos_shared.contracts.events import StudentScreen, TeacherScore
from stratos_shared.contracts.selection import SelectionExplanation
from stratos_shared.contracts.servers import ServerSpec


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class PlacedServer(ServerSpec):
    """The server the job is placed on, with the placement revision and why it was chosen."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    revision: int = 0
    reason: str = ""


class TeacherEvalResult(_Result):
    teacher: str
    mode: str
    tau: float
    cost_usd: float = 0.0
    scores: list[TeacherScore] = Field(default_factory=list)

    def chosen_accuracy(self) -> float | None:
        return next((s.accuracy for s in self.scores if s.name == self.teacher), None)


class DataResult(_Result):
    accepted: int
    asked: int
    rate: float
    rejected: dict[str, int] = Field(default_factory=dict)
    cost_usd: float = 0.0
    mode: str = ""


class TrainingResult(_Result):
    """The best training attempt so far (the one deployed)."""

    before: float
    after: float
    cost_usd: float = 0.0
    seconds: float = 0.0
    steps: int = 0
    tokens: int = 0
    method: str = ""
    student: str = ""
    resumed_from_step: int = 0
    model_uri: str = ""
    is_adapter: bool = False
    base_model: str = ""
    attempt: int = 1


class DeploymentResult(_Result):
    p50_ms: float
    p95_ms: float
    ttft_p50_ms: float
    accuracy: float
    backend: str
    server_id: str
    revision: int
    api_key_uri: str | None = Field(default=None, description="Where the endpoint's bearer key is (None: no key).")


class EscalationResult(_Result):
    """The last decision after a training attempt (see `AttemptDecided`)."""

    target: float
    target_met: bool
    best_attempt: int
    best_accuracy: float
    spent_usd: float
    budget_left_usd: float
    last_action: str
    reason: str


class JobResults(_Result):
    """Headline numbers per stage; a stage's field is None until its event is folded."""

    server: PlacedServer | None = None
    placement: SelectionExplanation | None = None
    teacher: dict[str, float] = Field(default_factory=dict, description="Accuracy per teacher that could be scored.")
    unusable_teachers: dict[str, str] = Field(
        default_factory=dict,
        description="Teachers that could not be scored, with why (a key reference that does not resolve on "
        "teacher-eval's host, a refused host, no answer): never shown as an accuracy of 0.",
    )
    teacher_eval: TeacherEvalResult | None = None
    data: DataResult | None = None
    students: list[StudentScreen] = Field(default_factory=list, description="The pre-screen's verdicts.")
    loss_curve: list[tuple[int, float]] = Field(default_factory=list)
    training: TrainingResult | None = None
    deployment: DeploymentResult | None = None
    escalation: EscalationResult | None = None

    @property
    def price_per_hour(self) -> float:
        """The placed server's price (0 before placement)."""
        return self.server.cost_per_hour if self.server else 0.0

    @property
    def upstream_cost_usd(self) -> float:
        """What teacher evaluation and data synthesis cost."""
        return (self.teacher_eval.cost_usd if self.teacher_eval else 0.0) + (self.data.cost_usd if self.data else 0.0)

    def dumped(self, section: str) -> dict[str, Any]:
        """One section as plain JSON ({} when absent), for the report and the CLI's raw views."""
        value = getattr(self, section)
        return value.model_dump(mode="json") if isinstance(value, BaseModel) else {}
