"""Scoring one teacher on the job's sample through the shared teacher client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

from opentelemetry import trace

from stratos_shared.contracts.events import TeacherScore
from stratos_shared.contracts.job import TeacherSpec
from stratos_shared.jobcontext import teacher_client
from stratos_shared.policy import InputPolicy
from stratos_shared.tasks import Example, Task
from stratos_shared.teacher.errors import TeacherError
from stratos_teacher_eval.domain import percentile, wilson_interval

tracer = trace.get_tracer("stratos.teacher_eval")


async def score_teacher(
    teacher: TeacherSpec,
    task: Task,
    sample: Sequence[Example],
    *,
    cache_dir: Path,
    policy: InputPolicy,
    concurrency: int,
    timeout_s: float,
    max_retries: int,
) -> TeacherScore:
    """Ask the teacher every sampled question once (greedy), grade, and summarise; failures are counted, not raised."""
    with tracer.start_as_current_span("teacher-eval.score", attributes={"teacher.name": teacher.name}) as span:
        correct = 0
        errors: list[str] = []
        latencies: list[float] = []
        try:
            client = teacher_client(
                teacher,
                cache_dir,
                policy=policy,
                concurrency=concurrency,
                timeout_s=timeout_s,
                max_retries=max_retries,
            )
        except TeacherError as exc:
            return TeacherScore(
                name=teacher.name,
                accuracy=0,
                ci_low=0,
                ci_high=1,
                graded=0,
                errors=len(sample),
                cost_usd=0,
                error=str(exc),
            )
        async with client:

            async def ask(example: Example) -> bool | None:
                started = time.perf_counter()
                try:
                    completion = await client.complete(task.prompt(example), temperature=0.0)
                except TeacherError as exc:
                    errors.append(str(exc))
                    return None
                latencies.append((time.perf_counter() - started) * 1000)
                return task.grade(completion.text, example).correct

            verdicts = await asyncio.gather(*(ask(example) for example in sample))
        graded = [v for v in verdicts if v is not None]
        correct = sum(graded)
        low, high = wilson_interval(correct, len(graded))
        error = None
        if not graded:
            error = f"no answer to any of {len(sample)} requests: {errors[0] if errors else 'unknown error'}"
        score = TeacherScore(
            name=teacher.name,
            accuracy=correct / len(graded) if graded else 0.0,
            ci_low=low,
            ci_high=high,
            graded=len(graded),
            errors=len(errors),
            latency_p50_ms=percentile(latencies, 50),
            latency_p95_ms=percentile(latencies, 95),
            cost_usd=client.usage.cost_usd,
            error=error,
        )
        span.set_attributes(
            {"teacher.accuracy": score.accuracy, "teacher.errors": score.errors, "teacher.cost_usd": score.cost_usd}
        )
        return score


async def score_teachers(
    teachers: Sequence[TeacherSpec],
    task: Task,
    sample: Sequence[Example],
    *,
    cache_dir: Path,
    policy: InputPolicy,
    concurrency: int,
    timeout_s: float,
    max_retries: int,
) -> list[TeacherScore]:
    """Every candidate scored on the same sample at once (the service and the experiments call this)."""
    return list(
        await asyncio.gather(
            *(
                score_teacher(
                    teacher,
                    task,
                    sample,
                    cache_dir=cache_dir,
                    policy=policy,
                    concurrency=concurrency,
                    timeout_s=timeout_s,
                    max_retries=max_retries,
                )
                for teacher in teachers
            )
        )
    )
