"""Inventory handlers: operator commands in, ServerDown / ServerRegistered out.

Heartbeats arrive on core NATS (``stratos.hb.<server_id>``) and are handled by
`InventoryMonitor`, which also finds silent servers. Every up/down transition is
a compare-and-set on the server's KV record, so with several inventory replicas
only the one that wins the write publishes the event.
"""

from __future__ import annotations

import asyncio
import logging
import time

from faststream.nats import NatsBroker

from stratos_inventory.domain import HEARTBEAT_TIMEOUT, HeartbeatTracker, mark_down, mark_up, registered
from stratos_shared.bus.handler import EventRouter, HandlerContext, publish_event
from stratos_shared.bus.kv import TypedKV
from stratos_shared.bus.names import server_token
from stratos_shared.contracts.base import Event, stable_id
from stratos_shared.contracts.events import (
    ServerDown,
    ServerDownRequested,
    ServerHeartbeat,
    ServerRegistered,
    ServerUpRequested,
)
from stratos_shared.contracts.servers import ServerLiveness, ServerRecord, ServerSpec

log = logging.getLogger("stratos.inventory")


class Inventory:
    """The server records in KV plus the transitions that publish events."""

    def __init__(self, servers: TypedKV[ServerRecord] | None = None) -> None:
        self._servers = servers

    def attach(self, servers: TypedKV[ServerRecord]) -> None:
        """Bind to the KV bucket once connected (handlers are declared before the connection exists)."""
        self._servers = servers

    @property
    def servers(self) -> TypedKV[ServerRecord]:
        if self._servers is None:
            raise RuntimeError("inventory used before its KV bucket was attached")
        return self._servers

    async def register(self, spec: ServerSpec, source: str) -> list[Event]:
        record, wrote = await self.servers.update(spec.id, lambda cur: registered(spec, cur))
        if not wrote or record is None:
            return []
        return [
            ServerRegistered(
                event_id=stable_id(spec.id, "registered", spec.model_dump_json()), server=spec, source=source
            )
        ]

    async def down(self, server_id: str, reason: str) -> list[Event]:
        before = await self.servers.get(server_id)
        record, wrote = await self.servers.update(server_id, lambda cur: mark_down(cur, reason))
        if not wrote or record is None or before is None:
            return []
        # The id ties the event to the up-record it ends, so a retried transition is de-duplicated.
        return [ServerDown(event_id=stable_id(server_id, "down", before[1]), server_id=server_id, reason=reason)]

    async def up(self, server_id: str, source: str, monitored: bool) -> list[Event]:
        before = await self.servers.get(server_id)
        record, wrote = await self.servers.update(server_id, lambda cur: mark_up(cur, monitored))
        if not wrote or record is None or before is None or before[0].status == "up":
            return []
        return [ServerRegistered(event_id=stable_id(server_id, "up", before[1]), server=record.spec, source=source)]


def build_events(inventory: Inventory, max_deliver: int = 5, ack_wait_s: float = 30.0) -> EventRouter:
    """The inventory's event handlers, bound to its KV-backed state."""
    events = EventRouter("inventory", max_deliver=max_deliver, ack_wait_s=ack_wait_s)

    @events.handler(consumes=ServerDownRequested, publishes=[ServerDown], durable="inventory-server-down")
    async def on_server_down_requested(event: ServerDownRequested, ctx: HandlerContext) -> list[Event]:
        """An operator marks a server down: one ServerDown if it was up."""
        return await inventory.down(event.server_id, event.reason)

    @events.handler(consumes=ServerUpRequested, publishes=[ServerRegistered], durable="inventory-server-up")
    async def on_server_up_requested(event: ServerUpRequested, ctx: HandlerContext) -> list[Event]:
        """An operator brings a server back: it is eligible for new decisions again."""
        return await inventory.up(event.server_id, "operator", monitored=False)

    return events


class InventoryMonitor:
    """Tracks heartbeats and turns silence into exactly one ServerDown per outage.

    Every heartbeat is written through to the ``stratos-liveness`` bucket (wall-clock times), and a
    starting monitor loads it: the deadline of a server that died while no inventory ran is not lost.
    """

    def __init__(
        self,
        inventory: Inventory,
        broker: NatsBroker,
        timeout_s: float,
        check_s: float,
        liveness: TypedKV[ServerLiveness] | None = None,
    ) -> None:
        self.inventory = inventory
        self.broker = broker
        self.tracker = HeartbeatTracker(timeout_s)
        self.check_s = check_s
        self.liveness = liveness

    async def load(self) -> int:
        """Seed the tracker from the bucket (at start-up); returns how many servers it knew."""
        if self.liveness is None:
            return 0
        for record in (await self.liveness.items()).values():
            self.tracker.load(record)
        return len(self.tracker.servers)

    async def on_heartbeat(self, beat: ServerHeartbeat) -> None:
        record = self.tracker.beat(beat.server_id, beat.worker, beat.service, list(beat.jobs), time.time())
        if self.liveness is not None:
            await self.liveness.put(server_token(beat.server_id), record)
        for event in await self.inventory.up(beat.server_id, "heartbeat", monitored=True):
            await publish_event(self.broker, event)

    async def check_once(self) -> list[Event]:
        published: list[Event] = []
        for server_id in self.tracker.silent(time.time()):
            for event in await self.inventory.down(server_id, HEARTBEAT_TIMEOUT):
                await publish_event(self.broker, event)
                published.append(event)
        return published

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.check_s)
            try:
                await self.check_once()
            except Exception:  # a NATS hiccup must not end the monitor; the next pass retries
                log.exception("heartbeat check failed")
