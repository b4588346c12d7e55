"""Wires the deployer: settings -> telemetry -> broker -> handlers; stops every endpoint on shutdown."""

from __future__ import annotations

from stratos_deployer.handlers import Deployments, build_events
from stratos_deployer.settings import DeployerSettings
from stratos_shared.jobcontext import StageResources
from stratos_shared.service import ServiceRuntime, run_service

SERVICE = "deployer"


def build(settings: DeployerSettings | None = None) -> ServiceRuntime:
    settings = settings or DeployerSettings()
    resources = StageResources()
    deployments = Deployments()

    async def stop_endpoints(runtime: ServiceRuntime) -> None:
        await deployments.stop_all()

    return ServiceRuntime(
        SERVICE,
        settings,
        [build_events(settings, resources, deployments)],
        on_start=[resources.bind],
        on_stop=[stop_endpoints],
    )


def run() -> None:
    settings = DeployerSettings()
    run_service(lambda: build(settings), settings, SERVICE)
