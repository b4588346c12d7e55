"""What the selector does when every suitable server slot is taken: it rejects the job naming capacity (it does
not queue), never over-books a server, and places again as soon as a cancelled job gives its slot back (a
completed job keeps its slot: its deployment serves there)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from stratos_inventory.main import build as build_inventory
from stratos_inventory.settings import InventorySettings
from stratos_selector.domain import load_catalog_yaml
from stratos_selector.main import build as build_selector
from stratos_selector.settings import SelectorSettings
from stratos_shared.bus.names import PLACEMENTS_BUCKET
from stratos_shared.contracts.events import JobCancelRequested, JobSubmitted
from stratos_shared.contracts.job import JobSpec
from tests.load.harness import CapacityWatch, wait_for_inventory
from tests.nats.services import common, running

pytestmark = pytest.mark.nats
ROOT = Path(__file__).parents[2]
CATALOG = ROOT / "examples" / "servers.yaml"


@pytest.mark.timeout(120)
async def test_full_servers_mean_rejection_naming_capacity_then_a_released_slot_is_reused(
    nats_server, tmp_path, nc, collect
) -> None:
    servers = load_catalog_yaml(CATALOG)
    spec = JobSpec.from_yaml(ROOT / "examples" / "math-alignment.yaml")
    # Every server within the spec's latency SLO suits this job (tiny students fit any of them).
    slots = sum(s.capacity for s in servers if s.latency_ms <= spec.constraints.latency_slo_ms)
    jobs = slots + 8
    chosen = await collect("stratos.evt.server.chosen")
    rejected = await collect("stratos.evt.job.rejected")
    watch = CapacityWatch({s.id: s.capacity for s in servers})
    js = nc.jetstream()
    watcher = await (await js.key_value(PLACEMENTS_BUCKET)).watch("server.>")

    async def follow() -> None:
        async for entry in watcher:
            if entry is not None:
                watch.see(entry.key, entry.value)

    follower = asyncio.ensure_future(follow())
    base = common(nats_server, tmp_path)
    try:
        async with running(
            build_inventory(InventorySettings(**base, catalog=CATALOG)), build_selector(SelectorSettings(**base))
        ):
            await wait_for_inventory(nats_server.url, len(servers))
            submitted = [JobSubmitted(job_id=f"cap-{i:02d}", spec=spec) for i in range(jobs)]
            await asyncio.gather(
                *(js.publish(e.SUBJECT, e.to_bytes(), headers={"Nats-Msg-Id": e.event_id}) for e in submitted)
            )
            await chosen.wait_for(lambda c: len(c.messages) + len(rejected.messages) >= jobs, timeout_s=60)

            # A cancelled job gives its slot back; the next job is placed on that server.
            first = chosen.bodies()[0]
            cancel = JobCancelRequested(job_id=first["job_id"])
            await js.publish(cancel.SUBJECT, cancel.to_bytes(), headers={"Nats-Msg-Id": cancel.event_id})
            assert len(chosen.messages) == slots
            server = first["server"]["id"]
            for _ in range(100):  # the selector's release of the slot, seen by the watcher
                if watch.current.get(server, 0) < watch.capacity[server]:
                    break
                await asyncio.sleep(0.1)
            late = JobSubmitted(job_id="cap-late", spec=spec)
            await js.publish(late.SUBJECT, late.to_bytes(), headers={"Nats-Msg-Id": late.event_id})
            await chosen.wait_for(lambda c: len(c.messages) == slots + 1, timeout_s=30)
            await asyncio.sleep(0.3)  # the watcher sees the last claim
    finally:
        follower.cancel()
        await watcher.stop()

    placed = chosen.bodies()
    assert len(placed) == slots + 1 and len(rejected.messages) == jobs - slots
    for body in rejected.bodies():
        assert "at capacity" in body["reason"], body["reason"]
    assert watch.over == set() and watch.max_load == max(s.capacity for s in servers)
    assert placed[-1]["job_id"] == "cap-late" and placed[-1]["server"]["id"] == server
