"""Scoring the teachers on the job's sample through the shared teacher client, and the stage's decision.

`decide_teacher` is what teacher-eval decides for a job (and what the experiments call): every candidate
scored on the same stratified held-out sample, the teacher chosen, then the mode by tau.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from opentelemetry import trace

from stratos_shared.contracts.events import DistillationMode, TeacherScore
from stratos_shared.contracts.job import JobSpec, TeacherSpec
from stratos_shared.jobcontext import split_task, teacher_client_for
from stratos_shared.settings import TeacherClientSettings
from stratos_shared.tasks import Example, Task
from stratos_shared.tasks.errors import GradingTimeout
from stratos_shared.tasks.offloop import off_loop
from stratos_shared.teacher.client import TeacherClient
from stratos_shared.teacher.errors import TeacherError
from stratos_teacher_eval.domain import choose_mode, choose_teacher, percentile, stratified_sample, wilson_interval

tracer = trace.get_tracer("stratos.teacher_eval")


@dataclass
class _Answers:
    """What asking the sample gave: the errors (a question the teacher failed or that could not be graded) and the
    latency of each answer."""

    errors: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)


async def _ask(client: TeacherClient, task: Task, example: Example, answers: _Answers) -> bool | None:
    """Whether the teacher answered `example` correctly; None when it gave no gradable answer."""
    started = time.perf_counter()
    try:
        completion = await client.complete(task.prompt(example), temperature=0.0)
    except TeacherError as exc:
        answers.errors.append(str(exc))
        return None
    answers.latencies_ms.append((time.perf_counter() - started) * 1000)
    try:  # off the loop: the lease on the message is extended from it while the teachers answer
        grade = await off_loop(task.grade, completion.text, example)
    except GradingTimeout as exc:
        answers.errors.append(str(exc))
        return None
    return grade.correct


def _score(name: str, asked: int, verdicts: Sequence[bool | None], answers: _Answers, cost_usd: float) -> TeacherScore:
    """The teacher's accuracy with its Wilson interval, its latency percentiles, its errors and what it cost."""
    graded = [v for v in verdicts if v is not None]
    correct = sum(graded)
    low, high = wilson_interval(correct, len(graded))
    error = None
    if not graded:
        error = f"no answer to any of {asked} requests: {answers.errors[0] if answers.errors else 'unknown error'}"
    return TeacherScore(
        name=name,
        accuracy=correct / len(graded) if graded else 0.0,
        ci_low=low,
        ci_high=high,
        graded=len(graded),
        errors=len(answers.errors),
        latency_p50_ms=percentile(answers.latencies_ms, 50),
        latency_p95_ms=percentile(answers.latencies_ms, 95),
        cost_usd=cost_usd,
        error=error,
    )


async def score_teacher(
    teacher: TeacherSpec,
    task: Task,
    sample: Sequence[Example],
    settings: TeacherClientSettings,
) -> TeacherScore:
    """Ask the teacher every sampled question once (greedy), grade, and summarise; failures are counted, not raised."""
    with tracer.start_as_current_span("teacher-eval.score", attributes={"teacher.name": teacher.name}) as span:
        try:
            client = teacher_client_for(teacher, settings)
        except TeacherError as exc:
            return TeacherScore(
                name=teacher.name,
                accuracy=0,
                ci_low=0,
                ci_high=1,
                graded=0,
                errors=len(sample),
                cost_usd=0,
                error=f"cannot be used from teacher-eval's host: {exc}",
            )
        answers = _Answers()
        async with client:
            verdicts = await asyncio.gather(*(_ask(client, task, example, answers) for example in sample))
        score = _score(teacher.name, len(sample), verdicts, answers, client.usage.cost_usd)
        span.set_attributes(
            {"teacher.accuracy": score.accuracy, "teacher.errors": score.errors, "teacher.cost_usd": score.cost_usd}
        )
        return score


async def score_teachers(
    teachers: Sequence[TeacherSpec], task: Task, sample: Sequence[Example], settings: TeacherClientSettings
) -> list[TeacherScore]:
    """Every candidate scored on the same sample at once."""
    return list(await asyncio.gather(*(score_teacher(teacher, task, sample, settings) for teacher in teachers)))


@dataclass(frozen=True)
class TeacherDecision:
    """What TeacherChosen says: every score, the sample they were measured on, the chosen teacher and the mode."""

    scores: list[TeacherScore]
    sample: list[Example]
    chosen: TeacherScore | None
    """None when no teacher could be scored at all."""
    mode: DistillationMode

    def no_teacher_reason(self) -> str:
        reasons = "; ".join(f"teacher '{s.name}': {s.error}" for s in self.scores)
        return f"no teacher could be scored, every one is unreachable or failing ({reasons})"


def eval_sample(spec: JobSpec, task: Task) -> list[Example]:
    """The stratified held-out sample the teachers answer (the same for every teacher, and on every replay)."""
    return stratified_sample(split_task(task, spec.task).eval, spec.distillation.eval_samples, spec.task.seed)


async def decide_teacher(
    spec: JobSpec, task: Task, settings: TeacherClientSettings, sample: Sequence[Example] | None = None
) -> TeacherDecision:
    """Score every teacher on `sample` (default: the stratified held-out sample), pick the teacher (accuracy, then
    cost, then latency), then the mode: alignment if its accuracy reaches tau, injection otherwise."""
    chosen_sample = list(sample) if sample is not None else eval_sample(spec, task)
    scores = await score_teachers(spec.teachers, task, chosen_sample, settings)
    best = choose_teacher(scores)
    mode = choose_mode(best.accuracy, spec.distillation.tau) if best is not None else "injection"
    return TeacherDecision(scores, chosen_sample, best, mode)
