"""Wires the deployer: settings -> telemetry -> broker -> handlers, heartbeats and self-fencing; stops every
endpoint on shutdown."""

from __future__ import annotations

import functools
import sys

from stratos_deployer.deployments import Deployer, Deployments
from stratos_deployer.handlers import DeployerHandlers, build_events, on_fenced, on_rejoin
from stratos_deployer.settings import DeployerSettings
from stratos_shared.agent import ServerAgent
from stratos_shared.jobcontext import StageResources
from stratos_shared.service import ServiceRuntime, run_service
from stratos_shared.settings import load_worker_settings

SERVICE = "deployer"


def build(settings: DeployerSettings | None = None) -> ServiceRuntime:
    settings = settings or DeployerSettings()
    resources = StageResources(settings.server_id)
    deployments = Deployments()
    agent = ServerAgent(
        settings.server_id,
        settings.instance,
        SERVICE,
        lambda: list(deployments.by_job),
        every_s=settings.heartbeat_s,
        fence_after_s=settings.fence_after_s,
    )
    handlers = DeployerHandlers(Deployer(settings, resources, deployments), agent)
    agent.on_fenced.append(functools.partial(on_fenced, handlers))
    agent.on_rejoin.append(functools.partial(on_rejoin, handlers))

    async def stop_endpoints(runtime: ServiceRuntime) -> None:
        await deployments.stop_all()

    async def beat(runtime: ServiceRuntime) -> None:
        runtime.spawn(agent.run(runtime.nc))

    return ServiceRuntime(
        SERVICE,
        settings,
        [build_events(settings, resources, deployments, agent, handlers)],
        on_start=[resources.bind, beat],
        on_stop=[stop_endpoints],
        creates_infrastructure=False,
        server_id=settings.server_id,
    )


def run() -> None:
    settings = load_worker_settings(DeployerSettings, sys.argv[1:], f"python -m stratos_{SERVICE}")
    run_service(lambda: build(settings), settings, SERVICE)
