"""Asking the teacher for traces, question by question, within the budget.

Requests go through the shared teacher client, whose content-addressed cache
makes a restarted run re-use every answer it already paid for: only requests
that were in flight when the service died are asked again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from stratos_data_synth.domain import REJECT_GRADING_TIMEOUT, DatasetBuilder, Verdict, judge
from stratos_shared.contracts.events import DistillationMode
from stratos_shared.contracts.job import DistillationSpec
from stratos_shared.tasks import Example, Task
from stratos_shared.tasks.errors import GradingTimeout
from stratos_shared.tasks.offloop import off_loop
from stratos_shared.teacher.client import TeacherClient
from stratos_shared.teacher.errors import TeacherError

ProgressCallback = Callable[[int, int, int], Awaitable[None]]
"""(questions done, questions total, records accepted)."""


@dataclass
class SynthesisOutcome:
    builder: DatasetBuilder
    cost_usd: float
    tokens: int
    teacher_errors: int
    """Questions dropped because the teacher failed on them after the client's retries."""
    stopped_by_budget: bool
    last_teacher_error: str | None = None


async def synthesise(
    task: Task,
    examples: Sequence[Example],
    mode: DistillationMode,
    client: TeacherClient,
    settings: DistillationSpec,
    *,
    temperature: float,
    budget_usd: float,
    on_progress: ProgressCallback | None = None,
    progress_every: int = 25,
) -> SynthesisOutcome:
    """Collect traces for `examples` in `mode`; stops asking new questions once `budget_usd` is spent."""
    builder = DatasetBuilder(task, mode, settings.keep_per_question)
    errors = 0
    last_error: str | None = None
    done = 0
    stopped = False

    async def offer(example: Example, trace: str) -> None:
        """Judge off the event loop (it keeps the message's lease alive meanwhile), bounded; record on it."""
        try:
            verdict = await off_loop(judge, task, mode, trace, example)
        except GradingTimeout:
            verdict = Verdict(False, REJECT_GRADING_TIMEOUT)
        builder.record(example, verdict)

    async def alignment(example: Example) -> None:
        completion = await client.complete(
            task.prompt(example), n=settings.samples_per_question, temperature=temperature
        )
        for trace in completion.texts:
            await offer(example, trace)

    async def injection(example: Example) -> None:
        for attempt in range(settings.max_retries_per_question + 1):
            completion = await client.complete(task.reverse_prompt(example), temperature=temperature, seed=attempt)
            await offer(example, completion.text)
            if builder.has_enough(example):
                return

    ask = alignment if mode == "alignment" else injection

    async def one(example: Example) -> None:
        nonlocal errors, last_error, done, stopped
        if client.usage.cost_usd >= budget_usd:
            stopped = True
            return
        try:
            await ask(example)
        except TeacherError as exc:
            errors += 1
            last_error = str(exc)
        done += 1
        if on_progress is not None and (done % progress_every == 0 or done == len(examples)):
            await on_progress(done, len(examples), builder.accepted_count)

    await asyncio.gather(*(one(example) for example in examples))
    usage = client.usage
    return SynthesisOutcome(
        builder=builder,
        cost_usd=usage.cost_usd,
        tokens=usage.input_tokens + usage.output_tokens,
        teacher_errors=errors,
        stopped_by_budget=stopped,
        last_teacher_error=last_error,
    )


def estimate_cost(per_question_usd: float, questions: int, settings: DistillationSpec, mode: DistillationMode) -> float:
    """Upper-bound teacher cost: every question asked k times (alignment) or with every retry (injection)."""
    asks = settings.samples_per_question if mode == "alignment" else settings.max_retries_per_question + 1
    return per_question_usd * questions * asks
