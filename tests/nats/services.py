"""Running services in-process against a real nats-server (each with its own broker connection)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from stratos_shared.embedded import NatsServerProcess
from stratos_shared.service import ServiceRuntime


def common(nats_server: NatsServerProcess, tmp_path: Path) -> dict[str, object]:
    """Settings every in-process service gets. Most of these tests run no trainer or deployer, so the selector
    places on any catalog server that is up (`require_workers`); a test with workers turns it back on."""
    return {"nats_url": nats_server.url, "home": tmp_path / "home", "ack_wait_s": 5.0, "require_workers": False}


@contextlib.asynccontextmanager
async def running(*runtimes: ServiceRuntime) -> AsyncIterator[None]:
    started: list[ServiceRuntime] = []
    try:
        for runtime in runtimes:
            await runtime.start()
            started.append(runtime)
        yield
    finally:
        for runtime in reversed(started):
            await runtime.stop()
