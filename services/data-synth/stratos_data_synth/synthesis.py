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


@dataclass
class _Synthesis:
    """One synthesis run: asks the teacher question by question, judges every trace, counts what failed."""

    task: Task
    mode: DistillationMode
    client: TeacherClient
    settings: DistillationSpec
    temperature: float
    budget_usd: float
    total: int
    on_progress: ProgressCallback | None
    progress_every: int
    builder: DatasetBuilder
    errors: int = 0
    last_error: str | None = None
    done: int = 0
    stopped: bool = False

    async def offer(self, example: Example, trace: str) -> None:
        """Judge off the event loop (it keeps the message's lease alive meanwhile), bounded; record on it."""
        try:
            verdict = await off_loop(judge, self.task, self.mode, trace, example)
        except GradingTimeout:
            verdict = Verdict(False, REJECT_GRADING_TIMEOUT)
        self.builder.record(example, verdict)

    async def alignment(self, example: Example) -> None:
        completion = await self.client.complete(
            self.task.prompt(example), n=self.settings.samples_per_question, temperature=self.temperature
        )
        for trace in completion.texts:
            await self.offer(example, trace)

    async def injection(self, example: Example) -> None:
        for attempt in range(self.settings.max_retries_per_question + 1):
            prompt = self.task.reverse_prompt(example)
            completion = await self.client.complete(prompt, temperature=self.temperature, seed=attempt)
            await self.offer(example, completion.text)
            if self.builder.has_enough(example):
                return

    async def one(self, example: Example) -> None:
        """Ask about one question unless the budget is spent; a teacher failure drops the question, counted."""
        if self.client.usage.cost_usd >= self.budget_usd:
            self.stopped = True
            return
        try:
            await (self.alignment if self.mode == "alignment" else self.injection)(example)
        except TeacherError as exc:
            self.errors += 1
            self.last_error = str(exc)
        self.done += 1
        if self.on_progress is not None and (self.done % self.progress_every == 0 or self.done == self.total):
            await self.on_progress(self.done, self.total, self.builder.accepted_count)


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
    run = _Synthesis(
        task, mode, client, settings, temperature, budget_usd, len(examples), on_progress, progress_every, builder
    )
    await asyncio.gather(*(run.one(example) for example in examples))
    usage = client.usage
    return SynthesisOutcome(
        builder=builder,
        cost_usd=usage.cost_usd,
        tokens=usage.input_tokens + usage.output_tokens,
        teacher_errors=run.errors,
        stopped_by_budget=run.stopped,
        last_teacher_error=run.last_error,
    )


def estimate_cost(per_question_usd: float, questions: int, settings: DistillationSpec, mode: DistillationMode) -> float:
    """Upper-bound teacher cost: every question asked k times (alignment) or with every retry (injection)."""
    asks = settings.samples_per_question if mode == "alignment" else settings.max_retries_per_question + 1
    return per_question_usd * questions * asks
