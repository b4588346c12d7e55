"""Data-synth handlers: TeacherChosen in, DataReady (or JobFailed) out, DataProgress while working."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace

from stratos_data_synth.domain import eval_record, grpo_record
from stratos_data_synth.settings import DataSynthSettings
from stratos_data_synth.synthesis import SynthesisOutcome, estimate_cost, synthesise
from stratos_shared.bus.handler import EventRouter, HandlerContext
from stratos_shared.contracts.base import Event, stable_id
from stratos_shared.contracts.events import DataProgress, DataReady, DistillationMode, JobFailed, TeacherChosen
from stratos_shared.contracts.job import JobSpec
from stratos_shared.jobcontext import StageResources, split_task, task_for, teacher_client

log = logging.getLogger("stratos.data_synth")
tracer = trace.get_tracer("stratos.data_synth")

TEACHER_ERROR = "teacher-error"
"""Key in DataReady.rejected_by_reason: questions dropped because the teacher failed after retries."""


def jsonl(records: Sequence[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()


def build_events(settings: DataSynthSettings, resources: StageResources) -> EventRouter:
    events = EventRouter("data-synth", max_deliver=settings.max_deliver, ack_wait_s=settings.ack_wait_s)
    cache_dir = settings.home / "cache" / "teachers"
    policy = settings.input_policy()

    async def run_mode(
        spec: JobSpec, event: TeacherChosen, mode: DistillationMode, ctx: HandlerContext
    ) -> SynthesisOutcome:
        task = task_for(spec.task)
        train = split_task(task, spec.task).train
        teacher = next(t for t in spec.teachers if t.name == event.teacher)

        async def progress(done: int, total: int, accepted: int) -> None:
            await ctx.publish(DataProgress(job_id=event.job_id, done=done, total=total, accepted=accepted))

        async with teacher_client(
            teacher,
            cache_dir,
            policy=policy,
            concurrency=settings.teacher_concurrency,
            timeout_s=settings.teacher_timeout_s,
            max_retries=settings.teacher_max_retries,
        ) as client:
            return await synthesise(
                task,
                train,
                mode,
                client,
                spec.distillation,
                temperature=settings.sampling_temperature,
                budget_usd=max(0.0, spec.constraints.budget_usd - event.cost_usd),
                on_progress=progress,
                progress_every=settings.progress_every,
            )

    @events.handler(consumes=TeacherChosen, publishes=[DataReady, JobFailed], durable="data-synth", max_workers=2)
    async def on_teacher_chosen(event: TeacherChosen, ctx: HandlerContext) -> list[Event]:
        """Synthesise the training set in the chosen mode; fail clearly rather than train on too little data."""
        spec = await resources.specs.get(event.job_id)
        task = task_for(spec.task)
        split = split_task(task, spec.task)
        chosen = next(s for s in event.scores if s.name == event.teacher)
        per_question = chosen.cost_usd / max(1, chosen.graded + chosen.errors)
        budget_left = spec.constraints.budget_usd - event.cost_usd
        estimate = estimate_cost(per_question, len(split.train), spec.distillation, event.mode)
        if estimate > budget_left:
            return [
                failed(
                    event.job_id,
                    f"synthesis would cost about ${estimate:.2f} but only ${budget_left:.2f} "
                    "of the budget is left; raise budget_usd or lower task.size / samples_per_question",
                )
            ]
        with tracer.start_as_current_span(
            "data-synth.synthesise", attributes={"job.id": event.job_id, "distillation.mode": event.mode}
        ) as span:
            mode: DistillationMode = event.mode
            outcome = await run_mode(spec, event, mode, ctx)
            if (
                outcome.builder.accepted_count < spec.distillation.min_dataset_size
                and mode == "alignment"
                and settings.fallback_to_injection
                and outcome.teacher_errors < len(split.train)  # a teacher that answered nothing will not in injection
            ):
                log.warning(
                    "job %s: alignment accepted only %d records; switching to injection once",
                    event.job_id,
                    outcome.builder.accepted_count,
                )
                mode = "injection"
                previous_cost = outcome.cost_usd
                outcome = await run_mode(spec, event, mode, ctx)
                outcome.cost_usd += previous_cost
            builder = outcome.builder
            span.set_attributes(
                {
                    "data.accepted": builder.accepted_count,
                    "data.asked": builder.asked,
                    "teacher.cost_usd": outcome.cost_usd,
                }
            )
            if builder.accepted_count < spec.distillation.min_dataset_size:
                why = "too few traces passed verification"
                if outcome.stopped_by_budget:
                    why = "the budget ran out"
                elif outcome.teacher_errors:
                    why = (
                        f"teacher '{event.teacher}' failed on {outcome.teacher_errors} of {len(split.train)} "
                        f"questions (last error: {outcome.last_teacher_error})"
                    )
                return [
                    failed(
                        event.job_id,
                        f"only {builder.accepted_count} training records were accepted "
                        f"(minimum {spec.distillation.min_dataset_size}): {why}; rejected by reason: "
                        f"{dict(builder.rejected)}",
                    )
                ]
            if spec.training.method == "grpo":
                train_records = [grpo_record(task, e) for e in split.train if e.id in builder.accepted]
                sft_records = builder.records(split.train)
            else:
                train_records = builder.records(split.train)
                sft_records = []
            store = resources.artifacts
            train_uri = await store.put_bytes(event.job_id, "data/train.jsonl", jsonl(train_records))
            if sft_records:
                await store.put_bytes(event.job_id, "data/traces.jsonl", jsonl(sft_records))
            eval_uri = await store.put_bytes(
                event.job_id, "data/eval.jsonl", jsonl([eval_record(task, e) for e in split.eval])
            )
        return [
            DataReady(
                event_id=stable_id(event.job_id, "data-ready"),
                job_id=event.job_id,
                mode=mode,
                teacher=event.teacher,
                train_uri=train_uri,
                eval_uri=eval_uri,
                asked=builder.asked,
                accepted=builder.accepted_count,
                rejected_by_reason=dict(builder.rejected) | rejected_by_teacher(outcome),
                verified_by_extraction=dict(builder.verified_by_extraction),
                acceptance_rate=builder.passed / max(1, builder.asked),
                teacher_tokens=outcome.tokens,
                cost_usd=outcome.cost_usd,
            )
        ]

    return events


def rejected_by_teacher(outcome: SynthesisOutcome) -> dict[str, int]:
    """Questions dropped because the teacher failed on them, counted beside the traces verification refused."""
    return {TEACHER_ERROR: outcome.teacher_errors} if outcome.teacher_errors else {}


def failed(job_id: str, reason: str) -> JobFailed:
    return JobFailed(
        event_id=stable_id(job_id, "failed", "data-synth"), job_id=job_id, stage="data-synth", reason=reason
    )
