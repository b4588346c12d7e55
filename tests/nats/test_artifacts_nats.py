"""The NATS Object Store artifact backend on a real server."""

from __future__ import annotations

import pytest
from nats.aio.client import Client

from stratos_shared.artifacts import NatsArtifactStore
from stratos_shared.bus.infra import ensure_server_buckets
from stratos_shared.bus.names import server_artifacts_bucket, server_keys_bucket
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


async def test_a_store_writes_its_bucket_and_reads_shared_ones_but_never_anothers_keys(nc: Client) -> None:
    """A server's store writes its own bucket and reads the control plane's and other servers' by URI; a key bucket
    is read only by its own store (no URI from an event or report can make a reader fetch a key), and the longest
    server id still makes valid bucket and stream names."""
    longest = "s" + "-" * 126 + "z"  # a server id is at most 128 characters
    js = nc.jetstream()
    for server_id in ("a10", longest):
        await ensure_server_buckets(js, server_id)
    control = NatsArtifactStore(js)
    data = await control.put_bytes("job-1", "task/data.jsonl", b"admitted")
    mine = NatsArtifactStore(js, server_artifacts_bucket(longest))
    model = await NatsArtifactStore(js, server_artifacts_bucket("a10")).put_bytes("job-1", "model/full.tar.gz", b"m")
    key = await mine.in_bucket(server_keys_bucket(longest)).put_bytes("job-1", "deployment/r1-api-key", b"k")
    own = await mine.put_bytes("job-1", "checkpoints/latest.json", b"{}")
    assert own.startswith(f"nats-obj://{server_artifacts_bucket(longest)}/")
    assert (await mine.get_bytes(data), await mine.get_bytes(model), await control.get_bytes(own)) == (
        b"admitted",
        b"m",
        b"{}",
    )
    for reader in (mine, control):
        with pytest.raises(ArtifactError, match="may read"):
            await reader.get_bytes(key)
    assert await NatsArtifactStore(js, server_keys_bucket(longest)).get_bytes(key) == b"k"
    assert not await mine.exists(f"nats-obj://{server_artifacts_bucket('never-made')}/job-1/x")
