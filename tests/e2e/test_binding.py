"""Placement decides where work runs: six jobs over three servers, each trained and served where it was placed.

The four control services and three servers' workers (a trainer and a deployer each, on 127.0.0.2-4) run
as separate processes. Every TrainingProgress, ModelTrained and ModelDeployed of every job must come from a
worker of the server the job was placed on, and its endpoint must be at that server's advertised address.
"""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlparse

import pytest
from nats.aio.client import Client

from stratos_cli.client import wait_for_workers, wait_until_ready
from stratos_cli.stack import advertise_host, choose_servers
from stratos_inventory.sources.catalog import load_catalog
from stratos_shared.contracts.events import JobSubmitted
from stratos_shared.teacher.simulator import running_simulator
from tests.e2e.stack import CATALOG, service_processes
from tests.faults.matrix import ENV, simulator_config, tiny_job

pytestmark = [pytest.mark.nats, pytest.mark.slow]
"""~85 s on two cores: STRATOS_FULL_TESTS=1. Every run still checks that a job trains and serves only where it is
placed: `tests/e2e/test_pipeline.py` (one job, across processes, moved by a server's death) and
`tests/nats/test_escalation.py` (two jobs sharing one server's two trainers)."""

JOBS = [f"bind-{i}" for i in range(6)]
SERVERS = choose_servers([s.id for s in load_catalog(CATALOG)], 3)


@pytest.mark.timeout(900)
async def test_six_jobs_over_three_servers_run_only_on_their_placed_server(
    nats_server, tmp_path: Path, nc: Client, collect
) -> None:
    events = await collect("stratos.evt.>")
    home = tmp_path / "home"
    with (
        running_simulator(simulator_config(JOBS)) as sim,
        service_processes(nats_server, home, ENV, servers=len(SERVERS)) as pids,
    ):
        await wait_until_ready(nats_server.url)
        await wait_for_workers(nats_server.url, SERVERS)
        for seed, job_id in enumerate(JOBS, start=31):
            event = JobSubmitted(job_id=job_id, spec=tiny_job(job_id, sim.base_url, seed))
            await nc.jetstream().publish(event.SUBJECT, event.to_bytes(), headers={"Nats-Msg-Id": event.event_id})

        def all_finished(c: object) -> bool:
            done = {b["job_id"] for b in events.of_type("JobCompleted") + events.of_type("JobFailed")}
            return done == set(JOBS)

        await events.wait_for(all_finished, timeout_s=800)

    host = socket.gethostname()
    trainers = {s: {f"{host}:{pid}" for name, pid in pids.items() if name.startswith(f"trainer@{s}")} for s in SERVERS}
    assert not events.of_type("JobFailed"), events.of_type("JobFailed")
    placed = {b["job_id"]: b["server"]["id"] for b in events.of_type("ServerChosen")}
    assert set(placed) == set(JOBS) and set(placed.values()) <= set(SERVERS)
    assert len(set(placed.values())) >= 2, f"all six jobs on one server says nothing about routing: {placed}"
    misplaced: list[str] = []
    for body in events.bodies():
        kind, job = body.get("event_type"), body.get("job_id")
        if kind not in ("TrainingProgress", "ModelTrained", "ModelDeployed"):
            continue
        server = placed[job]
        if body["server_id"] != server:
            misplaced.append(f"{kind} of {job} from {body['server_id']}, placed on {server}")
        if kind != "ModelDeployed" and body.get("trainer") not in trainers[server]:
            misplaced.append(f"{kind} of {job} from trainer {body.get('trainer')}, not one of {server}'s")
        if kind == "ModelDeployed" and urlparse(body["endpoint"]).hostname != advertise_host(SERVERS.index(server)):
            misplaced.append(f"{job} served at {body['endpoint']}, not at {server}'s address")
    assert not misplaced, misplaced
    per_job = {job: [b["event_type"] for b in events.bodies() if b.get("job_id") == job] for job in JOBS}
    assert all(t.count("ModelTrained") == 1 and t.count("ModelDeployed") == 1 for t in per_job.values()), per_job
