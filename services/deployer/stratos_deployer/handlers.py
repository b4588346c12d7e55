"""Deployer handlers: serve the trained student on this server, measure it, report; stop when the job moves.

Each server's deployers pull their work from one durable consumer on ``stratos.work.deploy.<server>``
(a `DeploymentAssigned` per job and placement revision, from the selector's ledger), so a model is served
only on the server its job is placed on, at the address that server advertises. Re-plans, cancels and
failures reach every server's deployers through per-server durable consumers: the one holding the job's
endpoint stops it. The work itself is `stratos_deployer.deployments`; the handlers decide when.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from stratos_deployer.deployments import Deployer, Deployment, Deployments, completed
from stratos_deployer.settings import DeployerSettings
from stratos_shared.agent import ServerAgent
from stratos_shared.bus.handler import EventRouter, HandlerContext, Publisher, bind
from stratos_shared.bus.names import server_token, work_subject
from stratos_shared.bus.wiring import EACH_SERVER
from stratos_shared.contracts.base import Event
from stratos_shared.contracts.events import (
    DeploymentAssigned,
    JobCancelRequested,
    JobCompleted,
    JobFailed,
    ModelDeployed,
    ServerChosen,
)
from stratos_shared.contracts.job import JobSpec
from stratos_shared.jobcontext import StageResources
from stratos_shared.jobs import JobState

__all__ = ["Deployer", "DeployerHandlers", "Deployment", "Deployments", "build_events", "declared"]

log = logging.getLogger("stratos.deployer")


@dataclass
class DeployerHandlers:
    """What the deployer's handlers use: the deployer (its deployments) and the server's agent (the fence)."""

    deployer: Deployer
    agent: ServerAgent | None = None
    rejoined: Publisher | None = None
    """Where a deployment served again after a gap in the heartbeats is announced (declared in `build_events`)."""
    fenced: dict[str, Deployment] = field(default_factory=dict)
    """Endpoints stopped while this server was cut off, to serve again if the job is still placed here."""

    @property
    def deployments(self) -> Deployments:
        return self.deployer.deployments

    @property
    def me(self) -> str:
        return self.deployer.settings.server_id


async def owed(h: DeployerHandlers, event: DeploymentAssigned) -> tuple[JobSpec, JobState] | None:
    """The job's spec and ledger state when the assignment is this server's current work; None when it is not."""
    if event.job_id in h.deployments.ended or event.server_id != h.me:
        return None
    spec = await h.deployer.resources.specs.get(event.job_id)
    state = await h.deployer.ledger_state(event.job_id, min_revision=event.revision)
    if state.server_revision > event.revision or state.server_id != h.me:
        log.info("job %s: deployment revision %d is stale; dropped", event.job_id, event.revision)
        return None
    if state.status in ("cancelled", "failed"):
        return None
    return spec, state


async def on_deployment_assigned(h: DeployerHandlers, event: DeploymentAssigned, ctx: HandlerContext) -> list[Event]:
    """Serve the student on this server, measure latency and accuracy, write the report, complete the job."""
    async with h.deployments.lock(event.job_id):
        found = await owed(h, event)
        if found is None:
            return []
        spec, state = found
        deployed, serving = await h.deployer.serve(event, spec, state)
        if not await h.deployer.still_mine(event.job_id, event.revision, h.agent):
            # Moved while we were starting it (or we were cut off): this endpoint must not be announced.
            await h.deployments.stop(event.job_id)
            log.info("job %s: moved during deployment; endpoint stopped, not announced", event.job_id)
            return []
        if state.status == "completed":
            # A redeployment after a re-plan: the job completed before. The report, rewritten for this server and
            # endpoint in this server's bucket, is announced with the move, so the ledger's report_uri follows it.
            report_uri = await h.deployer.write_report(spec, state, serving)
            await ctx.publish(deployed.model_copy(update={"report_uri": report_uri}))
            log.info("job %s redeployed on %s at %s", event.job_id, h.me, deployed.endpoint)
            return []
        await ctx.publish(deployed)
        state = await h.deployer.ledger_state(event.job_id)
        report_uri = await h.deployer.write_report(spec, state, serving)
    return [completed(event.job_id, report_uri, deployed)]


async def on_server_chosen(h: DeployerHandlers, event: ServerChosen, ctx: HandlerContext) -> None:
    """The job moved to another server: its endpoint here stops (the new server serves it)."""
    async with h.deployments.lock(event.job_id):
        seen = h.deployments.latest_revision.get(event.job_id, 0)
        h.deployments.latest_revision[event.job_id] = max(seen, event.revision)
        if event.server.id == h.me:
            return
        current = await h.deployer.find(event.job_id)
        if current is not None and event.revision > current.revision and await h.deployments.stop(event.job_id):
            log.info(
                "job %s moved to %s (revision %d): endpoint here stopped", event.job_id, event.server.id, event.revision
            )


async def tear_down(h: DeployerHandlers, job_id: str, why: str) -> None:
    """The job ended: its endpoint stops, and a deployment still to come is refused."""
    async with h.deployments.lock(job_id):
        h.deployments.ended.add(job_id)
        await h.deployer.find(job_id)
        if await h.deployments.stop(job_id):
            log.info("job %s %s: deployment stopped", job_id, why)


async def on_cancel(h: DeployerHandlers, event: JobCancelRequested, ctx: HandlerContext) -> None:
    """A cancelled job's endpoint is torn down, and a deployment still to come is refused."""
    await tear_down(h, event.job_id, "cancelled")


async def on_failed(h: DeployerHandlers, event: JobFailed, ctx: HandlerContext) -> None:
    """A failed job serves nothing: e.g. a deployed job whose server went down with nowhere else to go.

    Otherwise its model server would keep running (and billing) for a job the ledger calls failed. Another
    server's word is not enough: only a control service, or this server itself, ends what this server serves.
    """
    if event.server_id not in (None, h.me):
        log.info("job %s: a failure reported by %s does not end the deployment here", event.job_id, event.server_id)
        return
    await tear_down(h, event.job_id, f"failed in {event.stage}")


async def on_fenced(h: DeployerHandlers) -> None:
    """Cut off longer than the timeout: this server may be declared down and its jobs moved, so stop serving."""
    for job_id in list(h.deployments.by_job):
        async with h.deployments.lock(job_id):
            found = h.deployments.by_job.get(job_id)
            if found is not None:
                h.fenced[job_id] = found
                await h.deployments.stop(job_id)
                log.warning("job %s: endpoint stopped while this server is cut off", job_id)


async def on_rejoin(h: DeployerHandlers) -> None:
    """Connected again: serve again what is still placed here at the same revision; the rest moved."""
    for job_id in list(h.fenced):
        stopped = h.fenced.pop(job_id)
        async with h.deployments.lock(job_id):
            state = await h.deployer.resources.job_state(job_id)
            ours = state is not None and state.server_id == h.me
            if not ours or state is None or state.server_revision != stopped.revision:
                continue
            if state.status not in ("running", "completed") or job_id in h.deployments.ended:
                continue
            spec = await h.deployer.resources.specs.get(job_id)
            deployed, _ = await h.deployer.deploy(stopped.trained, spec, state, stopped.revision)
            assert h.rejoined is not None, "build_events declares the rejoin publisher"
            await h.rejoined.publish(deployed)
            log.info("job %s: still placed here after the gap; serving again at %s", job_id, deployed.endpoint)


def build_events(
    settings: DeployerSettings,
    resources: StageResources,
    deployments: Deployments,
    agent: ServerAgent | None = None,
    handlers: DeployerHandlers | None = None,
) -> EventRouter:
    """The deployer's consumers (this server's work, and every re-plan, cancel and failure), and the announcement
    of an endpoint served again after the server was cut off (`handlers.rejoined`)."""
    events = EventRouter("deployer", max_deliver=settings.max_deliver, ack_wait_s=settings.ack_wait_s, on_servers=True)
    h = handlers or DeployerHandlers(Deployer(settings, resources, deployments), agent)
    token = server_token(settings.server_id)
    events.handler(
        consumes=DeploymentAssigned,
        publishes=[ModelDeployed, JobCompleted],
        durable=f"deployer-{token}",
        subject=work_subject("deploy", settings.server_id),
    )(bind(on_deployment_assigned, h))
    events.handler(consumes=ServerChosen, publishes=[], durable=f"deployer-{token}-replan")(bind(on_server_chosen, h))
    events.handler(consumes=JobCancelRequested, publishes=[], durable=f"deployer-{token}-cancel")(bind(on_cancel, h))
    events.handler(consumes=JobFailed, publishes=[], durable=f"deployer-{token}-failed")(bind(on_failed, h))
    h.rejoined = events.publisher("rejoin", [ModelDeployed])
    return events


def declared() -> EventRouter:
    """This service's declarations, built without connecting to anything: what `tools/wiring.py` writes into the
    generated wiring table (`stratos_shared.bus.wiring_table`)."""
    return build_events(DeployerSettings(server_id=EACH_SERVER), StageResources(), Deployments())
