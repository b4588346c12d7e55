"""`STRATOS_SERVING_PORTS`: model servers take a free port of the range a container publishes, never one outside."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from stratos_deployer.serving.process import ServingError, free_port_in
from stratos_deployer.settings import DeployerSettings


@pytest.fixture
def held_pair() -> Iterator[int]:
    """A port held by another listener whose next port is free: the first of a two-port range that is half taken."""
    for _ in range(50):
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                holder.close()
                continue
        holder.listen()
        yield port
        holder.close()
        return
    pytest.fail("no port with a free neighbour found")


def test_the_first_free_port_of_the_range_is_taken(held_pair: int) -> None:
    assert free_port_in("127.0.0.1", range(held_pair, held_pair + 2)) == held_pair + 1


def test_a_range_with_no_free_port_says_which_and_what_to_widen(held_pair: int) -> None:
    with pytest.raises(
        ServingError, match=f"no free port in {held_pair}-{held_pair} on 127.0.0.1.*STRATOS_SERVING_PORTS"
    ):
        free_port_in("127.0.0.1", range(held_pair, held_pair + 1))


def test_settings_read_the_range_and_refuse_a_backward_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATOS_SERVER_ID", "a10-us-central")
    monkeypatch.setenv("STRATOS_SERVING_PORTS", "8200-8209")
    assert DeployerSettings().serving_port_range() == range(8200, 8210)
    monkeypatch.setenv("STRATOS_SERVING_PORTS", "8209-8200")
    with pytest.raises(ValidationError, match="FIRST-LAST"):
        DeployerSettings()
    monkeypatch.delenv("STRATOS_SERVING_PORTS")
    assert DeployerSettings().serving_port_range() is None
