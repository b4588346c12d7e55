"""Teacher choice and data synthesis over a real nats-server, against the teacher simulator."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import datasets
import pytest
from nats.aio.client import Client

from stratos_data_synth.main import build as build_data_synth
from stratos_data_synth.settings import DataSynthSettings
from stratos_inventory.main import build as build_inventory
from stratos_inventory.settings import InventorySettings
from stratos_selector.main import build as build_selector
from stratos_selector.settings import SelectorSettings
from stratos_shared.artifacts import NatsArtifactStore, get_file
from stratos_shared.bus.names import SPECS_BUCKET
from stratos_shared.contracts.events import JobSubmitted
from stratos_shared.contracts.job import JobSpec
from stratos_shared.jobcontext import split_task, task_for
from stratos_shared.layout import Artifact
from stratos_shared.tasks import Example
from stratos_shared.teacher.simulator import ModelSpec, RunningSimulator, SimulatorConfig, running_simulator
from stratos_teacher_eval.main import build as build_teacher_eval
from stratos_teacher_eval.settings import TeacherEvalSettings
from tests.nats.services import common, running

pytestmark = pytest.mark.nats
ROOT = Path(__file__).parents[2]


@pytest.fixture
def simulator() -> Iterator[RunningSimulator]:
    config = SimulatorConfig(
        seed=3,
        models={
            "sim-strong": ModelSpec(accuracy={"math": 0.9, "custom-rules": 0.15}, sloppy_rate=0.2),
            "sim-weak": ModelSpec(accuracy={"math": 0.1, "custom-rules": 0.05}, sloppy_rate=0.2),
        },
    )
    with running_simulator(config) as sim:
        yield sim


def job(example: str, sim: RunningSimulator, size: int = 150) -> JobSpec:
    spec = JobSpec.from_yaml(ROOT / "examples" / example)
    teachers = [t.model_copy(update={"base_url": sim.base_url, "api_key_ref": None}) for t in spec.teachers]
    return spec.model_copy(
        update={
            "teachers": teachers,
            "task": spec.task.model_copy(update={"size": size}),
            "distillation": spec.distillation.model_copy(update={"eval_samples": 30, "min_dataset_size": 20}),
        }
    )


def services(nats_server, tmp_path, require_workers: bool = False):
    """The upstream stages in-process. Without workers in the test, jobs are placed on any catalog server
    (`require_workers=False`); a test that runs trainers needs its jobs on their server."""
    base = common(nats_server, tmp_path)
    return (
        build_inventory(InventorySettings(**base, catalog=ROOT / "examples" / "servers.yaml")),
        build_selector(SelectorSettings(**base | {"require_workers": require_workers})),
        build_teacher_eval(TeacherEvalSettings(**base)),
        build_data_synth(DataSynthSettings(**base, progress_every=20)),
    )


async def submit(nc: Client, job_id: str, spec: JobSpec) -> None:
    event = JobSubmitted(job_id=job_id, spec=spec)
    await nc.jetstream().publish(event.SUBJECT, event.to_bytes(), headers={"Nats-Msg-Id": event.event_id})


async def test_strong_teacher_means_alignment_and_every_kept_trace_is_correct(
    nats_server, tmp_path, nc, collect, simulator
) -> None:
    teacher = await collect("stratos.evt.teacher.chosen")
    ready = await collect("stratos.evt.data.ready")
    progress = await collect("stratos.evt.data.progress")
    spec = job("math-alignment.yaml", simulator)
    async with running(*services(nats_server, tmp_path)):
        await submit(nc, "math-1", spec)
        await ready.wait_for(lambda c: len(c.messages) == 1, timeout_s=60)
    chosen = teacher.bodies()[0]
    scores = {s["name"]: s for s in chosen["scores"]}
    assert chosen["teacher"] == "strong" and chosen["mode"] == "alignment"
    assert scores["strong"]["accuracy"] > 0.7 > 0.3 > scores["weak"]["accuracy"]
    held_out = split_task(task_for(spec.task), spec.task).eval
    assert len(chosen["sample_ids"]) == min(30, len(held_out))
    assert set(chosen["sample_ids"]) <= {e.id for e in held_out}

    data = ready.bodies()[0]
    assert data["mode"] == "alignment"
    # k=2 samples per question from a 90% teacher: about 90% pass the grader
    assert 0.8 <= data["acceptance_rate"] <= 0.97, data
    assert progress.messages, "no DataProgress while synthesising"

    store = NatsArtifactStore(nc.jetstream())
    train_path = await get_file(store, data["train_uri"], tmp_path / "train.jsonl")
    eval_path = await get_file(store, data["eval_uri"], tmp_path / "eval.jsonl")
    train = datasets.load_dataset("json", data_files=str(train_path), split="train")
    held_out = datasets.load_dataset("json", data_files=str(eval_path), split="train")
    assert len(train) == data["accepted"]
    assert not set(train["example_id"]) & set(held_out["id"])
    task = task_for(spec.task)
    for record in train:
        example = Example(id=record["example_id"], question=record["messages"][1]["content"], answer=record["answer"])
        assert record["messages"][-1]["role"] == "assistant"
        assert task.grade(record["messages"][-1]["content"], example).correct


def gsm8k_lines(spec: JobSpec) -> bytes:
    """The generated task's examples as a GSM8K-format data file (what a user would submit)."""
    rows = [{"id": e.id, "question": e.question, "answer": f"#### {e.answer}"} for e in task_for(spec.task).examples()]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


async def test_stages_use_the_data_admitted_after_the_file_is_deleted_or_swapped(
    nats_server, tmp_path, nc, collect, simulator
) -> None:
    """The selector snapshots the data file at admission; teacher-eval and data-synth, started only after the
    file is gone (one job) or holds other questions (another), still work on the admitted questions."""
    placed = await collect("stratos.evt.server.chosen")
    teacher = await collect("stratos.evt.teacher.chosen")
    ready = await collect("stratos.evt.data.ready")
    folder = tmp_path / "data"
    folder.mkdir()
    original = job("math-alignment.yaml", simulator, size=120)
    admitted = gsm8k_lines(original)
    other = gsm8k_lines(original.model_copy(update={"task": original.task.model_copy(update={"seed": 99})}))
    specs = {}
    for job_id in ("gone", "swapped"):
        (folder / f"{job_id}.jsonl").write_bytes(admitted)
        task = original.task.model_copy(update={"path": f"{job_id}.jsonl", "data_sha256": "0" * 64})
        specs[job_id] = original.model_copy(update={"task": task})
    base = common(nats_server, tmp_path)
    async with running(
        build_inventory(InventorySettings(**base, catalog=ROOT / "examples" / "servers.yaml")),
        build_selector(SelectorSettings(**base, data_root=folder)),
    ):
        for job_id, spec in specs.items():
            await submit(nc, job_id, spec)
        await placed.wait_for(lambda c: len(c.messages) == 2, timeout_s=60)
        (folder / "gone.jsonl").unlink()
        (folder / "swapped.jsonl").write_bytes(other)
        stages = build_teacher_eval(TeacherEvalSettings(**base)), build_data_synth(DataSynthSettings(**base))
        async with running(*stages):
            await ready.wait_for(lambda c: len(c.messages) == 2, timeout_s=90)

    store = NatsArtifactStore(nc.jetstream())
    stored = await nc.jetstream().key_value(SPECS_BUCKET)
    examples = {e.id: e for e in task_for(original.task).examples()}
    held_out = {e.id for e in split_task(task_for(original.task), original.task).eval}
    for job_id in specs:
        spec = JobSpec.model_validate_json((await stored.get(job_id)).value or b"")
        assert spec.task.data_sha256 == hashlib.sha256(admitted).hexdigest()  # the submitter's value replaced
        assert await store.get_bytes(store.uri_for(job_id, Artifact.TASK_DATA)) == admitted
    for chosen in teacher.bodies():
        assert set(chosen["sample_ids"]) <= held_out, chosen["job_id"]
    for data in ready.bodies():
        train_path = await get_file(store, data["train_uri"], tmp_path / data["job_id"] / "train.jsonl")
        train = datasets.load_dataset("json", data_files=str(train_path), split="train")
        assert len(train) == data["accepted"] >= 20
        for record in train:
            assert record["messages"][1]["content"] == examples[record["example_id"]].question


async def test_weak_teachers_mean_injection_and_every_record_reasons_to_the_right_answer(
    nats_server, tmp_path, nc, collect, simulator
) -> None:
    teacher = await collect("stratos.evt.teacher.chosen")
    ready = await collect("stratos.evt.data.ready")
    spec = job("rules-injection.yaml", simulator)
    async with running(*services(nats_server, tmp_path)):
        await submit(nc, "rules-1", spec)
        await ready.wait_for(lambda c: len(c.messages) == 1, timeout_s=60)
    chosen = teacher.bodies()[0]
    assert chosen["mode"] == "injection"
    data = ready.bodies()[0]
    assert data["mode"] == "injection"
    assert data["rejected_by_reason"].get("no-reasoning-steps", 0) > 0  # sloppy traces were refused
    store = NatsArtifactStore(nc.jetstream())
    train_path = await get_file(store, data["train_uri"], tmp_path / "train.jsonl")
    train = datasets.load_dataset("json", data_files=str(train_path), split="train")
    task = task_for(spec.task)
    for record in train:
        example = Example(id=record["example_id"], question=record["messages"][1]["content"], answer=record["answer"])
        trace = record["messages"][-1]["content"]
        assert task.grade(trace, example).correct
        assert task.check_steps(trace, example).ok
        assert "The correct final answer is" not in record["messages"][1]["content"]


async def test_data_synth_killed_midway_resumes_without_paying_twice(nats_server, tmp_path, nc, collect) -> None:
    """SIGKILL data-synth mid-run; a new process finishes from the teacher cache: only in-flight calls repeat."""
    import os
    import signal
    import subprocess
    import sys

    config = SimulatorConfig(
        seed=3,
        latency_ms=100,
        models={"sim-strong": ModelSpec(accuracy={"math": 0.9}), "sim-weak": ModelSpec(accuracy={"math": 0.1})},
    )
    concurrency = 4
    with running_simulator(config) as sim:
        spec = job("math-alignment.yaml", sim)
        progress = await collect("stratos.evt.data.progress")
        ready = await collect("stratos.evt.data.ready")
        teacher = await collect("stratos.evt.teacher.chosen")
        base = common(nats_server, tmp_path)
        env = {
            **os.environ,
            "NATS_URL": nats_server.url,
            "STRATOS_HOME": str(base["home"]),
            "STRATOS_TEACHER_CONCURRENCY": str(concurrency),
            "STRATOS_PROGRESS_EVERY": "4",
            "STRATOS_ACK_WAIT_S": "3",
        }
        command = [sys.executable, "-m", "stratos_data_synth"]
        async with running(*services(nats_server, tmp_path)[:3]):
            await submit(nc, "math-kill", spec)
            await teacher.wait_for(lambda c: len(c.messages) == 1)
            sim.simulator.reset_stats()
            first = subprocess.Popen(command, env=env)
            try:
                await progress.wait_for(lambda c: len(c.messages) >= 3, timeout_s=60)
                first.send_signal(signal.SIGKILL)
                first.wait(10)
                asked_before_kill = sim.simulator.stats()["requests"]["sim-strong"]
                second = subprocess.Popen(command, env=env)
                try:
                    await ready.wait_for(lambda c: len(c.messages) == 1, timeout_s=120)
                finally:
                    second.terminate()
                    second.wait(10)
            finally:
                first.kill()
        total = sim.simulator.stats()["requests"]["sim-strong"]
    questions = len(split_task(task_for(spec.task), spec.task).train)
    assert 0 < asked_before_kill < questions, "the kill did not land mid-run"
    # every question asked once, plus at most the requests that were in flight when the process died
    assert questions <= total <= questions + concurrency, (total, questions)
    assert ready.bodies()[0]["accepted"] > 0
