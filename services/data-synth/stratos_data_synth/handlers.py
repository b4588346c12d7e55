"""Data-synth handlers: TeacherChosen in, DataReady (or JobFailed) out, DataProgress while working.

The decision is `stratos_data_synth.dataset.synthesise_dataset`; the handler reads the job, writes what it
returns and says it.
"""

from __future__ import annotations

import logging

from opentelemetry import trace

from stratos_data_synth.dataset import Dataset, Refused, synthesise_dataset, write_dataset
from stratos_data_synth.settings import DataSynthSettings
from stratos_shared.bus.handler import EventRouter, HandlerContext, bind
from stratos_shared.contracts.base import Event, stable_id
from stratos_shared.contracts.events import DataProgress, DataReady, JobFailed, TeacherChosen
from stratos_shared.jobcontext import StageResources, task_of
from stratos_shared.stage import Stage, failed
from stratos_shared.tasks.errors import TaskError

log = logging.getLogger("stratos.data_synth")
tracer = trace.get_tracer("stratos.data_synth")

STAGE = "data-synth"


async def on_teacher_chosen(stage: Stage[DataSynthSettings], event: TeacherChosen, ctx: HandlerContext) -> list[Event]:
    """Synthesise the training set in the chosen mode; fail clearly rather than train on too little data."""
    spec = await stage.resources.specs.get(event.job_id)

    async def progress(done: int, total: int, accepted: int) -> None:
        await ctx.report(DataProgress(job_id=event.job_id, done=done, total=total, accepted=accepted))

    with tracer.start_as_current_span(
        "data-synth.synthesise", attributes={"job.id": event.job_id, "distillation.mode": event.mode}
    ) as span:
        try:
            task = await task_of(event.job_id, spec.task, stage.resources.artifacts, stage.settings.task_cache_dir())
        except TaskError as exc:  # its admitted data is missing from the spec or corrupted in the store
            return [failed(event.job_id, STAGE, f"the task cannot be loaded: {exc}")]
        data = await synthesise_dataset(spec, task, event, stage.settings, progress)
        if isinstance(data, Refused):
            return [failed(event.job_id, STAGE, data.reason)]
        builder = data.outcome.builder
        span.set_attributes(
            {
                "data.accepted": builder.accepted_count,
                "data.asked": builder.asked,
                "teacher.cost_usd": data.outcome.cost_usd,
            }
        )
        train_uri, eval_uri = await write_dataset(stage.resources.artifacts, event.job_id, data)
    return [ready(event, data, train_uri, eval_uri)]


def ready(event: TeacherChosen, data: Dataset, train_uri: str, eval_uri: str) -> DataReady:
    builder = data.outcome.builder
    return DataReady(
        event_id=stable_id(event.job_id, "data-ready"),
        job_id=event.job_id,
        mode=data.mode,
        teacher=event.teacher,
        train_uri=train_uri,
        eval_uri=eval_uri,
        asked=builder.asked,
        accepted=builder.accepted_count,
        rejected_by_reason=data.rejected_by_reason,
        acceptance_rate=builder.passed / max(1, builder.asked),
        teacher_tokens=data.outcome.tokens,
        cost_usd=data.outcome.cost_usd,
        verified_by_extraction=dict(builder.verified_by_extraction),
    )


def build_events(settings: DataSynthSettings, resources: StageResources) -> EventRouter:
    events = EventRouter(STAGE, max_deliver=settings.max_deliver, ack_wait_s=settings.ack_wait_s)
    events.handler(
        consumes=TeacherChosen, publishes=[DataReady, DataProgress, JobFailed], durable=STAGE, max_workers=2
    )(bind(on_teacher_chosen, Stage(settings, resources)))
    return events


def declared() -> EventRouter:
    """This service's declarations, built without connecting to anything: what `tools/wiring.py` writes into the
    generated wiring table (`stratos_shared.bus.wiring_table`)."""
    return build_events(DataSynthSettings(), StageResources())
