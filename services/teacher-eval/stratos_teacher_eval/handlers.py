"""Teacher-eval handlers: on a job's first placement, score the teachers and choose teacher and mode.

The decision is `stratos_teacher_eval.evaluation.decide_teacher`; the handler reads the job and says it.
"""

from __future__ import annotations

import logging

from opentelemetry import trace

from stratos_shared.bus.handler import EventRouter, HandlerContext, bind
from stratos_shared.contracts.base import Event, stable_id
from stratos_shared.contracts.events import JobFailed, ServerChosen, TeacherChosen
from stratos_shared.jobcontext import StageResources, task_of
from stratos_shared.stage import Stage, failed
from stratos_shared.tasks.errors import TaskError
from stratos_teacher_eval.evaluation import decide_teacher
from stratos_teacher_eval.settings import TeacherEvalSettings

log = logging.getLogger("stratos.teacher_eval")
tracer = trace.get_tracer("stratos.teacher_eval")

STAGE = "teacher-eval"


async def on_server_chosen(stage: Stage[TeacherEvalSettings], event: ServerChosen, ctx: HandlerContext) -> list[Event]:
    """Score every candidate teacher on a stratified held-out sample; pick teacher, then mode by tau."""
    if event.revision > 1:
        return []  # a re-plan moves the job; the teacher choice does not depend on the server
    spec = await stage.resources.specs.get(event.job_id)
    with tracer.start_as_current_span("teacher-eval.choose", attributes={"job.id": event.job_id}) as span:
        try:
            task = await task_of(event.job_id, spec.task, stage.resources.artifacts, stage.settings.task_cache_dir())
        except TaskError as exc:  # the selector checked it; its snapshot may be missing from the spec or corrupted
            return [failed(event.job_id, STAGE, f"the task cannot be loaded: {exc}")]
        decision = await decide_teacher(spec, task, stage.settings)
        best = decision.chosen
        if best is None:
            return [failed(event.job_id, STAGE, decision.no_teacher_reason())]
        span.set_attributes(
            {"teacher.name": best.name, "teacher.accuracy": best.accuracy, "distillation.mode": decision.mode}
        )
        log.info("job %s: teacher %s (%.0f%%), mode %s", event.job_id, best.name, best.accuracy * 100, decision.mode)
        return [
            TeacherChosen(
                event_id=stable_id(event.job_id, "teacher-chosen"),
                job_id=event.job_id,
                teacher=best.name,
                mode=decision.mode,
                tau=spec.distillation.tau,
                scores=list(decision.scores),
                sample_ids=[e.id for e in decision.sample],
                cost_usd=sum(s.cost_usd for s in decision.scores),
            )
        ]


def build_events(settings: TeacherEvalSettings, resources: StageResources) -> EventRouter:
    events = EventRouter(STAGE, max_deliver=settings.max_deliver, ack_wait_s=settings.ack_wait_s)
    events.handler(consumes=ServerChosen, publishes=[TeacherChosen, JobFailed], durable=STAGE, max_workers=4)(
        bind(on_server_chosen, Stage(settings, resources))
    )
    return events


def declared() -> EventRouter:
    """This service's declarations, built without connecting to anything: what `tools/wiring.py` writes into the
    generated wiring table (`stratos_shared.bus.wiring_table`)."""
    return build_events(TeacherEvalSettings(), StageResources())
