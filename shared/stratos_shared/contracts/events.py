"""Every event of a job's life, with the subject it travels on.

Subjects follow ``stratos.evt.<entity>.<verb>``; operator commands use
``stratos.cmd.<entity>.<verb>``; heartbeats ``stratos.hb.<server_id>`` (core
NATS, not persisted: a missed beat is the signal). `docs/architecture.md` lists
the publisher and consumers of each.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from stratos_shared.contracts.base import CONTRACT_CONFIG, Event, JobId, ServerId
from stratos_shared.contracts.job import JobSpec
from stratos_shared.contracts.selection import SelectionExplanation
from stratos_shared.contracts.servers import ServerSpec

DistillationMode = Literal["alignment", "injection"]
E = TypeVar("E", bound=Event)

FROM_SERVER = "server"
"""The subject segment before a server's id: a worker's event travels on ``<SUBJECT>.server.<server_id>``."""
FROM_CONTROL = "control"
"""The subject segment of a job failure a control service (selector, teacher-eval, data-synth) declares."""


class FromServer(Event):
    """An event a server's worker publishes: on ``<SUBJECT>.server.<server_id>``, with the placement revision.

    Three checks make a worker's word count only for its own work. The broker lets a server's credential publish
    only on subjects that name that server (`stratos_shared.bus.permissions`); the router refuses a message whose
    body names another server than its subject (`origin_problem`); and the ledger acts on it only while that
    server holds the job's placement at that revision (`stratos_selector.workflow.fenced_out`). ``server_id`` and
    ``revision`` are filled from the assignment the worker handles when the stage leaves them unset.
    """

    FROM_CONTROL_TOO: ClassVar[bool] = False
    """Whether a control service may publish it too (only a job failure)."""
    server_id: ServerId | None = Field(default=None, description="The server whose worker published it.")
    revision: int | None = Field(
        default=None,
        ge=1,
        description="The placement revision it was produced under (the fencing token): the ledger ignores it "
        "unless the job is placed on `server_id` at exactly this revision.",
    )

    def routed_subject(self) -> str:
        if self.server_id is None:
            return f"{self.SUBJECT}.{FROM_CONTROL}"
        return f"{self.SUBJECT}.{FROM_SERVER}.{self.server_id}"


def listen_subject(cls: type[Event]) -> str:
    """What a consumer of `cls` filters on: its subject, or every origin's for an event a server publishes."""
    return f"{cls.SUBJECT}.>" if issubclass(cls, FromServer) else cls.SUBJECT


def origin_problem(event: Event, subject: str) -> str | None:
    """Why a worker's `event` may not travel on `subject` (None when it may): the subject names its body's server."""
    if not isinstance(event, FromServer):
        return None
    if event.server_id is None and not event.FROM_CONTROL_TOO:
        return f"{event.event_type} comes from a server's worker and names none"
    expected = event.routed_subject()
    if subject == expected:
        return None
    return f"{event.event_type} of {event.server_id or 'a control service'} travels on {expected}, not {subject}"


class _Part(BaseModel):
    model_config = ConfigDict(**CONTRACT_CONFIG, extra="ignore")


# --- job lifecycle -------------------------------------------------------------------------


class JobSubmitted(Event):
    """A user asks for a distilled model."""

    SUBJECT: ClassVar[str] = "stratos.evt.job.submitted"
    event_type: Literal["JobSubmitted"] = "JobSubmitted"
    job_id: JobId
    spec: JobSpec
    submitted_by: str = Field(default="cli", max_length=128)


class JobRejected(Event):
    """A submission (or another event) was refused before any work; says why."""

    SUBJECT: ClassVar[str] = "stratos.evt.job.rejected"
    event_type: Literal["JobRejected"] = "JobRejected"
    reason: str = Field(description="Plain-words reason a user can act on.")
    errors: list[str] = Field(default_factory=list, description="Individual validation errors, 'field: problem'.")
    rejected_subject: str = Field(default="", description="Subject of the refused message.")


class JobCancelRequested(Event):
    """A user stops a job (`stratos cancel`); the deployer tears its endpoint down."""

    SUBJECT: ClassVar[str] = "stratos.evt.job.cancel"
    event_type: Literal["JobCancelRequested"] = "JobCancelRequested"
    job_id: JobId


class JobCompleted(FromServer):
    """The job finished: the report says what was built and what it cost (from the deployer that serves it)."""

    SUBJECT: ClassVar[str] = "stratos.evt.job.completed"
    event_type: Literal["JobCompleted"] = "JobCompleted"
    job_id: JobId
    report_uri: str
    summary: dict[str, Any] = Field(default_factory=dict)


class JobFailed(FromServer):
    """The job stopped for good; `stage` and `reason` say where and why.

    From a control service it travels on ``stratos.evt.job.failed.control`` (no server may publish there); from a
    server's worker on ``stratos.evt.job.failed.server.<server_id>``, and counts only from the job's placement.
    """

    FROM_CONTROL_TOO: ClassVar[bool] = True
    SUBJECT: ClassVar[str] = "stratos.evt.job.failed"
    event_type: Literal["JobFailed"] = "JobFailed"
    job_id: JobId
    stage: str
    reason: str


# --- servers -------------------------------------------------------------------------------


class ServerRegistered(Event):
    """A server joined (or came back to) the inventory."""

    SUBJECT: ClassVar[str] = "stratos.evt.server.registered"
    event_type: Literal["ServerRegistered"] = "ServerRegistered"
    server: ServerSpec
    source: str = Field(default="catalog", description="catalog, ppio, heartbeat or operator.")


class ServerHeartbeat(Event):
    """A worker process of a server says it is alive and what it runs; published on ``stratos.hb.<server_id>``.

    Every trainer and deployer process of a server beats every few seconds; the inventory marks the
    server down (`heartbeat-timeout`) when all of them have been silent longer than its timeout.
    """

    SUBJECT: ClassVar[str] = "stratos.hb"
    event_type: Literal["ServerHeartbeat"] = "ServerHeartbeat"
    server_id: ServerId
    worker: str = Field(default="", max_length=256, description="The process (host:pid unless configured).")
    service: str = Field(default="", max_length=64, description="trainer or deployer.", examples=["trainer"])
    jobs: list[JobId] = Field(default_factory=list, max_length=1024, description="Jobs this process works on now.")
    interval_s: float = Field(default=2.0, gt=0, le=3600, description="How often this process beats.")


class ServerDownRequested(Event):
    """An operator marks a server down (`stratos server down ID`)."""

    SUBJECT: ClassVar[str] = "stratos.cmd.server.down"
    event_type: Literal["ServerDownRequested"] = "ServerDownRequested"
    server_id: ServerId
    reason: str = "operator"


class ServerUpRequested(Event):
    """An operator brings a server back (`stratos server up ID`)."""

    SUBJECT: ClassVar[str] = "stratos.cmd.server.up"
    event_type: Literal["ServerUpRequested"] = "ServerUpRequested"
    server_id: ServerId


class ServerDown(Event):
    """A server is gone: missed heartbeats or an operator said so."""

    SUBJECT: ClassVar[str] = "stratos.evt.server.down"
    event_type: Literal["ServerDown"] = "ServerDown"
    server_id: ServerId
    reason: str = Field(description="heartbeat-timeout or operator.")


# --- planning ------------------------------------------------------------------------------


class ServerChosen(Event):
    """Where the job runs; a new revision after a re-plan."""

    SUBJECT: ClassVar[str] = "stratos.evt.server.chosen"
    event_type: Literal["ServerChosen"] = "ServerChosen"
    job_id: JobId
    revision: int = Field(ge=1, description="1 for the first placement, +1 per re-plan.")
    server: ServerSpec
    previous_server_id: ServerId | None = None
    reason: str = Field(default="initial placement")
    explanation: SelectionExplanation


class TeacherScore(_Part):
    """How one candidate teacher did on the evaluation sample."""

    name: str
    accuracy: float = Field(ge=0, le=1)
    ci_low: float = Field(ge=0, le=1, description="95% Wilson interval, lower bound.")
    ci_high: float = Field(ge=0, le=1)
    graded: int = Field(ge=0)
    errors: int = Field(ge=0, description="Requests that failed (timeouts, 5xx, malformed).")
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    cost_usd: float = Field(ge=0)
    error: str | None = Field(default=None, description="Why the teacher could not be scored, if so.")


class TeacherChosen(Event):
    """The chosen teacher and distillation mode, with the evidence."""

    SUBJECT: ClassVar[str] = "stratos.evt.teacher.chosen"
    event_type: Literal["TeacherChosen"] = "TeacherChosen"
    job_id: JobId
    teacher: str
    mode: DistillationMode
    tau: float
    scores: list[TeacherScore]
    sample_ids: list[str]
    cost_usd: float = Field(ge=0)


class DataProgress(Event):
    """Data synthesis progress, for `stratos watch`."""

    SUBJECT: ClassVar[str] = "stratos.evt.data.progress"
    event_type: Literal["DataProgress"] = "DataProgress"
    job_id: JobId
    done: int
    total: int
    accepted: int


class DataReady(Event):
    """The training set is in the artifact store."""

    SUBJECT: ClassVar[str] = "stratos.evt.data.ready"
    event_type: Literal["DataReady"] = "DataReady"
    job_id: JobId
    mode: DistillationMode
    teacher: str
    train_uri: str = Field(description="JSONL, chat format (see docs/datasets.md).")
    eval_uri: str = Field(description="Held-out split: never trained on.")
    asked: int = Field(description="Teacher traces requested.")
    accepted: int = Field(description="Training records kept (verified, de-duplicated, at most n per question).")
    rejected_by_reason: dict[str, int] = Field(default_factory=dict)
    verified_by_extraction: dict[str, int] = Field(
        default_factory=dict,
        description="Traces that passed verification, by how their answer was found: 'strict' (the Answer: line), "
        "'hash', 'boxed', 'last-number' (kept rewritten to end on the Answer: line) or 'regex'.",
        examples=[{"strict": 40, "last-number": 12}],
    )
    acceptance_rate: float = Field(ge=0, le=1, description="Traces that passed verification / traces asked.")
    teacher_tokens: int = Field(ge=0)
    cost_usd: float = Field(ge=0)


class StudentScreen(_Part):
    """Pre-screening evidence for one candidate student."""

    name: str
    model: str
    params: int
    screened_accuracy: float = Field(ge=0, le=1)
    passed: bool


class StudentChosen(FromServer):
    """The student that will be trained, and why."""

    SUBJECT: ClassVar[str] = "stratos.evt.student.chosen"
    event_type: Literal["StudentChosen"] = "StudentChosen"
    job_id: JobId
    student: str
    model: str
    threshold: float
    screens: list[StudentScreen]


class TrainingProgress(FromServer):
    """A training step report (and checkpoint location when one was saved)."""

    SUBJECT: ClassVar[str] = "stratos.evt.training.progress"
    event_type: Literal["TrainingProgress"] = "TrainingProgress"
    job_id: JobId
    server_id: ServerId
    step: int = Field(ge=0)
    total_steps: int = Field(ge=0)
    loss: float | None = None
    tokens_per_s: float | None = None
    eta_s: float | None = None

    @field_validator("loss", "tokens_per_s", "eta_s", mode="before")
    @classmethod
    def _unknown_if_not_finite(cls, value: object) -> object:
        """A diverged loss (NaN) or a rate over zero seconds is reported as unknown, never as a NaN no store reads."""
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value

    attempt: int = Field(default=1, ge=1, le=100, description="The training attempt this progress is of.")
    checkpoint_uri: str | None = None
    trainer: str | None = Field(
        default=None,
        description="The trainer process that sent it (host:pid unless configured), to tell N trainers apart.",
        examples=["trainer-7f9c:4121"],
    )


class ModelTrained(FromServer):
    """The student is trained; its adapter or weights are in the artifact store."""

    SUBJECT: ClassVar[str] = "stratos.evt.model.trained"
    event_type: Literal["ModelTrained"] = "ModelTrained"
    job_id: JobId
    server_id: ServerId
    student: str
    base_model: str
    method: str
    model_uri: str = Field(description="Adapter (LoRA) or full model directory, as an archive URI.")
    is_adapter: bool
    accuracy_before: float = Field(ge=0, le=1)
    accuracy_after: float = Field(ge=0, le=1)
    extractions_before: dict[str, int] = Field(
        default_factory=dict,
        description="Held-out outputs of the base by how their answer was found ('strict': the Answer: line; "
        "'hash', 'boxed', 'last-number': flexible fallbacks; 'none').",
        examples=[{"last-number": 14, "none": 2}],
    )
    extractions_after: dict[str, int] = Field(
        default_factory=dict,
        description="The same for the trained student.",
        examples=[{"strict": 16}],
    )
    training_seconds: float = Field(ge=0)
    steps: int = Field(ge=0)
    tokens: int = Field(ge=0)
    resumed_from_step: int = Field(default=0, ge=0)
    cost_usd: float = Field(ge=0)
    trainer: str | None = Field(
        default=None, description="The trainer process that finished the training.", examples=["trainer-7f9c:4121"]
    )
    attempt: int = Field(default=1, ge=1, le=100, description="Which training attempt of the job this is.")
    start_step: int = Field(
        default=0,
        ge=0,
        description="The step this attempt started from (a 'continue' attempt starts where the "
        "attempt it continues ended); `steps - start_step` were trained in this attempt.",
    )


class ModelDeployed(FromServer):
    """The student is served; latency was measured through the endpoint."""

    SUBJECT: ClassVar[str] = "stratos.evt.model.deployed"
    event_type: Literal["ModelDeployed"] = "ModelDeployed"
    job_id: JobId
    server_id: ServerId
    revision: int = Field(ge=1, description="Matches the ServerChosen revision it was deployed for.")
    endpoint: str
    backend: Literal["vllm", "cpu", "llamacpp"] = Field(
        description="vllm (GPU), llamacpp (llama-server on GGUF), cpu (the transformers batching server)."
    )
    ttft_p50_ms: float
    ttft_p95_ms: float
    latency_p50_ms: float
    latency_p95_ms: float
    accuracy: float = Field(ge=0, le=1)
    api_key_uri: str | None = Field(
        default=None,
        max_length=512,
        description="Artifact holding the bearer key the endpoint requires (`stratos key JOB` prints it); "
        "None: an endpoint deployed before keys existed, which needs none.",
    )
    report_uri: str | None = Field(
        default=None,
        max_length=512,
        description="The job's report rewritten for this endpoint, on a redeployment after a re-plan (each server "
        "writes its own artifact bucket, so the report moves with the job); None: the first deployment, whose "
        "JobCompleted carries the report.",
    )


AttemptAction = Literal["continue", "next-student", "stop"]


class TrainingPlan(_Part):
    """What one training attempt trains: which student, up to which step, starting from where."""

    attempt: int = Field(default=1, ge=1, le=100)
    action: Literal["first", "continue", "next-student"] = Field(default="first", description="How it came about.")
    student: str | None = Field(default=None, description="The student to train; unset: the pre-screen's choice.")
    max_steps: int | None = Field(
        default=None, gt=0, le=10_000_000, description="Train up to this global step; unset: the spec's training."
    )
    resume_attempt: int | None = Field(
        default=None, ge=1, description="'continue': start from this attempt's final checkpoint."
    )
    lineage: int = Field(
        default=1,
        ge=1,
        description="The attempt that started this student's line of training (its baseline and warm start).",
    )
    max_cost_usd: float | None = Field(
        default=None,
        ge=0,
        description="The attempt's allowance: the trainer stops and evaluates what it has once training cost this "
        "much (the budget left when it was decided); unset for the first attempt, which placement priced.",
    )


class AttemptDecided(Event):
    """What the job does after a training attempt: another attempt (and which), or stop and deploy the best.

    Published by the selector's ledger once per attempt (a stable id per attempt), from the job's attempts,
    its pre-screen, its spec and the budget left; `stratos status` shows it and the report lists every attempt.
    """

    SUBJECT: ClassVar[str] = "stratos.evt.attempt.decided"
    event_type: Literal["AttemptDecided"] = "AttemptDecided"
    job_id: JobId
    attempt: int = Field(ge=1, description="The attempt just trained and evaluated.")
    action: AttemptAction
    reason: str = Field(description="Why, in plain words (the target, the gain, the price, the budget).")
    target: float = Field(ge=0, le=1)
    target_met: bool
    best_attempt: int = Field(ge=1, description="The attempt with the best held-out accuracy so far (deployed).")
    best_accuracy: float = Field(ge=0, le=1)
    spent_usd: float = Field(ge=0, description="Teacher, data and training spend so far.")
    budget_left_usd: float = Field(description="Budget minus spend minus the serving the budget must cover.")
    estimated_cost_usd: float = Field(default=0.0, ge=0, description="Price of the next attempt, estimated.")
    next: TrainingPlan | None = Field(default=None, description="The next attempt, unless the action is stop.")


# --- work assigned to one server -------------------------------------------------------------


class _Assignment(Event):
    """Work for one server's workers at one placement revision, published on ``<SUBJECT>.<server_id>``."""

    job_id: JobId
    server_id: ServerId
    revision: int = Field(ge=1, description="The placement revision: the fencing token of this work.")

    def routed_subject(self) -> str:
        return f"{self.SUBJECT}.{self.server_id}"  # a server id is one subject token


def stamped(out: E, work: Event) -> E:
    """`out` with the fencing token of the assignment `work` it answers (its server and placement revision) where the
    stage left them unset: every result a worker publishes carries them, so the ledger can fence it."""
    if not isinstance(out, FromServer) or not isinstance(work, _Assignment):
        return out
    if out.server_id is not None and out.revision is not None:
        return out
    return out.model_copy(
        update={"server_id": out.server_id or work.server_id, "revision": out.revision or work.revision}
    )


class TrainingAssigned(_Assignment):
    """Train this job on this server at this placement revision (published on ``stratos.work.train.<server>``).

    The selector's ledger publishes one per (job, revision) once the job's data is ready and it is placed;
    only the trainers of `server_id` pull it, through that server's durable consumer.
    """

    SUBJECT: ClassVar[str] = "stratos.work.train"
    event_type: Literal["TrainingAssigned"] = "TrainingAssigned"
    data: DataReady = Field(description="The training set to train on.")
    plan: TrainingPlan = Field(default_factory=TrainingPlan, description="Which attempt, which student, how far.")


class DeploymentAssigned(_Assignment):
    """Serve this trained model on this server at this placement revision (``stratos.work.deploy.<server>``)."""

    SUBJECT: ClassVar[str] = "stratos.work.deploy"
    event_type: Literal["DeploymentAssigned"] = "DeploymentAssigned"
    trained: ModelTrained = Field(description="The model to serve.")


AnyEvent = Annotated[
    JobSubmitted
    | JobRejected
    | JobCancelRequested
    | JobCompleted
    | JobFailed
    | ServerRegistered
    | ServerHeartbeat
    | ServerDownRequested
    | ServerUpRequested
    | ServerDown
    | ServerChosen
    | TeacherChosen
    | DataProgress
    | DataReady
    | StudentChosen
    | TrainingProgress
    | ModelTrained
    | ModelDeployed
    | AttemptDecided
    | TrainingAssigned
    | DeploymentAssigned,
    Field(discriminator="event_type"),
]

EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        JobSubmitted,
        JobRejected,
        JobCancelRequested,
        JobCompleted,
        JobFailed,
        ServerRegistered,
        ServerHeartbeat,
        ServerDownRequested,
        ServerUpRequested,
        ServerDown,
        ServerChosen,
        TeacherChosen,
        DataProgress,
        DataReady,
        StudentChosen,
        TrainingProgress,
        ModelTrained,
        ModelDeployed,
        AttemptDecided,
        TrainingAssigned,
        DeploymentAssigned,
    )
}
