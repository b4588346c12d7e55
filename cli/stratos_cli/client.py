"""How CLI commands reach the bus: URL from --nats, NATS_URL, or the running embedded stack."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from opentelemetry.propagate import inject

from stratos_cli.stack import StackState
from stratos_shared.bus.infra import ensure_infrastructure
from stratos_shared.contracts.base import Event
from stratos_shared.settings import default_home


def home_dir() -> Path:
    return Path(os.environ.get("STRATOS_HOME") or default_home())


def resolve_nats_url(explicit: str | None = None) -> str:
    if explicit:
        return explicit
    if os.environ.get("NATS_URL"):
        return os.environ["NATS_URL"]
    state = StackState.load(home_dir())
    return state.nats_url if state else "nats://127.0.0.1:4222"


def cli_credentials() -> tuple[str | None, str | None]:
    """From STRATOS_NATS_USER/PASSWORD, else the `cli` user `stratos up --auth` wrote to the state directory."""
    if os.environ.get("STRATOS_NATS_USER"):
        return os.environ["STRATOS_NATS_USER"], os.environ.get("STRATOS_NATS_PASSWORD")
    stored = home_dir() / "credentials.json"
    if not os.environ.get("NATS_URL") and stored.exists():
        return "cli", json.loads(stored.read_text())["cli"]
    return None, None


@contextlib.asynccontextmanager
async def connect(url: str | None = None) -> AsyncIterator[tuple[Client, JetStreamContext]]:
    servers = resolve_nats_url(url).split(",")
    user, password = cli_credentials()
    options = {"user": user, "password": password} if user else {}
    nc = await nats.connect(servers=servers, connect_timeout=3, max_reconnect_attempts=2, **options)
    try:
        js = nc.jetstream()
        await ensure_infrastructure(js, replicas=int(os.environ.get("STRATOS_REPLICAS", "1")))
        yield nc, js
    finally:
        await nc.drain()


async def publish(js: JetStreamContext, event: Event) -> None:
    """JetStream publish with the event id as message id, carrying the current trace context (W3C headers)."""
    headers = {"Nats-Msg-Id": event.event_id, "Stratos-Event-Type": event.event_type}
    inject(headers)
    await js.publish(event.SUBJECT, event.to_bytes(), headers=headers)


async def wait_until_ready(url: str | None, timeout_s: float = 120.0) -> int:
    """Block until the inventory has registered servers (the stack can place jobs); returns how many."""
    from stratos_shared.bus.kv import TypedKV
    from stratos_shared.bus.names import SERVERS_BUCKET
    from stratos_shared.contracts.servers import ServerRecord

    deadline = asyncio.get_running_loop().time() + timeout_s
    async with connect(url) as (_, js):
        servers = TypedKV(await js.key_value(SERVERS_BUCKET), ServerRecord)
        while True:
            count = len(await servers.keys())
            if count:
                return count
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"no servers registered within {timeout_s:.0f} s: is the inventory running?")
            await asyncio.sleep(0.5)


async def wait_for_workers(url: str | None, server_ids: list[str], timeout_s: float = 120.0) -> None:
    """Block until each server's workers have heartbeated (the inventory marks it monitored): placeable."""
    from stratos_shared.bus.kv import TypedKV
    from stratos_shared.bus.names import SERVERS_BUCKET
    from stratos_shared.contracts.servers import ServerRecord

    deadline = asyncio.get_running_loop().time() + timeout_s
    async with connect(url) as (_, js):
        servers = TypedKV(await js.key_value(SERVERS_BUCKET), ServerRecord)
        while True:
            records = await servers.items()
            waiting = [s for s in server_ids if not (s in records and records[s].monitored)]
            if not waiting:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"no heartbeat from the workers of {', '.join(waiting)} within {timeout_s:.0f} s")
            await asyncio.sleep(0.2)
