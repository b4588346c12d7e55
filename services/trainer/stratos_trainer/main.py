"""Wires a trainer process: settings -> telemetry -> broker -> handlers, plus heartbeats and re-plan/cancel signals."""

from __future__ import annotations

import contextlib
import sys

from nats.aio.msg import Msg

from stratos_shared.agent import ServerAgent
from stratos_shared.contracts.events import JobCancelRequested, ServerChosen
from stratos_shared.contracts.parsing import parse_event
from stratos_shared.errors import InvalidEventError
from stratos_shared.jobcontext import StageResources
from stratos_shared.service import ServiceRuntime, run_service
from stratos_shared.settings import load_worker_settings
from stratos_trainer.handlers import build_events
from stratos_trainer.jobs import JobSignals
from stratos_trainer.settings import TrainerSettings

SERVICE = "trainer"


def build(settings: TrainerSettings | None = None) -> ServiceRuntime:
    settings = settings or TrainerSettings()
    resources = StageResources()
    signals = JobSignals()
    signals.agent = ServerAgent(
        settings.server_id,
        settings.instance,
        SERVICE,
        lambda: list(signals.active),
        every_s=settings.heartbeat_s,
        fence_after_s=settings.fence_after_s,
    )

    async def listen(runtime: ServiceRuntime) -> None:
        # Bad payloads are dead-lettered by the durable consumers; a signal listener just ignores them.
        async def on_server_chosen(msg: Msg) -> None:
            with contextlib.suppress(InvalidEventError):
                signals.on_server_chosen(parse_event(ServerChosen, msg.data))

        async def on_cancel(msg: Msg) -> None:
            with contextlib.suppress(InvalidEventError):
                signals.on_cancel(parse_event(JobCancelRequested, msg.data))

        await runtime.nc.subscribe(ServerChosen.SUBJECT, cb=on_server_chosen)
        await runtime.nc.subscribe(JobCancelRequested.SUBJECT, cb=on_cancel)
        assert signals.agent is not None
        runtime.spawn(signals.agent.run(runtime.nc))

    return ServiceRuntime(
        SERVICE, settings, [build_events(settings, resources, signals)], on_start=[resources.bind, listen]
    )


def run() -> None:
    settings = load_worker_settings(TrainerSettings, sys.argv[1:], f"python -m stratos_{SERVICE}")
    run_service(lambda: build(settings), settings, SERVICE)
