"""A region outage re-planned in batches over a real nats-server: every ServerDown of the region published at once,
more jobs on the lost servers than free slots elsewhere. No server ever holds more jobs than its capacity, each job
ends with exactly one new placement or a JobFailed saying why, and the same ServerDowns delivered again change
nothing."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
import yaml
from nats.aio.client import Client

from stratos_inventory.main import build as build_inventory
from stratos_inventory.settings import InventorySettings
from stratos_selector.main import build as build_selector
from stratos_selector.placements import ServerLoad
from stratos_selector.settings import SelectorSettings
from stratos_shared.bus.kv import TypedKV
from stratos_shared.bus.names import PLACEMENTS_BUCKET
from stratos_shared.contracts.events import JobSubmitted, ServerDown
from stratos_shared.contracts.job import JobSpec
from tests.nats.services import common, running

pytestmark = pytest.mark.nats

ROOT = Path(__file__).parents[2]
JOBS = 8


def server(server_id: str, region: str, cost: float, latency: float, capacity: int) -> dict[str, object]:
    return {"id": server_id, "gpu_model": "A100-80G", "gpu_count": 1, "gpu_memory_gb": 80, "cost_per_hour": cost,
            "region": region, "latency_ms": latency, "capacity": capacity}  # fmt: skip


# "big" beats every other server on cost and latency, so all the jobs go there first; the rest of its region
# ("near-*") goes down with it; the other region has 5 slots for 8 jobs.
LOST = {"big": server("big", "us-east", 0.3, 10, JOBS), "near-1": server("near-1", "us-east", 0.5, 20, 2),
        "near-2": server("near-2", "us-east", 0.5, 22, 2)}  # fmt: skip
SPARE = {f"spare-{i}": server(f"spare-{i}", "us-west", 1.0 + i / 10, 50 + i, 1) for i in range(3)}
SPARE["spare-wide"] = server("spare-wide", "us-west", 1.5, 60, 2)


async def publish_downs(nc: Client, key: str) -> None:
    """A ServerDown for every lost server, all at once (`key` makes a second round a new delivery)."""
    js = nc.jetstream()
    downs = [ServerDown(event_id=f"down-{s}", server_id=s, reason="region outage") for s in LOST]
    await asyncio.gather(
        *(js.publish(ServerDown.SUBJECT, d.to_bytes(), headers={"Nats-Msg-Id": f"{key}-{d.server_id}"}) for d in downs)
    )


async def loads(nc: Client) -> dict[str, list[str]]:
    kv = TypedKV(await nc.jetstream().key_value(PLACEMENTS_BUCKET), ServerLoad)
    return {key.removeprefix("server."): load.jobs for key, load in (await kv.items(prefix="server.")).items()}


async def test_a_region_outage_moves_each_job_once_within_capacity_or_fails_it_with_a_reason(
    nats_server, tmp_path, nc, collect
) -> None:
    catalog = tmp_path / "servers.yaml"
    catalog.write_text(yaml.safe_dump({"servers": [*LOST.values(), *SPARE.values()]}))
    spec = JobSpec.from_yaml(ROOT / "examples" / "math-alignment.yaml")
    chosen, failed = await collect("stratos.evt.server.chosen"), await collect("stratos.evt.job.failed")
    settings = common(nats_server, tmp_path)
    async with running(
        build_inventory(InventorySettings(**settings, catalog=catalog)), build_selector(SelectorSettings(**settings))
    ):
        for i in range(JOBS):
            event = JobSubmitted(job_id=f"job-{i}", spec=spec.model_copy(update={"name": f"job-{i}"}))
            await nc.jetstream().publish(JobSubmitted.SUBJECT, event.to_bytes(), headers={"Nats-Msg-Id": f"s{i}"})
        await chosen.wait_for(lambda c: len(c.messages) == JOBS)
        assert {b["server"]["id"] for b in chosen.bodies()} == {"big"}
        await publish_downs(nc, "outage")
        await chosen.wait_for(lambda c: sum(b["revision"] > 1 for b in c.bodies()) + len(failed.messages) >= JOBS)
        await asyncio.sleep(1.5)  # anything still to come (a job moved twice) has come
        after_outage = (len(chosen.messages), len(failed.messages), await loads(nc))
        await publish_downs(nc, "again")  # the same ServerDowns, delivered again
        await asyncio.sleep(2.0)
        after_again = (len(chosen.messages), len(failed.messages), await loads(nc))
    assert after_again == after_outage, "a ServerDown delivered again changed something"
    latest: dict[str, dict[str, object]] = {}
    for body in chosen.bodies():
        if body["revision"] > latest.get(body["job_id"], {"revision": 0})["revision"]:  # type: ignore[operator]
            latest[body["job_id"]] = body
    # one announcement per job and revision, one failure per failed job
    assert Counter((b["job_id"], b["revision"]) for b in chosen.bodies()).most_common(1)[0][1] == 1
    gone = {b["job_id"] for b in failed.bodies()}
    assert len(gone) == len(failed.messages) == JOBS - sum(s["capacity"] for s in SPARE.values())  # type: ignore[misc]
    for body in failed.bodies():
        assert "went down and no other server fits" in body["reason"] and "capacity" in body["reason"]
    placed = {job: body["server"]["id"] for job, body in latest.items() if job not in gone}  # type: ignore[index]
    assert set(placed) | gone == {f"job-{i}" for i in range(JOBS)} and not set(placed) & gone
    assert set(placed.values()) <= set(SPARE)
    final = after_outage[2]
    for server_id, jobs in final.items():
        assert len(jobs) <= (LOST | SPARE)[server_id]["capacity"], f"{server_id} over capacity: {jobs}"  # type: ignore[operator]
    assert not any(final.get(s) for s in LOST), "a lost server still holds a job"
    assert {job: s for s, jobs in final.items() for job in jobs} == placed


async def test_two_planners_claiming_many_jobs_at_once_never_overbook_a_server(nc) -> None:
    """The compare-and-set of a batch claim: two selectors whose copies of the loads are equally stale claim two
    slots each on a server with three; one wins both, the other only the slot left, and each knows which."""
    from nats.js.api import KeyValueConfig

    from stratos_selector.placements import JobPlacement, Placements

    kv = await nc.jetstream().create_key_value(KeyValueConfig(bucket="placements-race", history=1))
    first, second = (Placements(TypedKV(kv, JobPlacement), TypedKV(kv, ServerLoad)) for _ in range(2))
    await first.follow_loads()
    await second.follow_loads()  # both copies say: nothing placed yet
    won = await asyncio.gather(first.claim("s", ["a1", "a2"], 3), second.claim("s", ["b1", "b2"], 3))
    stored = (await TypedKV(kv, ServerLoad).get("server.s"))[0].jobs  # type: ignore[index]
    assert len(stored) == 3 and set(stored) == won[0] | won[1]
    assert sorted(len(w) for w in won) == [1, 2]
    assert await first.claim("s", ["a3"], 3) == set(), "a full server took one more job"
