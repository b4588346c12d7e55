"""Wires a trainer process: settings -> telemetry -> broker -> handlers (with its re-plan/cancel signals), plus
heartbeats."""

from __future__ import annotations

import sys

from stratos_shared.agent import ServerAgent
from stratos_shared.jobcontext import StageResources
from stratos_shared.service import ServiceRuntime, run_service
from stratos_shared.settings import load_worker_settings
from stratos_trainer.handlers import build_events
from stratos_trainer.jobs import JobSignals
from stratos_trainer.settings import TrainerSettings

SERVICE = "trainer"


def build(settings: TrainerSettings | None = None) -> ServiceRuntime:
    settings = settings or TrainerSettings()
    resources = StageResources(settings.server_id)
    signals = JobSignals()
    signals.agent = ServerAgent(
        settings.server_id,
        settings.instance,
        SERVICE,
        lambda: list(signals.active),
        every_s=settings.heartbeat_s,
        fence_after_s=settings.fence_after_s,
    )

    async def beat(runtime: ServiceRuntime) -> None:
        assert signals.agent is not None
        runtime.spawn(signals.agent.run(runtime.nc))

    return ServiceRuntime(
        SERVICE,
        settings,
        [build_events(settings, resources, signals)],
        on_start=[resources.bind, beat],
        creates_infrastructure=False,
        server_id=settings.server_id,
    )


def run() -> None:
    settings = load_worker_settings(TrainerSettings, sys.argv[1:], f"python -m stratos_{SERVICE}")
    run_service(lambda: build(settings), settings, SERVICE)
