"""Fencing by placement revision, with real processes: a paused server comes back after its job moved.

Two servers run a trainer and a deployer each (real processes, default heartbeat and fence timings). A
job trains on the first; every process of that server is paused with SIGSTOP. Nothing else is said: the
inventory declares the server down from its silence, the selector re-plans, the second server resumes
from the last checkpoint. Then the paused server is resumed with SIGCONT, its trainer still in the middle
of its run. It must notice that it was cut off, stop that run, publish nothing the ledger accepts, not
overwrite the new owner's checkpoints, and never start a second model server for the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from stratos_cli.client import wait_for_workers
from stratos_cli.stack import launch_server, service_env, signal_server, stop_pids
from stratos_shared.artifacts import NatsArtifactStore
from stratos_shared.bus.kv import TypedKV
from stratos_shared.bus.names import JOBS_BUCKET, LIVENESS_BUCKET, server_artifacts_bucket
from stratos_shared.contracts.events import JobSubmitted
from stratos_shared.contracts.servers import ServerLiveness
from stratos_shared.embedded import NatsServerProcess
from stratos_shared.jobs import JobState
from stratos_shared.teacher.simulator import ModelSpec, SimulatorConfig, running_simulator
from tests.faults.stack import poll, serving_pids, stop_serving
from tests.nats.services import running
from tests.nats.test_teacher_and_data import services
from tests.nats.test_trainer_scaleout import tiny_job

pytestmark = [pytest.mark.nats, pytest.mark.slow]  # ~75 s of real processes paused and resumed: STRATOS_FULL_TESTS=1

SERVERS = ["a10-us-central", "l4-us-west"]
STEPS, CHECKPOINT_EVERY = 300, 20
ENV = {
    "STRATOS_ACK_WAIT_S": "6",
    "STRATOS_EVAL_SAMPLES": "10",
    "STRATOS_MAX_NEW_TOKENS": "24",
    "STRATOS_PRESCREEN_ITEMS": "4",
    "STRATOS_SERVING_BACKEND": "cpu",
    "STRATOS_PROBE_REQUESTS": "2",
    "STRATOS_ACCURACY_SAMPLES": "4",
    "STRATOS_MAX_TOKENS": "24",
    "STRATOS_LOG_FORMAT": "text",
    "OMP_NUM_THREADS": "1",
}


@contextlib.contextmanager
def worker_servers(nats_server: NatsServerProcess, home: Path) -> Iterator[dict[str, int]]:
    env = service_env(home, nats_server.url, 1, ENV)
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    pids: dict[str, int] = {}
    for index, server in enumerate(SERVERS):
        pids |= launch_server(server, index, home, env)
    try:
        yield pids
    finally:
        for server in SERVERS:
            signal_server(home, server, signal.SIGCONT)  # a stopped process cannot handle SIGTERM
        stop_pids(pids)
        for pid in pids.values():
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        stop_serving(home)


@pytest.mark.timeout(600)
async def test_a_paused_server_resumed_after_its_job_moved_publishes_nothing_the_ledger_accepts(
    nats_server: NatsServerProcess, tmp_path: Path, nc: Client, collect
) -> None:
    events = await collect("stratos.evt.>")
    home = tmp_path / "home"
    config = SimulatorConfig(
        seed=5, models={"sim-strong": ModelSpec(accuracy={"math": 0.9}), "sim-weak": ModelSpec(accuracy={"math": 0.3})}
    )
    spec = None
    with running_simulator(config) as sim, worker_servers(nats_server, home):
        spec = tiny_job(sim.base_url)
        spec = spec.model_copy(
            update={
                "training": spec.training.model_copy(
                    update={"max_steps": STEPS, "checkpoint_every_steps": CHECKPOINT_EVERY}
                )
            }
        )
        async with running(*services(nats_server, tmp_path, require_workers=True)):
            await wait_for_workers(nats_server.url, SERVERS)
            job = JobSubmitted(job_id="fence-1", spec=spec)
            await nc.jetstream().publish(job.SUBJECT, job.to_bytes(), headers={"Nats-Msg-Id": job.event_id})

            def checkpointed(c: object) -> bool:
                return any(b.get("checkpoint_uri") for b in events.of_type("TrainingProgress"))

            await events.wait_for(checkpointed, timeout_s=240)
            first = events.of_type("ServerChosen")[0]["server"]["id"]
            other = next(s for s in SERVERS if s != first)
            paused = signal_server(home, first, signal.SIGSTOP)
            paused_at = len(events.messages)

            # Silence: the server is declared down, the job moves and resumes on the other server.
            await events.wait_for(lambda c: any(b["server_id"] == other for b in c.of_type("TrainingProgress")), 120)
            moved_at = len(events.messages)
            signal_server(home, first, signal.SIGCONT)
            await events.wait_for(lambda c: bool(c.of_type("JobCompleted") or c.of_type("JobFailed")), 300)

            liveness = TypedKV(await nc.jetstream().key_value(LIVENESS_BUCKET), ServerLiveness)

            async def resumed_server_works_on_nothing() -> bool:
                found = await liveness.get(first)
                beats = found[0].workers.values() if found else []
                return bool(beats) and all(not w.jobs for w in beats)  # beating again, and working on nothing

            await poll(resumed_server_works_on_nothing, 60, what=f"{first} beating again with no jobs")
            await asyncio.sleep(3.0)  # whatever the resumed server still had to say is out by now
            model_servers = serving_pids(home, "fence-1")
            jobs = TypedKV(await nc.jetstream().key_value(JOBS_BUCKET), JobState)
            found = await jobs.get("fence-1")
            # each server writes its own bucket: the new owner's pointer there, the paused one's checkpoints in its own
            store = NatsArtifactStore(nc.jetstream(), server_artifacts_bucket(other))
            latest = json.loads(await store.get_bytes(store.uri_for("fence-1", "checkpoints/latest.json")))
            first_bucket = await nc.jetstream().object_store(server_artifacts_bucket(first))
            checkpoints = [o.name for o in await first_bucket.list()]

    assert paused, "no process of the training server was found to pause"
    assert not events.of_type("JobFailed"), events.of_type("JobFailed")
    downs = [(b["server_id"], b["reason"]) for b in events.of_type("ServerDown")]
    assert downs == [(first, "heartbeat-timeout")]
    placements = [(b["revision"], b["server"]["id"]) for b in events.of_type("ServerChosen")]
    assert placements == [(1, first), (2, other)]

    after_resume = [b for b in events.bodies()[moved_at:] if b.get("server_id") == first]
    assert not [b for b in after_resume if b["event_type"] in ("ModelTrained", "ModelDeployed")], after_resume
    trained = events.of_type("ModelTrained")
    assert [(b["server_id"], b["revision"]) for b in trained] == [(other, 2)], trained
    assert trained[0]["resumed_from_step"] >= CHECKPOINT_EVERY and trained[0]["steps"] == STEPS
    deployed = events.of_type("ModelDeployed")
    assert [(b["server_id"], b["revision"]) for b in deployed] == [(other, 2)]
    assert len(model_servers) == 1, f"{len(model_servers)} model servers for the job"

    state = found[0] if found else None
    assert state is not None and state.status == "completed" and state.server_id == other
    assert state.results.dumped("deployment")["server_id"] == other
    # the newest checkpoint is the new owner's, and nothing of revision 1 was written after the pause
    assert latest["server_id"] == other and "/r2-step-" in latest["uri"]
    first_steps = [b["step"] for b in events.bodies()[:paused_at] if b.get("checkpoint_uri")]
    late = [c for c in checkpoints if "/r1-step-" in c and int(c.rsplit("-", 1)[1].split(".")[0]) > max(first_steps)]
    assert len(late) <= 1, f"the paused trainer kept checkpointing after it was cut off: {late}"
    trainer_log = "".join(p.read_text(errors="replace") for p in (home / "logs").glob(f"trainer@{first}*.log"))
    # it noticed the gap itself, then let the job go: the run stopped at its next step, or whatever it had in
    # flight across the pause failed, and the redelivered assignment was found stale (both end the same way)
    assert "fencing myself" in trainer_log, trainer_log[-3000:]
    assert "no longer this server's" in trainer_log or "is stale" in trainer_log, trainer_log[-3000:]
