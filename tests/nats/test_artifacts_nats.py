"""The NATS Object Store artifact backend on a real server."""

from __future__ import annotations

import pytest
from nats.aio.client import Client

from stratos_shared.artifacts import NatsArtifactStore
from stratos_shared.errors import ArtifactError

pytestmark = pytest.mark.nats


async def test_object_store_round_trip_and_scoping(nc: Client) -> None:
    store = NatsArtifactStore(nc.jetstream())
    payload = bytes(range(256)) * 5000  # > 1 chunk
    uri = await store.put_bytes("job-1", "data/train.jsonl", payload)
    assert uri == "nats-obj://stratos-artifacts/job-1/data/train.jsonl"
    assert await store.get_bytes(uri) == payload
    assert await store.exists(uri)
    assert not await store.exists("nats-obj://stratos-artifacts/job-1/missing")
    with pytest.raises(ArtifactError):
        await store.get_bytes("nats-obj://stratos-artifacts/job-1/../job-2/x")
    with pytest.raises(ArtifactError):
        await store.get_bytes("nats-obj://other-bucket/job-1/x")
