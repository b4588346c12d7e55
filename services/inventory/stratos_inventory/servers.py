"""The inventory's state: server records in KV with their up/down transitions, and the heartbeat monitor.

Every transition is a compare-and-set on the server's KV record (rules in `stratos_inventory.domain`), so
with several inventory replicas only the one that wins the write publishes the event.
"""

from __future__ import annotations

import asyncio
import logging
import time

from stratos_inventory.domain import HEARTBEAT_TIMEOUT, HeartbeatTracker, mark_down, mark_up, registered
from stratos_shared.bus.handler import Publisher
from stratos_shared.bus.kv import TypedKV
from stratos_shared.bus.names import server_token
from stratos_shared.contracts.base import Event, stable_id
from stratos_shared.contracts.events import ServerDown, ServerHeartbeat, ServerRegistered
from stratos_shared.contracts.servers import ServerLiveness, ServerRecord, ServerSpec

log = logging.getLogger("stratos.inventory")


class Inventory:
    """The server records in KV plus the transitions that publish events."""

    def __init__(self, servers: TypedKV[ServerRecord] | None = None) -> None:
        self._servers = servers
        self.announce: Publisher | None = None
        """Where transitions found outside a handler (catalog load, heartbeats, silence) are published: declared
        by `build_events`."""

    def attach(self, servers: TypedKV[ServerRecord]) -> None:
        """Bind to the KV bucket once connected (handlers are declared before the connection exists)."""
        self._servers = servers

    @property
    def servers(self) -> TypedKV[ServerRecord]:
        if self._servers is None:
            raise RuntimeError("inventory used before its KV bucket was attached")
        return self._servers

    async def publish(self, events: list[Event]) -> list[Event]:
        if self.announce is None:
            raise RuntimeError("inventory transitions published before build_events declared their publisher")
        for event in events:
            await self.announce.publish(event)
        return events

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


class InventoryMonitor:
    """Tracks heartbeats and turns silence into exactly one ServerDown per outage.

    Every heartbeat is written through to the ``stratos-liveness`` bucket (wall-clock times), and a
    starting monitor loads it: the deadline of a server that died while no inventory ran is not lost.
    """

    def __init__(
        self,
        inventory: Inventory,
        timeout_s: float,
        check_s: float,
        liveness: TypedKV[ServerLiveness] | None = None,
    ) -> None:
        self.inventory = inventory
        self.tracker = HeartbeatTracker(timeout_s)
        self.check_s = check_s
        self.liveness = liveness

    async def load(self) -> int:
        """Seed the tracker from the bucket (at start-up); returns how many servers it knew."""
        self.tracker.watching_since = time.time()
        if self.liveness is None:
            return 0
        for record in (await self.liveness.items()).values():
            self.tracker.load(record)
        return len(self.tracker.servers)

    async def on_heartbeat(self, beat: ServerHeartbeat) -> None:
        record = self.tracker.beat(beat.server_id, beat.worker, beat.service, list(beat.jobs), time.time())
        if self.liveness is not None:
            await self.liveness.put(server_token(beat.server_id), record)
        await self.inventory.publish(await self.inventory.up(beat.server_id, "heartbeat", monitored=True))

    async def check_once(self) -> list[Event]:
        published: list[Event] = []
        for server_id in self.tracker.silent(time.time()):
            published += await self.inventory.publish(await self.inventory.down(server_id, HEARTBEAT_TIMEOUT))
        return published

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.check_s)
            try:
                await self.check_once()
            except Exception:  # a NATS hiccup must not end the monitor; the next pass retries
                log.exception("heartbeat check failed")
