"""The inventory service on a real nats-server: catalog, heartbeats, operator commands."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from nats.aio.client import Client

from stratos_inventory.main import build
from stratos_inventory.settings import InventorySettings
from stratos_shared.bus.handler import publish_event
from stratos_shared.bus.names import heartbeat_subject
from stratos_shared.contracts.events import ServerDownRequested, ServerHeartbeat, ServerUpRequested

pytestmark = pytest.mark.nats

CATALOG = Path(__file__).parents[2] / "examples" / "servers.yaml"


def inventory_settings(nats_server, tmp_path: Path) -> InventorySettings:
    return InventorySettings(
        nats_url=nats_server.url,
        home=tmp_path / "home",
        catalog=CATALOG,
        heartbeat_timeout_s=0.6,
        heartbeat_check_s=0.1,
    )  # type: ignore[call-arg]


async def test_catalog_servers_are_registered_once(nats_server, tmp_path, collect) -> None:
    registered = await collect("stratos.evt.server.registered")
    for _ in range(2):  # a restart re-reads the catalog but registers nothing new
        runtime = build(inventory_settings(nats_server, tmp_path))
        await runtime.start()
        await asyncio.sleep(0.5)
        await runtime.stop()
    ids = [b["server"]["id"] for b in registered.bodies()]
    assert sorted(ids) == sorted(set(ids))
    assert "a100-us-east" in ids and len(ids) == 8


async def test_heartbeat_timeout_produces_exactly_one_server_down(nats_server, tmp_path, nc: Client, collect) -> None:
    down = await collect("stratos.evt.server.down")
    registered = await collect("stratos.evt.server.registered")
    runtime = build(inventory_settings(nats_server, tmp_path))
    await runtime.start()
    try:
        for _ in range(8):  # alive for a while: no ServerDown
            await nc.publish(heartbeat_subject("l4-us-west"), ServerHeartbeat(server_id="l4-us-west").to_bytes())
            await asyncio.sleep(0.15)
        assert down.messages == []
        await asyncio.sleep(2.5)  # silent for four timeouts: still exactly one ServerDown
        assert [(b["server_id"], b["reason"]) for b in down.bodies()] == [("l4-us-west", "heartbeat-timeout")]

        # It comes back (ServerRegistered), then falls silent again: a second, distinct ServerDown.
        await nc.publish(heartbeat_subject("l4-us-west"), ServerHeartbeat(server_id="l4-us-west").to_bytes())
        await registered.wait_for(lambda c: any(b["source"] == "heartbeat" for b in c.bodies()))
        await down.wait_for(lambda c: len(c.messages) == 2)
        await asyncio.sleep(1.0)
    finally:
        await runtime.stop()
    bodies = down.bodies()
    assert len(bodies) == 2 and bodies[0]["event_id"] != bodies[1]["event_id"]


async def test_operator_marks_server_down_and_up(nats_server, tmp_path, collect) -> None:
    down = await collect("stratos.evt.server.down")
    registered = await collect("stratos.evt.server.registered")
    runtime = build(inventory_settings(nats_server, tmp_path))
    await runtime.start()
    try:
        await publish_event(runtime.broker, ServerDownRequested(server_id="t4-us-east"))
        await publish_event(runtime.broker, ServerDownRequested(server_id="t4-us-east"))  # already down: no event
        await down.wait_for(lambda c: len(c.messages) == 1)
        await publish_event(runtime.broker, ServerUpRequested(server_id="t4-us-east"))
        await registered.wait_for(lambda c: any(b["source"] == "operator" for b in c.bodies()))
        await asyncio.sleep(0.5)
    finally:
        await runtime.stop()
    assert [(b["server_id"], b["reason"]) for b in down.bodies()] == [("t4-us-east", "operator")]
