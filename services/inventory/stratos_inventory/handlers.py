"""Inventory handlers: operator commands and heartbeats in, ServerDown / ServerRegistered out.

Operator commands arrive on durable consumers; heartbeats on core NATS (``stratos.hb.<server_id>``, a
declared signal: silence is what counts, a lost beat costs nothing). Transitions found outside a handler
(the catalog load, a heartbeat that brings a server back, silence) are published through the declared
``transitions`` publisher. The state is `stratos_inventory.servers`.
"""

from __future__ import annotations

import logging

from stratos_inventory.servers import Inventory, InventoryMonitor
from stratos_shared.bus.handler import EventRouter, HandlerContext, bind
from stratos_shared.bus.names import HEARTBEAT_PREFIX, server_token
from stratos_shared.contracts.base import Event
from stratos_shared.contracts.events import (
    ServerDown,
    ServerDownRequested,
    ServerHeartbeat,
    ServerRegistered,
    ServerUpRequested,
)

__all__ = ["Inventory", "InventoryMonitor", "build_events", "declared"]

log = logging.getLogger("stratos.inventory")


async def on_server_down_requested(
    inventory: Inventory, event: ServerDownRequested, ctx: HandlerContext
) -> list[Event]:
    """An operator marks a server down: one ServerDown if it was up."""
    return await inventory.down(event.server_id, event.reason)


async def on_server_up_requested(inventory: Inventory, event: ServerUpRequested, ctx: HandlerContext) -> list[Event]:
    """An operator brings a server back: it is eligible for new decisions again."""
    return await inventory.up(event.server_id, "operator", monitored=False)


async def on_heartbeat(monitor: InventoryMonitor, beat: ServerHeartbeat, subject: str) -> None:
    """A server's worker is alive: its deadline moves on (and a server down from silence comes back up)."""
    if server_token(beat.server_id) != subject.rsplit(".", 1)[-1]:
        return  # a heartbeat for another server than its subject names does not keep that server alive
    await monitor.on_heartbeat(beat)  # a KV hiccup fails this beat only: the next one is seconds away


def build_events(
    inventory: Inventory, max_deliver: int = 5, ack_wait_s: float = 30.0, monitor: InventoryMonitor | None = None
) -> EventRouter:
    """The inventory's event handlers, bound to its KV-backed state; with `monitor`, the heartbeats too."""
    events = EventRouter("inventory", max_deliver=max_deliver, ack_wait_s=ack_wait_s)
    events.handler(consumes=ServerDownRequested, publishes=[ServerDown], durable="inventory-server-down")(
        bind(on_server_down_requested, inventory)
    )
    events.handler(consumes=ServerUpRequested, publishes=[ServerRegistered], durable="inventory-server-up")(
        bind(on_server_up_requested, inventory)
    )
    inventory.announce = events.publisher("transitions", [ServerRegistered, ServerDown])
    if monitor is not None:
        events.signal(consumes=ServerHeartbeat, subject=f"{HEARTBEAT_PREFIX}.*")(bind(on_heartbeat, monitor))
    return events


def declared() -> EventRouter:
    """This service's declarations, built without connecting to anything: what `tools/wiring.py` writes into the
    generated wiring table (`stratos_shared.bus.wiring_table`)."""
    return build_events(Inventory(), monitor=InventoryMonitor(Inventory(), timeout_s=8.0, check_s=1.0))
