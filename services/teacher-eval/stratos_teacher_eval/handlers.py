"""Teacher-eval handlers: on a job's first placement, score the teachers and choose teacher and mode."""

from __future__ import annotations

import logging

from opentelemetry import trace

from stratos_shared.bus.handler import EventRouter, HandlerContext
from stratos_shared.contracts.base import Event, stable_id
from stratos_shared.contracts.events import JobFailed, ServerChosen, TeacherChosen
from stratos_shared.jobcontext import StageResources, split_task, task_for
from stratos_shared.tasks.errors import TaskError
from stratos_teacher_eval.domain import choose_mode, choose_teacher, stratified_sample
from stratos_teacher_eval.evaluation import score_teachers
from stratos_teacher_eval.settings import TeacherEvalSettings

log = logging.getLogger("stratos.teacher_eval")
tracer = trace.get_tracer("stratos.teacher_eval")


def build_events(settings: TeacherEvalSettings, resources: StageResources) -> EventRouter:
    events = EventRouter("teacher-eval", max_deliver=settings.max_deliver, ack_wait_s=settings.ack_wait_s)
    cache_dir = settings.home / "cache" / "teachers"
    policy = settings.input_policy()

    @events.handler(consumes=ServerChosen, publishes=[TeacherChosen, JobFailed], durable="teacher-eval", max_workers=4)
    async def on_server_chosen(event: ServerChosen, ctx: HandlerContext) -> list[Event]:
        """Score every candidate teacher on a stratified held-out sample; pick teacher, then mode by tau."""
        if event.revision > 1:
            return []  # a re-plan moves the job; the teacher choice does not depend on the server
        spec = await resources.specs.get(event.job_id)
        with tracer.start_as_current_span("teacher-eval.choose", attributes={"job.id": event.job_id}) as span:
            try:
                task = task_for(spec.task)
            except TaskError as exc:  # the selector checked it; the file may have changed (or differ here) since
                return [failed(event.job_id, f"the task cannot be loaded: {exc}")]
            sample = stratified_sample(split_task(task, spec.task).eval, spec.distillation.eval_samples, spec.task.seed)
            scores = await score_teachers(
                spec.teachers,
                task,
                sample,
                cache_dir=cache_dir,
                policy=policy,
                concurrency=settings.teacher_concurrency,
                timeout_s=settings.teacher_timeout_s,
                max_retries=settings.teacher_max_retries,
            )
            best = choose_teacher(scores)
            if best is None:
                reasons = "; ".join(f"teacher '{s.name}': {s.error}" for s in scores)
                return [
                    failed(event.job_id, f"no teacher could be scored, every one is unreachable or failing ({reasons})")
                ]
            mode = choose_mode(best.accuracy, spec.distillation.tau)
            span.set_attributes(
                {"teacher.name": best.name, "teacher.accuracy": best.accuracy, "distillation.mode": mode}
            )
            log.info("job %s: teacher %s (%.0f%%), mode %s", event.job_id, best.name, best.accuracy * 100, mode)
            return [
                TeacherChosen(
                    event_id=stable_id(event.job_id, "teacher-chosen"),
                    job_id=event.job_id,
                    teacher=best.name,
                    mode=mode,
                    tau=spec.distillation.tau,
                    scores=list(scores),
                    sample_ids=[e.id for e in sample],
                    cost_usd=sum(s.cost_usd for s in scores),
                )
            ]

    return events


def failed(job_id: str, reason: str) -> JobFailed:
    return JobFailed(
        event_id=stable_id(job_id, "failed", "teacher-eval"), job_id=job_id, stage="teacher-eval", reason=reason
    )
