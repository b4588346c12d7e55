"""Deployer handlers: serve the trained student on this server, measure it, report; stop when the job moves.

Each server's deployers pull their work from one durable consumer on ``stratos.work.deploy.<server>``
(a `DeploymentAssigned` per job and placement revision, from the selector's ledger), so a model is served
only on the server its job is placed on, at the address that server advertises. Re-plans, cancels and
failures reach every server's deployers through per-server durable consumers: the one holding the job's
endpoint stops it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from opentelemetry import trace

from stratos_deployer.domain import build_report
from stratos_deployer.serving.backend import choose_backend, has_gpu
from stratos_deployer.serving.cpu_server import free_port
from stratos_deployer.serving.probe import check_accuracy_async, probe_latency_async
from stratos_deployer.serving.process import stop_leftovers
from stratos_deployer.settings import DeployerSettings
from stratos_shared.agent import ServerAgent
from stratos_shared.artifacts import get_dir
from stratos_shared.bus.handler import EventRouter, HandlerContext
from stratos_shared.bus.names import server_token, work_subject
from stratos_shared.contracts.base import Event, stable_id
from stratos_shared.contracts.events import (
    DeploymentAssigned,
    JobCancelRequested,
    JobCompleted,
    JobFailed,
    ModelDeployed,
    ModelTrained,
    ServerChosen,
)
from stratos_shared.contracts.job import JobSpec
from stratos_shared.errors import JobStateError
from stratos_shared.jobcontext import StageResources, split_task, task_for
from stratos_shared.jobs import JobState
from stratos_shared.models import resolve_model
from stratos_shared.report import render_markdown, render_plots
from stratos_shared.tasks import Example

log = logging.getLogger("stratos.deployer")
tracer = trace.get_tracer("stratos.deployer")

LEDGER_WAIT_S = 10.0
DEPLOYMENT_RECORD = "deployment/record.json"


class Stoppable(Protocol):
    def stop(self) -> None: ...


@dataclass
class LeftoverServer:
    """A server started by this deployer's previous life (SIGKILLed): found again by the mark it runs with."""

    log_dir: Path

    def stop(self) -> None:
        stop_leftovers(self.log_dir)


@dataclass
class Deployment:
    """One running endpoint: what it serves, where, and what was announced about it."""

    trained: ModelTrained
    backend: Stoppable
    deployed: ModelDeployed
    serving: dict[str, float | str]

    def record(self) -> bytes:
        """What a restarted deployer needs to move or stop this endpoint (kept in the artifact store)."""
        return json.dumps(
            {
                "trained": self.trained.model_dump(mode="json"),
                "deployed": self.deployed.model_dump(mode="json"),
                "serving": self.serving,
            }
        ).encode()

    @property
    def revision(self) -> int:
        return self.deployed.revision


class Deployments:
    """The endpoints this deployer runs, one per job, and what it has heard about each job.

    The three handlers consume concurrently, so each takes the job's lock: a re-plan or a cancel
    that arrives while the job is being deployed waits for that deployment, then moves or stops it,
    instead of finding nothing to act on and leaving the endpoint on a dead server (or running).
    """

    def __init__(self) -> None:
        self.by_job: dict[str, Deployment] = {}
        self.latest_revision: dict[str, int] = {}
        self.ended: set[str] = set()
        """Jobs cancelled or failed: a deployment still to come for them is refused."""
        self._locks: dict[str, asyncio.Lock] = {}

    def lock(self, job_id: str) -> asyncio.Lock:
        return self._locks.setdefault(job_id, asyncio.Lock())

    async def find(self, job_id: str, resources: StageResources, workdir: Path, server_id: str) -> Deployment | None:
        """This deployer's deployment of the job, or the one its previous life recorded before a crash.

        Deployments live in memory; without the record, a deployer restarted after SIGKILL would no
        longer move a completed job's endpoint on a re-plan, nor stop it on cancel.
        """
        if job_id in self.by_job:
            return self.by_job[job_id]
        uri = resources.artifacts.uri_for(job_id, DEPLOYMENT_RECORD)
        if not await resources.artifacts.exists(uri):
            return None
        raw = json.loads(await resources.artifacts.get_bytes(uri))
        deployed = ModelDeployed.model_validate(raw["deployed"])
        if deployed.server_id != server_id:
            return None  # served by another server's deployer: not ours to adopt or stop
        leftover = LeftoverServer(workdir / job_id / f"rev{deployed.revision}" / "logs")
        found = Deployment(ModelTrained.model_validate(raw["trained"]), leftover, deployed, raw["serving"])
        self.by_job[job_id] = found
        log.info("job %s: adopted the deployment at %s recorded before a restart", job_id, deployed.endpoint)
        return found

    async def stop(self, job_id: str) -> bool:
        deployment = self.by_job.pop(job_id, None)
        if deployment is None:
            return False
        await asyncio.to_thread(deployment.backend.stop)
        return True

    async def stop_all(self) -> None:
        for job_id in list(self.by_job):
            await self.stop(job_id)


async def current_state(resources: StageResources, job_id: str, min_revision: int = 1) -> JobState:
    """The ledger's view of the job, waiting briefly for it to catch up with events we already saw."""
    deadline = asyncio.get_running_loop().time() + LEDGER_WAIT_S
    while True:
        state = await resources.job_state(job_id)
        if state is not None and state.server_revision >= min_revision and "training" in state.results:
            return state
        if asyncio.get_running_loop().time() > deadline:
            raise JobStateError(f"job {job_id} is not in the ledger with a placement and training results yet")
        await asyncio.sleep(0.2)


class Deployer:
    """Starts a backend for a trained model on the job's current server and measures it."""

    def __init__(self, settings: DeployerSettings, resources: StageResources, deployments: Deployments) -> None:
        self.settings = settings
        self.resources = resources
        self.deployments = deployments
        # Per server: deployers of two servers on one host never find (or stop) each other's model servers.
        self.workdir = settings.home / "deployments" / server_token(settings.server_id)

    async def still_mine(self, job_id: str, revision: int, agent: ServerAgent | None) -> bool:
        """The fence before announcing a deployment: the ledger still places the job here at this revision."""
        if agent is not None and agent.fenced():
            return False
        state = await self.resources.job_state(job_id)
        return state is not None and state.server_revision == revision and state.server_id == self.settings.server_id

    async def deploy(
        self, trained: ModelTrained, spec: JobSpec, state: JobState, revision: int
    ) -> tuple[ModelDeployed, dict[str, float | str]]:
        if trained.job_id not in self.deployments.by_job:
            # Any server of this job still running was started by a past life of this deployer, maybe at an
            # earlier revision (then nothing else would stop it): it must not serve beside the new one.
            await asyncio.to_thread(stop_leftovers, self.workdir / trained.job_id)
        workdir = self.workdir / trained.job_id / f"rev{revision}"
        model_dir = await get_dir(self.resources.artifacts, trained.model_uri, workdir / "model")
        student = next(s for s in spec.students if s.name == trained.student)
        # Blocking work (building a tiny model, probing for a GPU, generating the task) runs in threads:
        # the event loop must keep extending the message lease.
        base = await asyncio.to_thread(resolve_model, student.model)
        model_path, adapter = (Path(base), model_dir) if trained.is_adapter else (model_dir, None)
        auto = self.settings.serving_backend == "auto"
        gpu = auto and await asyncio.to_thread(has_gpu)
        backend = choose_backend(
            gpu,
            None if auto else self.settings.serving_backend,
            served_name=trained.job_id,
            ready_timeout_s=self.settings.ready_timeout_s,
            log_dir=workdir / "logs",
            host=self.settings.advertise_host,
            gpu_count=int(state.results.get("server", {}).get("gpu_count") or 1),
        )
        try:
            with tracer.start_as_current_span(
                "deployer.start_backend", attributes={"job.id": trained.job_id, "serving.backend": backend.name}
            ):
                port = free_port(self.settings.advertise_host)
                endpoint = await asyncio.to_thread(backend.start, model_path, adapter, port)
            measured = await self.measure(trained.job_id, spec, endpoint)
        except BaseException:
            # Failed, or cancelled by a shutdown while starting: a server nobody tracks must not outlive us.
            await asyncio.to_thread(backend.stop)
            raise
        deployed = ModelDeployed(
            # The endpoint is part of the identity: a re-publish of this deployment is dropped as a duplicate,
            # a new one (after a crash, a re-plan) is not, so the ledger always shows the live endpoint.
            event_id=stable_id(trained.job_id, "deployed", revision, endpoint),
            job_id=trained.job_id,
            server_id=self.settings.server_id,
            revision=revision,
            endpoint=endpoint,
            backend="vllm" if backend.name == "vllm" else "cpu",
            ttft_p50_ms=float(measured["ttft_p50_ms"]),
            ttft_p95_ms=float(measured["ttft_p95_ms"]),
            latency_p50_ms=float(measured["latency_p50_ms"]),
            latency_p95_ms=float(measured["latency_p95_ms"]),
            accuracy=float(measured["accuracy"]),
        )
        serving: dict[str, float | str] = {
            **measured,
            "endpoint": endpoint,
            "backend": deployed.backend,
            "server_id": deployed.server_id,
        }
        # The previous endpoint serves until this one is measured (its server may be gone already).
        await self.deployments.stop(trained.job_id)
        deployment = Deployment(trained, backend, deployed, serving)
        self.deployments.by_job[trained.job_id] = deployment
        await self.resources.artifacts.put_bytes(trained.job_id, DEPLOYMENT_RECORD, deployment.record())
        return deployed, serving

    async def measure(self, job_id: str, spec: JobSpec, endpoint: str) -> dict[str, float | str]:
        """Latency probe (TTFT and end-to-end) and held-out accuracy, both through the endpoint."""
        task = await asyncio.to_thread(task_for, spec.task)
        held_out = (await asyncio.to_thread(split_task, task, spec.task)).eval[: self.settings.accuracy_samples]
        by_id: dict[str, Example] = {e.id: e for e in held_out}
        with tracer.start_as_current_span("deployer.probe", attributes={"job.id": job_id}) as span:
            latency = await probe_latency_async(
                endpoint,
                job_id,
                [task.student_prompt(e) for e in held_out],
                n_requests=self.settings.probe_requests,
                max_tokens=self.settings.max_tokens,
            )
            accuracy = await check_accuracy_async(
                endpoint,
                job_id,
                [(task.student_prompt(e), e.id) for e in held_out],
                lambda output, example_id: task.grade(output, by_id[example_id]).correct,
                max_tokens=self.settings.max_tokens,
            )
            span.set_attributes(
                {"serving.accuracy": accuracy.accuracy, "serving.latency_p50_ms": latency.e2e_p50 * 1000}
            )
        return {
            "ttft_p50_ms": latency.ttft_p50 * 1000,
            "ttft_p95_ms": latency.ttft_p95 * 1000,
            "latency_p50_ms": latency.e2e_p50 * 1000,
            "latency_p95_ms": latency.e2e_p95 * 1000,
            "accuracy": accuracy.accuracy,
        }

    async def write_report(self, spec: JobSpec, state: JobState, serving: dict[str, float | str]) -> str:
        report = build_report(spec, state, state.results.get("server", {}), dict(serving))
        store = self.resources.artifacts
        plots: dict[str, str] = {}
        with tempfile.TemporaryDirectory() as tmp:
            # Off the event loop: matplotlib takes seconds, and a blocked loop stops extending the message lease.
            rendered = await asyncio.to_thread(render_plots, report, Path(tmp))
            for name, path in rendered.items():
                plots[name] = await store.put_bytes(state.job_id, f"report/{name}.png", path.read_bytes())
        report = report.model_copy(update={"plots": plots})
        await store.put_bytes(state.job_id, "report/report.md", render_markdown(report).encode())
        return await store.put_bytes(
            state.job_id, "report/report.json", json.dumps(report.model_dump(mode="json"), indent=2).encode()
        )


def build_events(
    settings: DeployerSettings,
    resources: StageResources,
    deployments: Deployments,
    agent: ServerAgent | None = None,
) -> EventRouter:
    events = EventRouter("deployer", max_deliver=settings.max_deliver, ack_wait_s=settings.ack_wait_s)
    deployer = Deployer(settings, resources, deployments)
    me = settings.server_id
    token = server_token(me)

    async def find(job_id: str) -> Deployment | None:
        return await deployments.find(job_id, resources, deployer.workdir, me)

    @events.handler(
        consumes=DeploymentAssigned,
        publishes=[ModelDeployed, JobCompleted],
        durable=f"deployer-{token}",
        subject=work_subject("deploy", me),
    )
    async def on_deployment_assigned(event: DeploymentAssigned, ctx: HandlerContext) -> list[Event]:
        """Serve the student on this server, measure latency and accuracy, write the report, complete the job."""
        async with deployments.lock(event.job_id):
            if event.job_id in deployments.ended or event.server_id != me:
                return []
            spec = await resources.specs.get(event.job_id)
            state = await current_state(resources, event.job_id, min_revision=event.revision)
            if state.server_revision > event.revision or state.server_id != me:
                log.info("job %s: deployment revision %d is stale; dropped", event.job_id, event.revision)
                return []
            if state.status in ("cancelled", "failed"):
                return []
            current = await find(event.job_id)
            trained = event.trained
            if current and current.trained.event_id == trained.event_id and current.revision == event.revision:
                # A redelivery: this model already serves at this revision; announce it again, do not restart it.
                deployed, serving = current.deployed, current.serving
            else:
                with tracer.start_as_current_span(
                    "deployer.deploy", attributes={"job.id": event.job_id, "server.id": me}
                ):
                    deployed, serving = await deployer.deploy(trained, spec, state, event.revision)
            if not await deployer.still_mine(event.job_id, event.revision, agent):
                # Moved while we were starting it (or we were cut off): this endpoint must not be announced.
                await deployments.stop(event.job_id)
                log.info("job %s: moved during deployment; endpoint stopped, not announced", event.job_id)
                return []
            if state.status == "completed":
                # A redeployment after a re-plan: the job completed before. Same artifact name: the job's
                # report_uri now describes this server and endpoint by the time the move is announced.
                await deployer.write_report(spec, state, serving)
                await ctx.publish(deployed)
                log.info("job %s redeployed on %s at %s", event.job_id, me, deployed.endpoint)
                return []
            await ctx.publish(deployed)
            state = await current_state(resources, event.job_id)
            report_uri = await deployer.write_report(spec, state, serving)
        return [
            JobCompleted(
                event_id=stable_id(event.job_id, "completed"),
                job_id=event.job_id,
                report_uri=report_uri,
                summary={
                    "student_accuracy": deployed.accuracy,
                    "latency_p50_ms": deployed.latency_p50_ms,
                    "endpoint": deployed.endpoint,
                    "server_id": deployed.server_id,
                },
            )
        ]

    @events.handler(consumes=ServerChosen, publishes=[], durable=f"deployer-{token}-replan")
    async def on_server_chosen(event: ServerChosen, ctx: HandlerContext) -> None:
        """The job moved to another server: its endpoint here stops (the new server serves it)."""
        async with deployments.lock(event.job_id):
            seen = deployments.latest_revision.get(event.job_id, 0)
            deployments.latest_revision[event.job_id] = max(seen, event.revision)
            if event.server.id == me:
                return
            current = await find(event.job_id)
            if current is not None and event.revision > current.revision and await deployments.stop(event.job_id):
                log.info(
                    "job %s moved to %s (revision %d): endpoint here stopped",
                    event.job_id,
                    event.server.id,
                    event.revision,
                )

    async def tear_down(job_id: str, why: str) -> None:
        async with deployments.lock(job_id):
            deployments.ended.add(job_id)
            await find(job_id)
            if await deployments.stop(job_id):
                log.info("job %s %s: deployment stopped", job_id, why)

    @events.handler(consumes=JobCancelRequested, publishes=[], durable=f"deployer-{token}-cancel")
    async def on_cancel(event: JobCancelRequested, ctx: HandlerContext) -> None:
        """A cancelled job's endpoint is torn down, and a deployment still to come is refused."""
        await tear_down(event.job_id, "cancelled")

    @events.handler(consumes=JobFailed, publishes=[], durable=f"deployer-{token}-failed")
    async def on_failed(event: JobFailed, ctx: HandlerContext) -> None:
        """A failed job serves nothing: e.g. a deployed job whose server went down with nowhere else to go.

        Otherwise its model server would keep running (and billing) for a job the ledger calls failed.
        """
        await tear_down(event.job_id, f"failed in {event.stage}")

    return events
