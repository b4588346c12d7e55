"""Wires the selector: settings -> telemetry -> broker -> handlers bound to the KV buckets."""

from __future__ import annotations

from stratos_selector.handlers import build_events
from stratos_selector.placements import JobPlacement, Placements, ServerLoad
from stratos_selector.planner import Planner
from stratos_selector.settings import SelectorSettings
from stratos_shared.artifacts import NatsArtifactStore
from stratos_shared.bus.kv import TypedKV
from stratos_shared.bus.names import JOBS_BUCKET, PLACEMENTS_BUCKET, SERVERS_BUCKET, SPECS_BUCKET
from stratos_shared.contracts.job import JobSpec
from stratos_shared.contracts.servers import ServerRecord
from stratos_shared.jobs import JobState
from stratos_shared.service import ServiceRuntime, run_service

SERVICE = "selector"


def build(settings: SelectorSettings | None = None) -> ServiceRuntime:
    settings = settings or SelectorSettings()
    planner = Planner(settings.require_workers)
    events = build_events(
        planner, settings.input_policy(), settings.max_deliver, settings.ack_wait_s, with_ledger=settings.run_ledger
    )

    async def start(runtime: ServiceRuntime) -> None:
        placements_kv = await runtime.js.key_value(PLACEMENTS_BUCKET)
        placements = Placements(TypedKV(placements_kv, JobPlacement), TypedKV(placements_kv, ServerLoad))
        planner.attach(
            servers=TypedKV(await runtime.js.key_value(SERVERS_BUCKET), ServerRecord),
            specs=TypedKV(await runtime.js.key_value(SPECS_BUCKET), JobSpec),
            placements=placements,
            jobs=TypedKV(await runtime.js.key_value(JOBS_BUCKET), JobState),
            artifacts=NatsArtifactStore(runtime.js),
        )
        # Local copies kept current by KV watchers: the inventory (ServerTable cached per version)
        # and the server loads. Both are loaded before the handlers start consuming.
        follow_inventory = await planner.follow_inventory()
        follow_loads = await placements.follow_loads()
        runtime.spawn(follow_inventory())
        runtime.spawn(follow_loads())

    return ServiceRuntime(SERVICE, settings, [events], on_start=[start])


def run() -> None:
    settings = SelectorSettings()
    run_service(lambda: build(settings), settings, SERVICE)
