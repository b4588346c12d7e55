"""Wires the inventory service: settings -> telemetry -> broker -> handlers, catalog load, heartbeat monitor."""

from __future__ import annotations

from nats.aio.subscription import Subscription

from stratos_inventory.handlers import Inventory, InventoryMonitor, build_events
from stratos_inventory.settings import InventorySettings
from stratos_inventory.sources.catalog import load_catalog
from stratos_inventory.sources.ppio import fetch_servers
from stratos_shared.bus.handler import publish_event
from stratos_shared.bus.kv import TypedKV
from stratos_shared.bus.names import HEARTBEAT_PREFIX, SERVERS_BUCKET
from stratos_shared.contracts.servers import ServerRecord, ServerSpec
from stratos_shared.service import ServiceRuntime, run_service

SERVICE = "inventory"


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
        monitor = InventoryMonitor(inventory, runtime.broker, settings.heartbeat_timeout_s, settings.heartbeat_check_s)
        subscription = await runtime.nc.subscribe(f"{HEARTBEAT_PREFIX}.*")
        runtime.spawn(_forward_heartbeats(subscription, monitor))
        runtime.spawn(monitor.run())

    return ServiceRuntime(SERVICE, settings, [events], on_start=[start])


async def _forward_heartbeats(subscription: Subscription, monitor: InventoryMonitor) -> None:
    async for msg in subscription.messages:
        await monitor.on_heartbeat(msg.subject.rsplit(".", 1)[-1])


def run() -> None:
    settings = InventorySettings()
    run_service(lambda: build(settings), settings, SERVICE)
