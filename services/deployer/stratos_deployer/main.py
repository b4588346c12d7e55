"""Wires the deployer: settings -> telemetry -> broker -> handlers, heartbeats and self-fencing; stops every
endpoint on shutdown."""

from __future__ import annotations

import logging
import sys

from stratos_deployer.handlers import Deployer, Deployment, Deployments, build_events
from stratos_deployer.settings import DeployerSettings
from stratos_shared.agent import ServerAgent
from stratos_shared.bus.handler import publish_event
from stratos_shared.jobcontext import StageResources
from stratos_shared.service import ServiceRuntime, run_service
from stratos_shared.settings import load_worker_settings

SERVICE = "deployer"
log = logging.getLogger("stratos.deployer")


def build(settings: DeployerSettings | None = None) -> ServiceRuntime:
    settings = settings or DeployerSettings()
    resources = StageResources()
    deployments = Deployments()
    agent = ServerAgent(
        settings.server_id,
        settings.instance,
        SERVICE,
        lambda: list(deployments.by_job),
        every_s=settings.heartbeat_s,
        fence_after_s=settings.fence_after_s,
    )
    deployer = Deployer(settings, resources, deployments)
    fenced: dict[str, Deployment] = {}
    runtimes: list[ServiceRuntime] = []

    async def stop_endpoints(runtime: ServiceRuntime) -> None:
        await deployments.stop_all()

    async def fence() -> None:
        """Cut off longer than the timeout: this server may be declared down and its jobs moved, so stop serving."""
        for job_id in list(deployments.by_job):
            async with deployments.lock(job_id):
                found = deployments.by_job.get(job_id)
                if found is not None:
                    fenced[job_id] = found
                    await deployments.stop(job_id)
                    log.warning("job %s: endpoint stopped while this server is cut off", job_id)

    async def rejoin() -> None:
        """Connected again: serve again what is still placed here at the same revision; the rest moved."""
        for job_id in list(fenced):
            stopped = fenced.pop(job_id)
            async with deployments.lock(job_id):
                state = await resources.job_state(job_id)
                ours = state is not None and state.server_id == settings.server_id
                if not ours or state is None or state.server_revision != stopped.revision:
                    continue
                if state.status not in ("running", "completed") or job_id in deployments.ended:
                    continue
                spec = await resources.specs.get(job_id)
                deployed, _ = await deployer.deploy(stopped.trained, spec, state, stopped.revision)
                await publish_event(runtimes[0].broker, deployed)
                log.info("job %s: still placed here after the gap; serving again at %s", job_id, deployed.endpoint)

    agent.on_fenced.append(fence)
    agent.on_rejoin.append(rejoin)

    async def beat(runtime: ServiceRuntime) -> None:
        runtimes.append(runtime)
        runtime.spawn(agent.run(runtime.nc))

    return ServiceRuntime(
        SERVICE,
        settings,
        [build_events(settings, resources, deployments, agent)],
        on_start=[resources.bind, beat],
        on_stop=[stop_endpoints],
    )


def run() -> None:
    settings = load_worker_settings(DeployerSettings, sys.argv[1:], f"python -m stratos_{SERVICE}")
    run_service(lambda: build(settings), settings, SERVICE)
