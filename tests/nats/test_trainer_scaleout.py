"""Trainer scale-out over a real nats-server: two trainer processes of one server share its work.

Two jobs go through the real upstream stages (inventory, selector, teacher-eval
and data-synth in-process, against the teacher simulator); two
``python -m stratos_trainer`` processes on one server (the only one with workers,
so both jobs are placed there) share that server's durable consumer, each take
one job's TrainingAssigned and train at the same time. One trainer is then SIGKILLed mid-training: it stops
extending its lease, JetStream redelivers its job, and the surviving trainer
resumes it from the last uploaded checkpoint once its own job is done. Each
job ends with exactly one ModelTrained.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from stratos_cli.client import wait_for_workers
from stratos_cli.stack import launch_service, service_env, stop_pids
from stratos_shared.bus.infra import ensure_server_buckets
from stratos_shared.contracts.events import JobSubmitted
from stratos_shared.contracts.job import EscalationSpec, JobSpec
from stratos_shared.embedded import NatsServerProcess
from stratos_shared.teacher.simulator import ModelSpec, SimulatorConfig, running_simulator
from tests.nats.services import running
from tests.nats.test_teacher_and_data import services
from tests.variation import THREADS

pytestmark = [pytest.mark.nats, pytest.mark.slow]
"""~25-40 s: STRATOS_FULL_TESTS=1. `tests/nats/test_escalation.py` runs in every `make test` with the same two
trainer processes on one server, two jobs at once, and a trainer SIGKILLed mid-attempt whose work the other resumes."""
ROOT = Path(__file__).parents[2]

STEPS, CHECKPOINT_EVERY = 32, 8
JOBS = ("scale-a", "scale-b")
TRAINER_ENV = {
    "STRATOS_ACK_WAIT_S": "6",  # a killed trainer's job is back on the queue within 6 s
    "STRATOS_EVAL_SAMPLES": "10",
    "STRATOS_MAX_NEW_TOKENS": "48",
    "STRATOS_PRESCREEN_ITEMS": "4",
    "OMP_NUM_THREADS": THREADS,
    "STRATOS_SERVER_ID": "a10-us-central",
}
SERVER = TRAINER_ENV["STRATOS_SERVER_ID"]


def tiny_job(teacher_url: str) -> JobSpec:
    """A few seconds of training per job: tiny-1m, packed batches of 2 x 512 tokens, a checkpoint every 8 steps."""
    spec = JobSpec.from_yaml(ROOT / "examples" / "math-alignment.yaml")
    return spec.model_copy(
        update={
            "teachers": [t.model_copy(update={"base_url": teacher_url, "api_key_ref": None}) for t in spec.teachers],
            "students": spec.students[:1],
            "escalation": EscalationSpec(max_attempts=1),  # one attempt: not what this test is about
            "task": spec.task.model_copy(update={"size": 200}),
            "training": spec.training.model_copy(
                update={"max_steps": STEPS, "batch_size": 2, "checkpoint_every_steps": CHECKPOINT_EVERY}
            ),
            "distillation": spec.distillation.model_copy(update={"eval_samples": 20, "min_dataset_size": 20}),
        }
    )


@contextlib.contextmanager
def trainers(
    nats_server: NatsServerProcess, home: Path, count: int, extra_env: dict[str, str] | None = None
) -> Iterator[list[int]]:
    """`count` trainer processes (logs in `<home>/logs/trainer[-n].log`); SIGTERM whatever is left afterwards."""
    (home / "logs").mkdir(parents=True, exist_ok=True)
    env = service_env(home, nats_server.url, 1, TRAINER_ENV | (extra_env or {}))
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    pids = [launch_service("trainer", home, env, replica=i) for i in range(count)]
    try:
        yield pids
    finally:
        stop_pids({f"trainer-{i}": pid for i, pid in enumerate(pids)})
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


async def wait_for_logs(phrase: str, files: list[Path], timeout_s: float = 180) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not all(phrase in _read(f) for f in files):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{phrase!r} not in every one of {files} within {timeout_s} s")
        await asyncio.sleep(0.2)


def log_file(home: Path, replica: int) -> Path:
    return home / "logs" / (f"trainer-{replica}.log" if replica else "trainer.log")


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def by_job(bodies: list[dict[str, Any]], job_id: str) -> list[dict[str, Any]]:
    return [b for b in bodies if b["job_id"] == job_id]


def span(bodies: list[dict[str, Any]]) -> tuple[datetime, datetime]:
    times = [datetime.fromisoformat(b["occurred_at"]) for b in bodies]
    return min(times), max(times)


@pytest.mark.timeout(600)
async def test_two_trainers_take_two_jobs_at_once_and_a_killed_trainers_job_completes_on_the_other(
    nats_server, tmp_path: Path, nc: Client, collect
) -> None:
    progress = await collect("stratos.evt.training.progress")
    trained = await collect("stratos.evt.model.trained")
    failed = await collect("stratos.evt.job.failed")
    home = tmp_path / "home"
    config = SimulatorConfig(
        seed=5, models={"sim-strong": ModelSpec(accuracy={"math": 0.9}), "sim-weak": ModelSpec(accuracy={"math": 0.3})}
    )
    # the inventory makes a catalog server's buckets; these trainers start before it does
    await ensure_server_buckets(nc.jetstream(), SERVER)
    with running_simulator(config) as sim, trainers(nats_server, home, 2) as pids:
        names = {f"{socket.gethostname()}:{pid}": pid for pid in pids}
        # both trainers must be pulling before the jobs arrive, or the first one up could take both in turn
        await wait_for_logs("trainer started", [log_file(home, i) for i in range(len(pids))])
        async with running(*services(nats_server, tmp_path, require_workers=True)):
            await wait_for_workers(nats_server.url, [SERVER])
            for job_id in JOBS:
                event = JobSubmitted(job_id=job_id, spec=tiny_job(sim.base_url))
                await nc.jetstream().publish(event.SUBJECT, event.to_bytes(), headers={"Nats-Msg-Id": event.event_id})

            def both_training_with_a_checkpoint(c: Any) -> bool:
                """Each job has reported twice (a time span to compare), from its own trainer; one has a checkpoint."""
                reports = {job: by_job(c.bodies(), job) for job in JOBS}
                owners = [{b["trainer"] for b in r} for r in reports.values()]
                return (
                    all(len(r) >= 2 for r in reports.values())
                    and all(len(o) == 1 for o in owners)
                    and owners[0] != owners[1]
                    and any(b.get("checkpoint_uri") for b in c.bodies())
                )

            await progress.wait_for(both_training_with_a_checkpoint, timeout_s=240)
            first_checkpoint = next(b for b in progress.bodies() if b.get("checkpoint_uri"))
            victim_job, victim = first_checkpoint["job_id"], first_checkpoint["trainer"]
            other_job = next(j for j in JOBS if j != victim_job)
            assert not by_job(trained.bodies(), victim_job), "the victim's job finished before the kill"
            os.kill(names[victim], signal.SIGKILL)
            killed_at = len(progress.messages)

            await trained.wait_for(lambda c: {b["job_id"] for b in c.bodies()} == set(JOBS), timeout_s=300)
            await asyncio.sleep(2.0)  # a second ModelTrained for either job would show up by now

    assert not failed.messages, failed.bodies()
    survivor = next(name for name in names if name != victim)
    before_kill, after_kill = progress.bodies()[:killed_at], progress.bodies()[killed_at:]

    # Scale-out: one job per trainer process, training at the same time.
    assert {b["trainer"] for b in by_job(before_kill, victim_job)} == {victim}
    assert {b["trainer"] for b in by_job(progress.bodies(), other_job)} == {survivor}, "a job trained on two trainers"
    (start_v, end_v), (start_o, end_o) = span(by_job(before_kill, victim_job)), span(by_job(before_kill, other_job))
    assert max(start_v, start_o) < min(end_v, end_o), "the two trainings did not overlap in time"

    # Exactly one ModelTrained per job; the killed trainer's job finished on the survivor, from its checkpoint.
    assert sorted(b["job_id"] for b in trained.bodies()) == sorted(JOBS), trained.bodies()
    assert {b["server_id"] for b in [*progress.bodies(), *trained.bodies()]} == {SERVER}
    resumed = by_job(trained.bodies(), victim_job)[0]
    own = by_job(trained.bodies(), other_job)[0]
    assert resumed["trainer"] == survivor and own["trainer"] == survivor
    assert own["resumed_from_step"] == 0 and own["steps"] == STEPS
    # the victim may have uploaded one more checkpoint than it announced before it died: at least the announced one
    victim_checkpoints = [b["step"] for b in by_job(before_kill, victim_job) if b.get("checkpoint_uri")]
    assert resumed["resumed_from_step"] >= max(victim_checkpoints) > 0, (resumed, victim_checkpoints)
    assert resumed["resumed_from_step"] % CHECKPOINT_EVERY == 0
    assert resumed["steps"] == STEPS
    resumed_steps = [b["step"] for b in by_job(after_kill, victim_job) if b["trainer"] == survivor]
    assert resumed_steps and min(resumed_steps) > resumed["resumed_from_step"], "the step count restarted"
    assert "resumes from step" in _read(log_file(home, pids.index(names[survivor])))
