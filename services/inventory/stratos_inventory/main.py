"""Wires the inventory service: settings -> telemetry -> broker -> handlers, catalog load (with each catalog server's
object stores), heartbeat monitor."""

from __future__ import annotations

import logging

from stratos_inventory.handlers import build_events
from stratos_inventory.servers import Inventory, InventoryMonitor
from stratos_inventory.settings import InventorySettings
from stratos_inventory.sources.catalog import load_catalog
from stratos_inventory.sources.ppio import fetch_servers
from stratos_shared.bus.infra import ensure_server_buckets
from stratos_shared.bus.kv import TypedKV
from stratos_shared.bus.names import LIVENESS_BUCKET, SERVERS_BUCKET
from stratos_shared.contracts.servers import ServerLiveness, ServerRecord, ServerSpec
from stratos_shared.service import ServiceRuntime, run_service

SERVICE = "inventory"
log = logging.getLogger("stratos.inventory")


def build(settings: InventorySettings | None = None) -> ServiceRuntime:
    settings = settings or InventorySettings()
    inventory = Inventory()
    monitor = InventoryMonitor(inventory, settings.heartbeat_timeout_s, settings.heartbeat_check_s)
    events = build_events(inventory, settings.max_deliver, settings.ack_wait_s, monitor)

    async def start(runtime: ServiceRuntime) -> None:
        inventory.attach(TypedKV(await runtime.js.key_value(SERVERS_BUCKET), ServerRecord))
        specs: list[ServerSpec] = []
        if settings.catalog is not None:
            specs += load_catalog(settings.catalog)
        if settings.ppio_url:
            specs += await fetch_servers(settings.ppio_url, settings.ppio_latency_ms)
        for spec in specs:
            # Each catalog server's own object stores (artifacts, endpoint keys): its credential may create no
            # stream, so the inventory, which owns the catalog, makes them before its workers need them.
            await ensure_server_buckets(runtime.js, spec.id, settings.replicas)
            await inventory.publish(await inventory.register(spec, "catalog"))
        monitor.liveness = TypedKV(await runtime.js.key_value(LIVENESS_BUCKET), ServerLiveness)
        known = await monitor.load()
        if known:
            log.info("heartbeat deadlines of %d servers loaded from %s", known, LIVENESS_BUCKET)
        runtime.spawn(monitor.run())  # the heartbeats themselves are a signal declared in build_events

    return ServiceRuntime(SERVICE, settings, [events], on_start=[start])


def run() -> None:
    settings = InventorySettings()
    run_service(lambda: build(settings), settings, SERVICE)
