"""The selector over a real nats-server: placement, rejection of bad input, re-planning on ServerDown."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml
from nats.aio.client import Client

from stratos_inventory.main import build as build_inventory
from stratos_inventory.settings import InventorySettings
from stratos_selector.main import build as build_selector
from stratos_selector.settings import SelectorSettings
from stratos_shared.bus.kv import TypedKV
from stratos_shared.bus.names import JOBS_BUCKET, SERVERS_BUCKET
from stratos_shared.contracts.events import JobSubmitted, ServerDownRequested, ServerUpRequested
from stratos_shared.contracts.job import JobSpec
from stratos_shared.contracts.servers import ServerRecord
from stratos_shared.jobs import JobState
from tests.nats.services import common, running

pytestmark = pytest.mark.nats

ROOT = Path(__file__).parents[2]


def spec(name: str = "math-small") -> JobSpec:
    return JobSpec.from_yaml(ROOT / "examples" / "math-alignment.yaml").model_copy(update={"name": name})


async def publish(nc: Client, subject: str, body: bytes, msg_id: str) -> None:
    await nc.jetstream().publish(subject, body, headers={"Nats-Msg-Id": msg_id})


def stack(nats_server, tmp_path):
    return (
        build_inventory(InventorySettings(**common(nats_server, tmp_path), catalog=ROOT / "examples" / "servers.yaml")),
        build_selector(SelectorSettings(**common(nats_server, tmp_path))),
    )


async def test_malformed_job_is_rejected_with_reason_and_next_job_is_served(nats_server, tmp_path, nc, collect) -> None:
    rejected = await collect("stratos.evt.job.rejected")
    chosen = await collect("stratos.evt.server.chosen")
    async with running(*stack(nats_server, tmp_path)):
        good = json.loads(JobSubmitted(job_id="bad-1", spec=spec()).to_bytes())
        good["spec"]["constraints"]["budget_usd"] = "lots"
        await publish(nc, JobSubmitted.SUBJECT, json.dumps(good).encode(), "m1")
        await publish(nc, JobSubmitted.SUBJECT, b"{not json", "m2")
        await publish(nc, JobSubmitted.SUBJECT, JobSubmitted(job_id="good-1", spec=spec()).to_bytes(), "m3")
        await chosen.wait_for(lambda c: len(c.messages) == 1)
        await rejected.wait_for(lambda c: len(c.messages) == 2)
        jobs = TypedKV(await nc.jetstream().key_value(JOBS_BUCKET), JobState)
        for _ in range(100):
            if await jobs.get("good-1"):
                break  # the ledger has folded everything before it
            await asyncio.sleep(0.05)
        state = await jobs.get("bad-1")
    first, second = rejected.bodies()
    assert first["job_id"] == "bad-1"
    assert "spec.constraints.budget_usd" in first["reason"]
    assert second["job_id"] is None and "not valid JSON" in second["reason"]
    assert chosen.bodies()[0]["job_id"] == "good-1"
    # an invalid payload is no submission: the ledger opens no entry for it (anyone could name any job id)
    assert state is None


async def test_infeasible_job_is_rejected_naming_the_binding_constraint(nats_server, tmp_path, nc, collect) -> None:
    rejected = await collect("stratos.evt.job.rejected")
    async with running(*stack(nats_server, tmp_path)):
        impossible = spec().model_copy(
            update={"constraints": spec().constraints.model_copy(update={"latency_slo_ms": 5.0})}
        )
        await publish(nc, JobSubmitted.SUBJECT, JobSubmitted(job_id="fast-1", spec=impossible).to_bytes(), "m1")
        await rejected.wait_for(lambda c: len(c.messages) == 1)
    reason = rejected.bodies()[0]["reason"]
    assert "latency" in reason.lower()


async def test_server_down_replans_only_the_affected_job(nats_server, tmp_path, nc, collect) -> None:
    chosen = await collect("stratos.evt.server.chosen")
    async with running(*stack(nats_server, tmp_path)):
        await publish(nc, JobSubmitted.SUBJECT, JobSubmitted(job_id="job-a", spec=spec("a")).to_bytes(), "a")
        await chosen.wait_for(lambda c: len(c.messages) == 1)
        # Job b cannot use job a's server: when a's server is full (capacity 2 = a + c), b goes elsewhere.
        await publish(nc, JobSubmitted.SUBJECT, JobSubmitted(job_id="job-b", spec=spec("b")).to_bytes(), "b")
        await publish(nc, JobSubmitted.SUBJECT, JobSubmitted(job_id="job-c", spec=spec("c")).to_bytes(), "c")
        await chosen.wait_for(lambda c: len(c.messages) == 3)
        placed = {b["job_id"]: b["server"]["id"] for b in chosen.bodies()}
        await publish(
            nc, ServerDownRequested.SUBJECT, ServerDownRequested(server_id=placed["job-a"]).to_bytes(), "down"
        )
        await chosen.wait_for(lambda c: any(b["revision"] == 2 for b in c.bodies()))
        await asyncio.sleep(1.0)  # no other job may move afterwards
    moved = [b for b in chosen.bodies() if b["revision"] == 2]
    victims = sorted(job for job, server in placed.items() if server == placed["job-a"])
    assert sorted(b["job_id"] for b in moved) == victims
    for body in moved:
        assert body["server"]["id"] != placed["job-a"]
        assert body["previous_server_id"] == placed["job-a"]
        assert "went down" in body["reason"]
    assert len(chosen.messages) == 3 + len(moved)
    # capacity is never exceeded
    servers: dict[str, list[str]] = {}
    final = {b["job_id"]: b["server"]["id"] for b in chosen.bodies()}
    for job, server in final.items():
        servers.setdefault(server, []).append(job)
    assert all(len(jobs) <= 2 for jobs in servers.values())


async def test_a_placement_whose_announcement_was_lost_is_announced_when_the_job_comes_again(
    nats_server, tmp_path, nc, collect
) -> None:
    """The selector records a placement, then publishes ServerChosen: killed in between, the redelivered
    JobSubmitted finds the placement and must send the announcement, not drop the job silently."""
    from stratos_selector.placements import JobPlacement, Placements, ServerLoad
    from stratos_shared.bus.names import PLACEMENTS_BUCKET
    from stratos_shared.contracts.events import ServerChosen

    chosen = await collect("stratos.evt.server.chosen")
    async with running(*stack(nats_server, tmp_path)):
        await publish(nc, JobSubmitted.SUBJECT, JobSubmitted(job_id="first", spec=spec()).to_bytes(), "m1")
        await chosen.wait_for(lambda c: len(c.messages) == 1)
        # what a selector killed after `record` and before the publish leaves behind for job "lost"
        announced = ServerChosen.model_validate(chosen.bodies()[0])
        lost = announced.model_copy(update={"job_id": "lost", "event_id": "server-chosen-lost-1"})
        kv = await nc.jetstream().key_value(PLACEMENTS_BUCKET)
        placements = Placements(TypedKV(kv, JobPlacement), TypedKV(kv, ServerLoad))
        await placements.record(
            JobPlacement(job_id="lost", server_id=lost.server.id, revision=1, announcement=lost.model_dump(mode="json"))
        )
        await publish(nc, JobSubmitted.SUBJECT, JobSubmitted(job_id="lost", spec=spec()).to_bytes(), "m2")
        await chosen.wait_for(lambda c: any(b["job_id"] == "lost" for b in c.bodies()))
        # and a plain redelivery of the first job's submission re-sends the same event id (JetStream drops it)
        await publish(nc, JobSubmitted.SUBJECT, JobSubmitted(job_id="first", spec=spec()).to_bytes(), "m3")
        await chosen.wait_for(lambda c: len(c.messages) == 3)
        stored = await nc.jetstream().stream_info("STRATOS_EVENTS", subjects_filter="stratos.evt.server.chosen")
    assert {(b["job_id"], b["event_id"]) for b in chosen.bodies()} == {
        ("first", announced.event_id),
        ("lost", "server-chosen-lost-1"),
    }
    assert stored.state.subjects == {"stratos.evt.server.chosen": 2}, "a duplicate announcement was stored"


async def test_a_job_goes_back_to_a_server_that_failed_it_once_it_is_up_rather_than_fail(
    nats_server, tmp_path, nc, collect
) -> None:
    """Outages are often transient: a server that failed the job and came back is a last resort, not banned.

    The job loses X, moves to Y; X comes back; every server but X goes down, Y last: the job must move
    back to X (before the fix it failed with "no other server fits").
    """
    chosen = await collect("stratos.evt.server.chosen")
    downs = await collect("stratos.evt.server.down")
    failed = await collect("stratos.evt.job.failed")
    servers = [s["id"] for s in yaml.safe_load((ROOT / "examples" / "servers.yaml").read_text())["servers"]]
    async with running(*stack(nats_server, tmp_path)):
        await publish(nc, JobSubmitted.SUBJECT, JobSubmitted(job_id="job-x", spec=spec()).to_bytes(), "x")
        await chosen.wait_for(lambda c: len(c.messages) == 1)
        first = chosen.bodies()[0]["server"]["id"]
        await publish(nc, ServerDownRequested.SUBJECT, ServerDownRequested(server_id=first).to_bytes(), "down-x")
        await chosen.wait_for(lambda c: len(c.messages) == 2)
        second = chosen.bodies()[1]["server"]["id"]
        await publish(nc, ServerUpRequested.SUBJECT, ServerUpRequested(server_id=first).to_bytes(), "up-x")
        await wait_status(nc, first, "up")
        others = [s for s in servers if s not in (first, second)]
        for server in others:
            await publish(nc, ServerDownRequested.SUBJECT, ServerDownRequested(server_id=server).to_bytes(), server)
        await downs.wait_for(lambda c: len(c.messages) == 1 + len(others))
        for server in others:
            await wait_status(nc, server, "down")
        await publish(nc, ServerDownRequested.SUBJECT, ServerDownRequested(server_id=second).to_bytes(), "down-y")
        await chosen.wait_for(lambda c: len(c.messages) == 3 or bool(failed.messages))
    assert not failed.messages, failed.bodies()
    third = chosen.bodies()[2]
    assert (third["revision"], third["server"]["id"], third["previous_server_id"]) == (3, first, second)


async def wait_status(nc: Client, server_id: str, status: str) -> None:
    """Until the inventory's record of the server says ``status`` (and the selector's watcher had a moment)."""
    servers = TypedKV(await nc.jetstream().key_value(SERVERS_BUCKET), ServerRecord)
    for _ in range(200):
        found = await servers.get(server_id)
        if found is not None and found[0].status == status:
            await asyncio.sleep(0.3)
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"server {server_id} never became {status}")
