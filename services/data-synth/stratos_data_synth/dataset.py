"""One job's training set: the stage decision of data-synth, callable without a bus.

`synthesise_dataset` checks the budget, asks the teacher in the chosen mode (`synthesis.synthesise`), falls
back to injection once if alignment accepted too little, and either refuses (too little data, saying why) or
returns the records to write; `write_dataset` puts them in the job's artifacts. The verification rules
themselves are `stratos_data_synth.domain`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stratos_data_synth.domain import eval_record, grpo_record
from stratos_data_synth.settings import DataSynthSettings
from stratos_data_synth.synthesis import ProgressCallback, SynthesisOutcome, estimate_cost, synthesise
from stratos_shared.artifacts import ArtifactStore
from stratos_shared.contracts.events import DistillationMode, TeacherChosen
from stratos_shared.contracts.job import JobSpec
from stratos_shared.jobcontext import Split, split_task, teacher_client_for
from stratos_shared.layout import Artifact, JobArtifacts
from stratos_shared.tasks import Task
from stratos_shared.teacher.errors import SecretError, TeacherAddressRefused

log = logging.getLogger("stratos.data_synth")

TEACHER_ERROR = "teacher-error"
"""Key in DataReady.rejected_by_reason: questions dropped because the teacher failed after retries."""


@dataclass
class Dataset:
    """What data-synth writes and announces in DataReady."""

    mode: DistillationMode
    """The mode the data was synthesised in (injection after a fallback)."""
    outcome: SynthesisOutcome
    train: list[dict[str, Any]]
    """Training records: chat records, or GRPO prompts."""
    traces: list[dict[str, Any]]
    """A GRPO job's verified traces in chat format (its warm start); empty otherwise."""
    eval: list[dict[str, Any]]

    @property
    def rejected_by_reason(self) -> dict[str, int]:
        """Traces verification refused, and questions dropped because the teacher failed on them."""
        teacher = {TEACHER_ERROR: self.outcome.teacher_errors} if self.outcome.teacher_errors else {}
        return dict(self.outcome.builder.rejected) | teacher


@dataclass(frozen=True)
class Refused:
    """Why the job gets no training set (its JobFailed reason)."""

    reason: str


async def synthesise_mode(
    spec: JobSpec,
    task: Task,
    teacher: str,
    mode: DistillationMode,
    settings: DataSynthSettings,
    *,
    budget_usd: float,
    on_progress: ProgressCallback | None = None,
) -> SynthesisOutcome:
    """Ask `teacher` for traces over the job's training split of `task` in `mode`, within `budget_usd`."""
    train = split_task(task, spec.task).train
    async with teacher_client_for(next(t for t in spec.teachers if t.name == teacher), settings) as client:
        return await synthesise(
            task,
            train,
            mode,
            client,
            spec.distillation,
            temperature=settings.sampling_temperature,
            budget_usd=budget_usd,
            on_progress=on_progress,
            progress_every=settings.progress_every,
        )


def over_budget(spec: JobSpec, chosen: TeacherChosen, questions: int) -> Refused | None:
    """Refuse before asking anything when the teacher's cost per question says the budget left cannot pay."""
    score = next(s for s in chosen.scores if s.name == chosen.teacher)
    per_question = score.cost_usd / max(1, score.graded + score.errors)
    budget_left = spec.constraints.budget_usd - chosen.cost_usd
    estimate = estimate_cost(per_question, questions, spec.distillation, chosen.mode)
    if estimate <= budget_left:
        return None
    return Refused(
        f"synthesis would cost about ${estimate:.2f} but only ${budget_left:.2f} "
        "of the budget is left; raise budget_usd or lower task.size / samples_per_question"
    )


async def synthesise_dataset(
    spec: JobSpec,
    task: Task,
    chosen: TeacherChosen,
    settings: DataSynthSettings,
    on_progress: ProgressCallback | None = None,
) -> Dataset | Refused:
    """The job's training set in the chosen mode, or why there is none (never train on too little data); `task` is
    the job's task as `jobcontext.task_of` builds it."""
    split = split_task(task, spec.task)
    refused = over_budget(spec, chosen, len(split.train))
    if refused is not None:
        return refused
    budget = max(0.0, spec.constraints.budget_usd - chosen.cost_usd)
    mode: DistillationMode = chosen.mode
    try:
        outcome = await synthesise_mode(
            spec, task, chosen.teacher, mode, settings, budget_usd=budget, on_progress=on_progress
        )
    except (SecretError, TeacherAddressRefused) as exc:  # its key or host refused here (teacher-eval's may differ)
        return Refused(f"teacher '{chosen.teacher}' cannot be used by data-synth: {exc}")
    minimum = spec.distillation.min_dataset_size
    if (
        outcome.builder.accepted_count < minimum
        and mode == "alignment"
        and settings.fallback_to_injection
        and outcome.teacher_errors < len(split.train)  # a teacher that answered nothing will not in injection
    ):
        log.warning(
            "job %s: alignment accepted only %d records; switching to injection once",
            chosen.job_id,
            outcome.builder.accepted_count,
        )
        mode = "injection"
        previous_cost = outcome.cost_usd
        outcome = await synthesise_mode(
            spec, task, chosen.teacher, mode, settings, budget_usd=budget, on_progress=on_progress
        )
        outcome.cost_usd += previous_cost
    if outcome.builder.accepted_count < minimum:
        return Refused(too_little(outcome, chosen.teacher, minimum, len(split.train)))
    return dataset(spec, task, split, mode, outcome)


def too_little(outcome: SynthesisOutcome, teacher: str, minimum: int, questions: int) -> str:
    """Why too few records were accepted, in the words a user can act on."""
    builder = outcome.builder
    why = "too few traces passed verification"
    if outcome.stopped_by_budget:
        why = "the budget ran out"
    elif outcome.teacher_errors:
        why = (
            f"teacher '{teacher}' failed on {outcome.teacher_errors} of {questions} "
            f"questions (last error: {outcome.last_teacher_error})"
        )
    return (
        f"only {builder.accepted_count} training records were accepted "
        f"(minimum {minimum}): {why}; rejected by reason: {dict(builder.rejected)}"
    )


def dataset(spec: JobSpec, task: Task, split: Split, mode: DistillationMode, outcome: SynthesisOutcome) -> Dataset:
    """The records: GRPO trains on prompts (graded by its reward) and warm-starts on the traces; SFT on the traces."""
    builder = outcome.builder
    if spec.training.method == "grpo":
        train = [grpo_record(task, e) for e in split.train if e.id in builder.accepted]
        traces = builder.records(split.train)
    else:
        train, traces = builder.records(split.train), []
    return Dataset(mode, outcome, train, traces, [eval_record(task, e) for e in split.eval])


def jsonl(records: Sequence[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()


async def write_dataset(store: ArtifactStore, job_id: str, data: Dataset) -> tuple[str, str]:
    """Put the training set in the job's artifacts; the train and eval URIs DataReady carries."""
    artifacts = JobArtifacts(store, job_id)
    train_uri = await artifacts.put(Artifact.TRAIN, jsonl(data.train))
    if data.traces:
        await artifacts.put(Artifact.TRACES, jsonl(data.traces))
    return train_uri, await artifacts.put(Artifact.EVAL, jsonl(data.eval))
