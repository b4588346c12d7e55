"""Liveness from the servers themselves: real worker processes heartbeat; their silence is a ServerDown.

A server here is what `stratos up` starts for one catalog server: a trainer and a deployer process in
one process group, with ``STRATOS_SERVER_ID``. Nothing but their heartbeats tells the inventory they
exist: SIGKILL them and the inventory publishes ServerDown (`heartbeat-timeout`) by itself, also when
the inventory itself was restarted while the server died (the deadline is in KV, not in memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from stratos_cli.client import wait_for_workers
from stratos_cli.stack import launch_server, server_pids, service_env, signal_server
from stratos_inventory.main import build as build_inventory
from stratos_inventory.settings import InventorySettings
from stratos_shared.bus.kv import TypedKV
from stratos_shared.bus.names import LIVENESS_BUCKET, SERVERS_BUCKET
from stratos_shared.contracts.servers import ServerLiveness, ServerRecord
from stratos_shared.embedded import NatsServerProcess
from tests.e2e.stack import stop_and_reap
from tests.faults.stack import poll

pytestmark = pytest.mark.nats

ROOT = Path(__file__).parents[2]
TIMEOUT_S = 3.0
WORKER_ENV = {"STRATOS_HEARTBEAT_S": "0.5", "STRATOS_FENCE_AFTER_S": str(TIMEOUT_S), "OMP_NUM_THREADS": "1"}


def inventory(nats_server: NatsServerProcess, home: Path) -> object:
    settings = InventorySettings(
        nats_url=nats_server.url,
        home=home,
        catalog=ROOT / "examples" / "servers.yaml",
        heartbeat_timeout_s=TIMEOUT_S,
        heartbeat_check_s=0.2,
    )  # type: ignore[call-arg]
    return build_inventory(settings)


@contextlib.contextmanager
def servers(nats_server: NatsServerProcess, home: Path, server_ids: list[str]) -> Iterator[dict[str, int]]:
    env = service_env(home, nats_server.url, 1, WORKER_ENV)
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    pids: dict[str, int] = {}
    for index, server_id in enumerate(server_ids):
        pids |= launch_server(server_id, index, home, env)
    try:
        yield pids
    finally:
        stop_and_reap(pids)


def reap(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


@pytest.mark.timeout(300)
async def test_a_killed_server_is_noticed_from_its_silence_even_by_a_restarted_inventory(
    nats_server: NatsServerProcess, tmp_path: Path, nc: Client, collect
) -> None:
    down = await collect("stratos.evt.server.down")
    home = tmp_path / "home"
    first = inventory(nats_server, home)
    await first.start()  # type: ignore[attr-defined]
    records = TypedKV(await nc.jetstream().key_value(SERVERS_BUCKET), ServerRecord)
    liveness = TypedKV(await nc.jetstream().key_value(LIVENESS_BUCKET), ServerLiveness)
    restarted = None
    try:
        with servers(nats_server, home, ["l4-us-west", "t4-us-east"]):
            await wait_for_workers(nats_server.url, ["l4-us-west", "t4-us-east"], timeout_s=120)

            async def both_workers_beat() -> bool:
                found = [await liveness.get(s) for s in ("l4-us-west", "t4-us-east")]
                return all(f and {w.service for w in f[0].workers.values()} == {"trainer", "deployer"} for f in found)

            await poll(both_workers_beat, 120, what="a trainer and a deployer beating for each server")
            unmonitored = [r for k, r in (await records.items()).items() if k not in ("l4-us-west", "t4-us-east")]
            assert unmonitored and not any(r.monitored for r in unmonitored), "a server without workers looks live"
            await asyncio.sleep(3 * TIMEOUT_S)  # alive and beating: nobody is declared down
            assert down.messages == []

            # 0. The inventory is restarted after a gap longer than the timeout, every server healthy: the stored
            #    deadlines have passed, but the beats in between reached no inventory. No one is declared down.
            await first.stop()  # type: ignore[attr-defined]
            await asyncio.sleep(2 * TIMEOUT_S)
            first = inventory(nats_server, home)
            await first.start()  # type: ignore[attr-defined]
            await asyncio.sleep(2 * TIMEOUT_S)
            assert down.messages == [], f"a restarted inventory declared healthy servers down: {down.bodies()}"

            # 1. SIGKILL every process of l4-us-west and say nothing: its silence is the only signal.
            killed = signal_server(home, "l4-us-west")
            reap(killed)
            assert len(killed) == 2 and not server_pids(home, "l4-us-west")
            await down.wait_for(lambda c: len(c.messages) == 1, timeout_s=30)
            assert [(b["server_id"], b["reason"]) for b in down.bodies()] == [("l4-us-west", "heartbeat-timeout")]

            # 2. The inventory stops; while none runs, t4-us-east dies; a new inventory still notices.
            await first.stop()  # type: ignore[attr-defined]
            first = None
            reap(signal_server(home, "t4-us-east"))
            await asyncio.sleep(2 * TIMEOUT_S)  # past its deadline before any inventory is back
            restarted = inventory(nats_server, home)
            await restarted.start()  # type: ignore[attr-defined]
            # a restarted inventory first loads the catalog and the saved deadlines: slower under a loaded suite
            await down.wait_for(lambda c: len(c.messages) == 2, timeout_s=60)
            await asyncio.sleep(2 * TIMEOUT_S)  # and only once each
    finally:
        for runtime in (first, restarted):
            if runtime is not None:
                await runtime.stop()  # type: ignore[attr-defined]
    assert [(b["server_id"], b["reason"]) for b in down.bodies()] == [
        ("l4-us-west", "heartbeat-timeout"),
        ("t4-us-east", "heartbeat-timeout"),
    ]
    final = await records.items()
    assert final["l4-us-west"].status == final["t4-us-east"].status == "down"
