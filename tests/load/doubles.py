"""TEST DOUBLES for the two expensive stages, so hundreds of jobs can run through the real pipeline at once.

`TrainerDouble` and `DeployerDouble` are real NATS consumers built with the same
`EventRouter` and durable names as the trainer and deployer: they consume
`DataReady` / `ModelTrained` and publish valid contract events (`StudentChosen`,
`ModelTrained`, `ModelDeployed`, `JobCompleted`) with the same deterministic event
ids, read the job's placement from the ledger the way the real ones do (waiting
briefly for it to catch up), and write a small artifact each, so the artifact
store sees per-job traffic too. They train and serve nothing. Each counts how
often it ran per job, so a test can tell a duplicated side effect from a
duplicated (and de-duplicated) publish.

Like the real ones, each handles one message at a time (``max_workers=1``) and
scales by running several instances on the same durable consumer (N trainer
processes). FastStream's ``max_workers > 1`` fetches a message before a worker
is free, and a message parked there past ``ack_wait`` is redelivered and then
handled twice (seen in the 500-job run: see the report of issue 10).
"""

from __future__ import annotations

import json
from collections import Counter

from stratos_shared.bus.handler import EventRouter, HandlerContext
from stratos_shared.contracts.base import Event, stable_id
from stratos_shared.contracts.events import (
    DataReady,
    JobCompleted,
    JobFailed,
    ModelDeployed,
    ModelTrained,
    StudentChosen,
    StudentScreen,
)
from stratos_shared.jobcontext import StageResources
from stratos_shared.jobs import JobState
from stratos_shared.service import ServiceRuntime
from stratos_shared.settings import StratosSettings


async def ledger_state(resources: StageResources, job_id: str, *, needs_training: bool) -> JobState:
    """The job's ledger entry once it shows a placement (and training results for the deployer), waiting as
    long as the real trainer and deployer do."""

    def ready(state: JobState) -> bool:
        return bool(state.server_id) and (not needs_training or state.results.training is not None)

    return await resources.wait_for_state(job_id, ready, "what this stage needs")


class TrainerDouble:
    """TEST DOUBLE of the trainer: DataReady in, StudentChosen and ModelTrained out, within milliseconds."""

    def __init__(self, settings: StratosSettings, runs: Counter[str] | None = None) -> None:
        self.runs: Counter[str] = Counter() if runs is None else runs
        self.resources = StageResources()
        events = EventRouter("trainer", max_deliver=settings.max_deliver, ack_wait_s=settings.ack_wait_s)

        @events.handler(consumes=DataReady, publishes=[StudentChosen, ModelTrained, JobFailed], durable="trainer")
        async def on_data_ready(event: DataReady, ctx: HandlerContext) -> list[Event]:
            state = await ledger_state(self.resources, event.job_id, needs_training=False)
            if state.status != "running":
                return []
            spec = await self.resources.specs.get(event.job_id)
            student = spec.students[0]
            self.runs[event.job_id] += 1
            model_uri = await self.resources.artifacts.put_bytes(event.job_id, "model/weights.double", b"double")
            return [
                StudentChosen(
                    event_id=stable_id(event.job_id, "student-chosen"),
                    job_id=event.job_id,
                    student=student.name,
                    model=student.model,
                    threshold=spec.distillation.prescreen_threshold,
                    server_id=state.server_id,
                    revision=state.server_revision,
                    screens=[
                        StudentScreen(
                            name=student.name,
                            model=student.model,
                            params=int(student.params_b * 1e9),
                            screened_accuracy=0.0,
                            passed=True,
                        )
                    ],
                ),
                ModelTrained(
                    event_id=stable_id(event.job_id, "trained"),
                    job_id=event.job_id,
                    server_id=state.server_id or "",
                    student=student.name,
                    base_model=student.model,
                    method=spec.training.method,
                    model_uri=model_uri,
                    is_adapter=False,
                    accuracy_before=0.0,
                    accuracy_after=0.0,
                    training_seconds=0.0,
                    steps=0,
                    tokens=0,
                    cost_usd=0.0,
                    revision=state.server_revision,
                ),
            ]

        self.runtime = ServiceRuntime(
            "trainer-double", settings, [events], on_start=[self.resources.bind], tracing=False
        )


class DeployerDouble:
    """TEST DOUBLE of the deployer: ModelTrained in, ModelDeployed and JobCompleted out, a report artifact written."""

    def __init__(self, settings: StratosSettings, runs: Counter[str] | None = None) -> None:
        self.runs: Counter[str] = Counter() if runs is None else runs
        self.resources = StageResources()
        events = EventRouter("deployer", max_deliver=settings.max_deliver, ack_wait_s=settings.ack_wait_s)

        @events.handler(consumes=ModelTrained, publishes=[ModelDeployed, JobCompleted], durable="deployer")
        async def on_model_trained(event: ModelTrained, ctx: HandlerContext) -> list[Event]:
            state = await ledger_state(self.resources, event.job_id, needs_training=True)
            if state.status == "cancelled":
                return []
            self.runs[event.job_id] += 1
            endpoint = f"double://{event.job_id}"
            await ctx.publish(
                ModelDeployed(
                    event_id=stable_id(event.job_id, "deployed", state.server_revision),
                    job_id=event.job_id,
                    server_id=state.server_id or "",
                    revision=state.server_revision,
                    endpoint=endpoint,
                    backend="cpu",
                    ttft_p50_ms=0.0,
                    ttft_p95_ms=0.0,
                    latency_p50_ms=0.0,
                    latency_p95_ms=0.0,
                    accuracy=0.0,
                )
            )
            report = {"job_id": event.job_id, "server_id": state.server_id, "double": True}
            report_uri = await self.resources.artifacts.put_bytes(
                event.job_id, "report/report.json", json.dumps(report).encode()
            )
            return [
                JobCompleted(
                    event_id=stable_id(event.job_id, "completed"),
                    job_id=event.job_id,
                    report_uri=report_uri,
                    summary={"server_id": state.server_id, "endpoint": endpoint},
                    server_id=state.server_id,
                    revision=state.server_revision,
                )
            ]

        self.runtime = ServiceRuntime(
            "deployer-double", settings, [events], on_start=[self.resources.bind], tracing=False
        )
