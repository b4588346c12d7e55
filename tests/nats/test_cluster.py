"""A 3-node JetStream cluster from the wheel (what `stratos up --cluster 3` runs): R3 streams and KV survive a node."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest

from stratos_shared.bus.infra import ensure_infrastructure
from stratos_shared.bus.kv import TypedKV
from stratos_shared.bus.names import EVENTS_STREAM, JOBS_BUCKET
from stratos_shared.contracts.events import JobCancelRequested
from stratos_shared.embedded import start_cluster
from stratos_shared.jobs import JobState

pytestmark = pytest.mark.nats


async def connect_when_ready(urls: list[str], replicas: int = 3) -> nats.NATS:
    """Clusters elect a JetStream meta leader after start-up: retry creating the R3 assets until it exists."""
    nc = await nats.connect(servers=urls, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    for _ in range(100):
        try:
            await ensure_infrastructure(nc.jetstream(timeout=2), replicas=replicas)
            return nc
        except Exception:
            await asyncio.sleep(0.3)
    raise AssertionError("the cluster never accepted replicated streams")


@pytest.mark.timeout(120)
async def test_replicated_stream_and_kv_survive_losing_a_node(tmp_path: Path) -> None:
    nodes = start_cluster(tmp_path, size=3)
    try:
        nc = await connect_when_ready([n.url for n in nodes])
        js = nc.jetstream(timeout=5)
        info = await js.stream_info(EVENTS_STREAM)
        assert info.config.num_replicas == 3
        # a client started without STRATOS_REPLICAS (the CLI) ensures the same assets at R1: nothing shrinks
        await ensure_infrastructure(js, replicas=1)
        assert (await js.stream_info(EVENTS_STREAM)).config.num_replicas == 3
        assert (await js.stream_info(f"KV_{JOBS_BUCKET}")).config.num_replicas == 3
        jobs = TypedKV(await js.key_value(JOBS_BUCKET), JobState)
        await jobs.put("job-1", JobState(job_id="job-1", name="before"))
        for i in range(10):
            event = JobCancelRequested(job_id=f"job-{i}")
            await js.publish(event.SUBJECT, event.to_bytes(), headers={"Nats-Msg-Id": event.event_id})

        nodes[0].stop(kill=True)  # lose a node: the other two keep a quorum
        for _ in range(50):
            try:
                event = JobCancelRequested(job_id="after-loss")
                await js.publish(event.SUBJECT, event.to_bytes(), headers={"Nats-Msg-Id": event.event_id})
                break
            except Exception:
                await asyncio.sleep(0.3)
        messages, found = 0, None
        for _ in range(50):  # a new stream/KV leader may still be settling: read until both answer
            try:
                messages = (await js.stream_info(EVENTS_STREAM)).state.messages
                found = await jobs.get("job-1")
            except Exception:
                messages, found = 0, None
            if messages == 11 and found is not None:
                break
            await asyncio.sleep(0.3)
        assert messages == 11
        assert found is not None and found[0].name == "before"
        await nc.close()
    finally:
        for node in nodes:
            node.stop(kill=True)
