"""How CLI commands reach the bus: URL from --nats, NATS_URL, or the running embedded stack."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nats
import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from opentelemetry.propagate import inject

from stratos_cli.stack import StackState
from stratos_shared.bus.infra import ensure_infrastructure
from stratos_shared.contracts.base import Event
from stratos_shared.errors import StratosError
from stratos_shared.settings import default_home, nats_tls_context


class StackUnreachable(StratosError):
    """The CLI could not reach NATS: says which URL it tried and how to start or point at a stack."""

    def __init__(self, url: str, problem: str) -> None:
        super().__init__(
            f"cannot reach NATS at {url} ({problem}); start the stack with `stratos up` (or `make up`), "
            "or point --nats / NATS_URL at a running one"
        )


class StackNotReady(StratosError):
    """`stratos up` started the processes, but the stack did not become ready in time."""


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


def cli_ca_file() -> str | None:
    """From STRATOS_NATS_CA, else the CA the running embedded stack was started with (`stratos up --tls-cert`)."""
    if os.environ.get("STRATOS_NATS_CA"):
        return os.environ["STRATOS_NATS_CA"]
    state = None if os.environ.get("NATS_URL") else StackState.load(home_dir())
    return state.nats_ca if state and state.nats_ca else None


@contextlib.asynccontextmanager
async def connect(url: str | None = None) -> AsyncIterator[tuple[Client, JetStreamContext]]:
    target = resolve_nats_url(url)
    user, password = cli_credentials()
    options: dict[str, Any] = {"user": user, "password": password} if user else {}
    if tls := nats_tls_context(cli_ca_file()):
        options["tls"] = tls

    if not any([await _listening(server) for server in target.split(",")]):
        raise StackUnreachable(target, "nothing listens there")

    async def quiet(_: Exception) -> None:  # nats.py logs every failed attempt with a traceback by default
        return None

    try:
        nc = await nats.connect(
            servers=target.split(","),
            connect_timeout=3,
            max_reconnect_attempts=2,
            allow_reconnect=False,
            error_cb=quiet,
            **options,
        )
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        raise StackUnreachable(
            target, type(exc).__name__ if not str(exc) else str(exc).removeprefix("nats: ")
        ) from None
    try:
        js = nc.jetstream()
        await ensure_infrastructure(js, replicas=int(os.environ.get("STRATOS_REPLICAS", "1")))
        yield nc, js
    finally:
        await nc.drain()


async def _listening(server: str) -> bool:
    """A one-second TCP probe: nats.connect spends seconds retrying a port nobody listens on."""
    parts = urlsplit(server.strip() if "://" in server else f"nats://{server.strip()}")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, parts.port or 4222), 1.0)
    except (OSError, TimeoutError, ValueError):
        return False
    writer.close()
    return True


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
                raise StackNotReady(f"no servers registered within {timeout_s:g} s: is the inventory running?")
            await asyncio.sleep(0.5)


async def wait_for_workers(url: str | None, server_ids: list[str], timeout_s: float = 120.0) -> None:
    """Block until each server is up and its workers have heartbeated since this call began: placeable now.

    Since the call, not ever: a stack restarted on its old store still holds the last run's records (monitored,
    and soon marked down by the inventory's reloaded deadlines), which say nothing about the workers of this run.
    """
    from stratos_shared.bus.kv import TypedKV
    from stratos_shared.bus.names import LIVENESS_BUCKET, SERVERS_BUCKET
    from stratos_shared.contracts.servers import ServerLiveness, ServerRecord

    started = time.time()
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with connect(url) as (_, js):
        servers = TypedKV(await js.key_value(SERVERS_BUCKET), ServerRecord)
        beats = TypedKV(await js.key_value(LIVENESS_BUCKET), ServerLiveness)
        while True:
            records, liveness = await servers.items(), await beats.items()
            waiting = [
                s
                for s in server_ids
                if not (s in records and records[s].monitored and records[s].status == "up")
                or s not in liveness
                or liveness[s].last_seen < started
            ]
            if not waiting:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise StackNotReady(f"no heartbeat from the workers of {', '.join(waiting)} within {timeout_s:g} s")
            await asyncio.sleep(0.2)
