"""Wires the inventory service: settings -> telemetry -> broker -> handlers, catalog load, heartbeat monitor."""

from __future__ import annotations

import contextlib
import logging

from nats.aio.subscription import Subscription

from stratos_inventory.handlers import Inventory, InventoryMonitor, build_events
from stratos_inventory.settings import InventorySettings
from stratos_inventory.sources.catalog import load_catalog
from stratos_inventory.sources.ppio import fetch_servers
from stratos_shared.bus.handler import publish_event
from stratos_shared.bus.kv import TypedKV
from stratos_shared.bus.names import HEARTBEAT_PREFIX, LIVENESS_BUCKET, SERVERS_BUCKET, server_token
from stratos_shared.contracts.events import ServerHeartbeat
from stratos_shared.contracts.parsing import parse_event
from stratos_shared.contracts.servers import ServerLiveness, ServerRecord, ServerSpec
from stratos_shared.errors import InvalidEventError
from stratos_shared.service import ServiceRuntime, run_service

SERVICE = "inventory"
log = logging.getLogger("stratos.inventory")


def build(settings: InventorySettings | None = None) -> ServiceRuntime:
    settings = settings or InventorySettings()
    inventory = Inventory()
    events = build_events(inventory, settings.max_deliver, settings.ack_wait_s)

    async def start(runtime: ServiceRuntime) -> None:
        inventory.attach(TypedKV(await runtime.js.key_value(SERVERS_BUCKET), ServerRecord))
        specs: list[ServerSpec] = []
        if settings.catalog is not None:
            specs += load_catalog(settings.catalog)
        if settings.ppio_url:
            specs += await fetch_servers(settings.ppio_url, settings.ppio_latency_ms)
        for spec in specs:
            for event in await inventory.register(spec, "catalog"):
                await publish_event(runtime.broker, event)
        liveness = TypedKV(await runtime.js.key_value(LIVENESS_BUCKET), ServerLiveness)
        monitor = InventoryMonitor(
            inventory, runtime.broker, settings.heartbeat_timeout_s, settings.heartbeat_check_s, liveness
        )
        known = await monitor.load()
        if known:
            log.info("heartbeat deadlines of %d servers loaded from %s", known, LIVENESS_BUCKET)
        subscription = await runtime.nc.subscribe(f"{HEARTBEAT_PREFIX}.*")
        runtime.spawn(_forward_heartbeats(subscription, monitor))
        runtime.spawn(monitor.run())

    return ServiceRuntime(SERVICE, settings, [events], on_start=[start])


async def _forward_heartbeats(subscription: Subscription, monitor: InventoryMonitor) -> None:
    async for msg in subscription.messages:
        try:
            beat = parse_event(ServerHeartbeat, msg.data)
        except InvalidEventError:
            continue  # not a heartbeat: silence is the signal, so a bad one counts for nothing
        if server_token(beat.server_id) != msg.subject.rsplit(".", 1)[-1]:
            continue  # a heartbeat for another server than its subject names does not keep that server alive
        with contextlib.suppress(Exception):  # a KV hiccup: the next beat (seconds away) is written again
            await monitor.on_heartbeat(beat)


def run() -> None:
    settings = InventorySettings()
    run_service(lambda: build(settings), settings, SERVICE)
