"""The deployer's deployments: the endpoints this server runs, how one is started and measured, the report.

Plain objects over the artifact store and the model-server backends, no broker: the handlers decide when
(`stratos_deployer.handlers`), these do the work.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from opentelemetry import trace

from stratos_deployer.domain import build_report, meets_slo
from stratos_deployer.serving.backend import ServingBackend, choose_backend, has_gpu
from stratos_deployer.serving.cpu_server import free_port
from stratos_deployer.serving.llamacpp import FASTEST, GgufConversionError, Quantization, engine_problem, find_engine
from stratos_deployer.serving.probe import ChatMessages, LatencyReport, check_accuracy_async, probe_latency_async
from stratos_deployer.serving.process import free_port_in, stop_leftovers
from stratos_deployer.settings import DeployerSettings
from stratos_shared.agent import ServerAgent
from stratos_shared.artifacts import get_dir
from stratos_shared.bus.names import server_token
from stratos_shared.contracts.base import stable_id, utcnow
from stratos_shared.contracts.events import DeploymentAssigned, JobCompleted, ModelDeployed, ModelTrained
from stratos_shared.contracts.job import JobSpec
from stratos_shared.jobcontext import StageResources, split_task, task_of
from stratos_shared.jobs import JobState
from stratos_shared.layout import Artifact, JobArtifacts, endpoint_key, report_plot
from stratos_shared.models import resolve_model
from stratos_shared.report import (
    EndpointMeasurements,
    EngineTrial,
    LatencyAt,
    ServedEndpoint,
    render_markdown,
    render_plots,
)
from stratos_shared.tasks import Example

log = logging.getLogger("stratos.deployer")
tracer = trace.get_tracer("stratos.deployer")


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
    serving: ServedEndpoint

    def record(self) -> bytes:
        """What a restarted deployer needs to move or stop this endpoint (kept in the artifact store)."""
        return json.dumps(
            {
                "trained": self.trained.model_dump(mode="json"),
                "deployed": self.deployed.model_dump(mode="json"),
                "serving": self.serving.model_dump(mode="json"),
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
        raw = await JobArtifacts(resources.artifacts, job_id).get_json(Artifact.DEPLOYMENT_RECORD)
        if raw is None:
            return None
        deployed = ModelDeployed.model_validate(raw["deployed"])
        if deployed.server_id != server_id:
            return None  # served by another server's deployer: not ours to adopt or stop
        leftover = LeftoverServer(workdir / job_id / f"rev{deployed.revision}" / "logs")
        found = Deployment(
            ModelTrained.model_validate(raw["trained"]),
            leftover,
            deployed,
            ServedEndpoint.model_validate(raw["serving"]),
        )
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


class Deployer:
    """Starts a backend for a trained model on the job's current server and measures it."""

    def __init__(self, settings: DeployerSettings, resources: StageResources, deployments: Deployments) -> None:
        self.settings = settings
        self.resources = resources
        self.deployments = deployments
        # Per server: deployers of two servers on one host never find (or stop) each other's model servers.
        self.workdir = settings.home / "deployments" / server_token(settings.server_id)

    async def find(self, job_id: str) -> Deployment | None:
        """This server's deployment of the job (adopted from the record a previous life left, if any)."""
        return await self.deployments.find(job_id, self.resources, self.workdir, self.settings.server_id)

    async def ledger_state(self, job_id: str, min_revision: int = 1) -> JobState:
        """The ledger's view of the job, waiting briefly for it to catch up with events we already saw."""
        return await self.resources.wait_for_state(
            job_id,
            lambda state: state.server_revision >= min_revision and state.results.training is not None,
            "a placement and training results",
        )

    async def serve(
        self, event: DeploymentAssigned, spec: JobSpec, state: JobState
    ) -> tuple[ModelDeployed, ServedEndpoint]:
        """The assigned model served here: started and measured, or (a redelivery) the endpoint that serves it."""
        current = await self.find(event.job_id)
        trained = event.trained
        if current and current.trained.event_id == trained.event_id and current.revision == event.revision:
            # A redelivery: this model already serves at this revision; announce it again, do not restart it.
            return current.deployed, current.serving
        with tracer.start_as_current_span(
            "deployer.deploy", attributes={"job.id": event.job_id, "server.id": self.settings.server_id}
        ):
            return await self.deploy(trained, spec, state, event.revision)

    async def still_mine(self, job_id: str, revision: int, agent: ServerAgent | None) -> bool:
        """The fence before announcing a deployment: the ledger still places the job here at this revision."""
        if agent is not None and agent.fenced():
            return False
        state = await self.resources.job_state(job_id)
        return state is not None and state.server_revision == revision and state.server_id == self.settings.server_id

    async def deploy(
        self, trained: ModelTrained, spec: JobSpec, state: JobState, revision: int
    ) -> tuple[ModelDeployed, ServedEndpoint]:
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
        # A key per deployment, kept in this server's key bucket (which no other server may read; `stratos key JOB`
        # does) before the endpoint exists, so no moment serves without one; per revision, so a stale deployer
        # cannot replace it.
        api_key = secrets.token_urlsafe(32)
        key_uri = await JobArtifacts(self.resources.keys, trained.job_id).put(endpoint_key(revision), api_key.encode())
        with tracer.start_as_current_span("deployer.start_backend", attributes={"job.id": trained.job_id}) as span:
            started = await self.serve_within_slo(trained.job_id, spec, state, workdir, (model_path, adapter), api_key)
            span.set_attribute("serving.backend", started.backend.name)
        backend, endpoint = started.backend, started.endpoint
        deployed = self.announcement(trained.job_id, revision, endpoint, backend.name, started.measured, key_uri)
        serving = ServedEndpoint(
            **started.measured.model_dump(),
            endpoint=endpoint,
            backend=deployed.backend,
            server_id=deployed.server_id,
            auth="bearer",
            engine_note=started.note or None,
            quantization=started.quantization,
            engine_trials=started.trials,
        )
        # The previous endpoint serves until this one is measured (its server may be gone already).
        await self.deployments.stop(trained.job_id)
        deployment = Deployment(trained, backend, deployed, serving)
        self.deployments.by_job[trained.job_id] = deployment
        await JobArtifacts(self.resources.artifacts, trained.job_id).put(
            Artifact.DEPLOYMENT_RECORD, deployment.record()
        )
        return deployed, serving

    def announcement(
        self,
        job_id: str,
        revision: int,
        endpoint: str,
        backend_name: str,
        measured: EndpointMeasurements,
        key_uri: str,
    ) -> ModelDeployed:
        """The ModelDeployed for a measured endpoint."""
        return ModelDeployed(
            # The endpoint is part of the identity: a re-publish of this deployment is dropped as a duplicate,
            # a new one (after a crash, a re-plan) is not, so the ledger always shows the live endpoint.
            event_id=stable_id(job_id, "deployed", revision, endpoint),
            job_id=job_id,
            server_id=self.settings.server_id,
            revision=revision,
            endpoint=endpoint,
            backend=backend_name,
            ttft_p50_ms=measured.ttft_p50_ms,
            ttft_p95_ms=measured.ttft_p95_ms,
            latency_p50_ms=measured.latency_p50_ms,
            latency_p95_ms=measured.latency_p95_ms,
            accuracy=measured.accuracy,
            api_key_uri=key_uri,
        )

    def backend(
        self, choice: str, job_id: str, state: JobState, workdir: Path, gpu: bool, quant: Quantization
    ) -> ServingBackend:
        return choose_backend(
            gpu,
            choice,
            served_name=job_id,
            ready_timeout_s=self.settings.ready_timeout_s,
            log_dir=workdir / "logs",
            host=self.settings.advertise_host,
            gpu_count=state.results.server.gpu_count if state.results.server else 1,
            engine=find_engine(),
            quant=quant,
        )

    def quantization_ladder(self) -> list[Quantization]:
        """The configured weights (q8_0: near-lossless) first; then q4_k_m, smaller and faster, if allowed."""
        first: Quantization = self.settings.quantization
        return [first, FASTEST] if self.settings.latency_aware and first != FASTEST else [first]

    async def serve_within_slo(
        self, job_id: str, spec: JobSpec, state: JobState, workdir: Path, model: tuple[Path, Path | None], api_key: str
    ) -> Started:
        """The engine started and measured. With llama.cpp, while the latency SLO is missed at the probed
        concurrencies, the next faster weights are tried; the first that meets it serves, else the fastest. Each
        try is stopped before the next starts, so no measurement shares the cores with another engine."""
        trials: list[EngineTrial] = []
        *slower, fastest = self.quantization_ladder()
        for quant in slower:
            started = await self.measured_engine(job_id, spec, state, workdir, model, api_key, quant, trials)
            if trials[-1].meets_slo or started.backend.name != "llamacpp":
                return started
            log.info("job %s: %s misses the latency SLO; trying faster weights", job_id, quant)
            await asyncio.to_thread(started.backend.stop)
        return await self.measured_engine(job_id, spec, state, workdir, model, api_key, fastest, trials)

    async def measured_engine(
        self,
        job_id: str,
        spec: JobSpec,
        state: JobState,
        workdir: Path,
        model: tuple[Path, Path | None],
        api_key: str,
        quant: Quantization,
        trials: list[EngineTrial],
    ) -> Started:
        """One engine started and measured through its endpoint; its trial appended to `trials`."""
        backend, endpoint, note = await self.start_serving(job_id, state, workdir, model, api_key, quant)
        try:
            measured = await self.measure(job_id, spec, endpoint, api_key)
        except BaseException:
            # Failed, or cancelled by a shutdown: a server nobody tracks must not outlive us.
            await asyncio.to_thread(backend.stop)
            raise
        served_quant = quant if backend.name == "llamacpp" else None
        trial = EngineTrial(
            backend=backend.name,
            quantization=served_quant,
            worst_latency_p50_ms=measured.worst_latency_p50_ms,
            accuracy=measured.accuracy,
            meets_slo=meets_slo(spec, state.results.server, measured),
        )
        trials.append(trial)
        return Started(backend, endpoint, note, measured, served_quant, list(trials))

    async def start_serving(
        self,
        job_id: str,
        state: JobState,
        workdir: Path,
        model: tuple[Path, Path | None],
        api_key: str,
        quant: Quantization,
    ) -> tuple[ServingBackend, str, str]:
        """The started backend, its endpoint, and why it is not the engine `auto` prefers ("" when it is).

        With `auto` on CPU, llama.cpp serves where it is built and the model converts to GGUF; a model its
        converter refuses (a tokenizer it does not know, such as the tiny test students') is served by the
        transformers server instead, and the report says why.
        """
        choice = self.settings.serving_backend
        gpu = choice == "auto" and await asyncio.to_thread(has_gpu)
        note = "" if gpu or choice != "auto" else (engine_problem() or "")
        backend = self.backend(choice, job_id, state, workdir, gpu, quant)
        try:
            return backend, await self.started(backend, model, api_key), note
        except GgufConversionError as refused:
            if choice != "auto":
                raise
            log.warning("job %s: %s; serving with the transformers server", job_id, refused)
            note = f"llama.cpp could not serve it: {refused}"
        fallback = self.backend("cpu", job_id, state, workdir, False, quant)
        return fallback, await self.started(fallback, model, api_key), note

    async def started(self, backend: ServingBackend, model: tuple[Path, Path | None], api_key: str) -> str:
        """The backend started on a free port of this server's address; its endpoint."""
        try:
            ports = self.settings.serving_port_range()
            host = self.settings.advertise_host
            port = free_port(host) if ports is None else free_port_in(host, ports)
            return await asyncio.to_thread(backend.start, model[0], model[1], port, api_key)
        except BaseException:
            # Failed, or cancelled by a shutdown while starting: a server nobody tracks must not outlive us.
            await asyncio.to_thread(backend.stop)
            raise

    async def measure(self, job_id: str, spec: JobSpec, endpoint: str, api_key: str) -> EndpointMeasurements:
        """Latency (TTFT and end-to-end, one request at a time and at each probed concurrency) and held-out
        accuracy, all through the endpoint, as clients would."""
        task = await task_of(job_id, spec.task, self.resources.artifacts, self.settings.task_cache_dir())
        held_out = (await asyncio.to_thread(split_task, task, spec.task)).eval[: self.settings.accuracy_samples]
        by_id: dict[str, Example] = {e.id: e for e in held_out}
        prompts = [task.student_prompt(e) for e in held_out]
        with tracer.start_as_current_span("deployer.probe", attributes={"job.id": job_id}) as span:
            alone, levels = await self.probe_levels(endpoint, job_id, prompts, api_key)
            accuracy = await check_accuracy_async(
                endpoint,
                job_id,
                [(task.student_prompt(e), e.id) for e in held_out],
                lambda output, example_id: task.grade(output, by_id[example_id]).correct,
                max_tokens=self.settings.max_tokens,
                api_key=api_key,
            )
            span.set_attributes({"serving.accuracy": accuracy.accuracy, "serving.latency_p50_ms": alone.e2e_p50 * 1000})
        return EndpointMeasurements(
            ttft_p50_ms=alone.ttft_p50 * 1000,
            ttft_p95_ms=alone.ttft_p95 * 1000,
            latency_p50_ms=alone.e2e_p50 * 1000,
            latency_p95_ms=alone.e2e_p95 * 1000,
            accuracy=accuracy.accuracy,
            by_concurrency=levels,
        )

    async def probe_levels(
        self, endpoint: str, model: str, prompts: list[ChatMessages], api_key: str
    ) -> tuple[LatencyReport, list[LatencyAt]]:
        """The probe one request at a time, then at each configured concurrency (each level sends at least two
        rounds of requests, so its p50 is not one round's)."""
        reports: dict[int, LatencyReport] = {}
        for concurrency in sorted({1, *self.settings.probe_concurrency}):
            reports[concurrency] = await probe_latency_async(
                endpoint,
                model,
                prompts,
                n_requests=max(self.settings.probe_requests, 2 * concurrency),
                concurrency=concurrency,
                max_tokens=self.settings.max_tokens,
                api_key=api_key,
            )
        levels = [
            LatencyAt(
                concurrency=level,
                ttft_p50_ms=report.ttft_p50 * 1000,
                latency_p50_ms=report.e2e_p50 * 1000,
                latency_p95_ms=report.e2e_p95 * 1000,
            )
            for level, report in reports.items()
        ]
        return reports[1], levels

    async def write_report(self, spec: JobSpec, state: JobState, serving: ServedEndpoint) -> str:
        report = build_report(spec, state, serving, utcnow())
        artifacts = JobArtifacts(self.resources.artifacts, state.job_id)
        plots: dict[str, str] = {}
        with tempfile.TemporaryDirectory() as tmp:
            # Off the event loop: matplotlib takes seconds, and a blocked loop stops extending the message lease.
            rendered = await asyncio.to_thread(render_plots, report, Path(tmp))
            for name, path in rendered.items():
                plots[name] = await artifacts.put(report_plot(name), path.read_bytes())
        report = report.model_copy(update={"plots": plots})
        await artifacts.put(Artifact.REPORT_MD, render_markdown(report).encode())
        return await artifacts.put_json(Artifact.REPORT_JSON, report.model_dump(mode="json"), indent=2)


def completed(job_id: str, report_uri: str, deployed: ModelDeployed) -> JobCompleted:
    """The job's end: its report and where the student serves."""
    return JobCompleted(
        event_id=stable_id(job_id, "completed"),
        job_id=job_id,
        report_uri=report_uri,
        summary={
            "student_accuracy": deployed.accuracy,
            "latency_p50_ms": deployed.latency_p50_ms,
            "endpoint": deployed.endpoint,
            "server_id": deployed.server_id,
        },
    )


@dataclass(frozen=True)
class Started:
    """An engine serving and measured, with every trial that led to it."""

    backend: ServingBackend
    endpoint: str
    note: str
    measured: EndpointMeasurements
    quantization: str | None
    trials: list[EngineTrial]
