"""Slow and failing teachers, over real NATS with the real teacher-eval and data-synth services.

The documented degradation (architecture: teacher-eval, data-synth; the teacher client's retries):
- a request is retried with backoff (a 429's Retry-After is honoured) up to the stage's retry budget;
- teacher-eval scores each teacher on what it answered; a teacher that answered nothing is not chosen,
  and a job whose teachers all failed ends in `JobFailed` naming each teacher and its last problem;
- data-synth drops a question whose request failed, counts it (`rejected_by_reason["teacher-error"]`),
  and fails the job naming the teacher when too few records are left.
Every outcome must arrive within a bound set by timeouts and retries: nothing hangs.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest

from stratos_data_synth.main import build as build_data_synth
from stratos_data_synth.settings import DataSynthSettings
from stratos_inventory.main import build as build_inventory
from stratos_inventory.settings import InventorySettings
from stratos_selector.main import build as build_selector
from stratos_selector.settings import SelectorSettings
from stratos_shared.contracts.events import JobSubmitted
from stratos_shared.contracts.job import JobSpec, TeacherSpec
from stratos_shared.jobcontext import split_task, task_for
from stratos_shared.teacher.client import TeacherClient
from stratos_shared.teacher.errors import TeacherBadResponse
from stratos_shared.teacher.simulator import Faults, ModelSpec, SimulatorConfig, running_simulator
from stratos_teacher_eval.main import build as build_teacher_eval
from stratos_teacher_eval.settings import TeacherEvalSettings
from tests.nats.services import common, running

ROOT = Path(__file__).parents[2]
GOOD = ModelSpec(accuracy={"math": 0.9})
TIMEOUT_S = 0.5
RETRIES = 3
BOUND_S = 60.0
"""Per job: a few requests' worth of timeouts and backoff (0.5+1+2 s at most) per teacher, with a wide margin."""


def closed_port() -> int:
    """A local port nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def job(name: str, teachers: list[TeacherSpec], *, size: int = 60, min_dataset: int = 5) -> JobSpec:
    base = JobSpec.from_yaml(ROOT / "examples" / "math-alignment.yaml")
    return base.model_copy(
        update={
            "name": name,
            "teachers": teachers,
            "task": base.task.model_copy(update={"size": size}),
            "distillation": base.distillation.model_copy(update={"eval_samples": 10, "min_dataset_size": min_dataset}),
        }
    )


def teacher(name: str, base_url: str, model: str) -> TeacherSpec:
    return TeacherSpec(name=name, base_url=base_url, model=model)


def stages(nats_server: Any, tmp_path: Path, *, synth_retries: int = RETRIES) -> tuple[Any, ...]:
    base = common(nats_server, tmp_path)
    teacher_settings: dict[str, Any] = {"teacher_timeout_s": TIMEOUT_S, "teacher_max_retries": RETRIES}
    return (
        build_inventory(InventorySettings(**base, catalog=ROOT / "examples" / "servers.yaml")),
        build_selector(SelectorSettings(**base)),
        build_teacher_eval(TeacherEvalSettings(**base, **teacher_settings)),
        build_data_synth(DataSynthSettings(**base, teacher_timeout_s=TIMEOUT_S, teacher_max_retries=synth_retries)),
    )


async def submit(nc: Any, job_id: str, spec: JobSpec) -> float:
    event = JobSubmitted(job_id=job_id, spec=spec)
    await nc.jetstream().publish(event.SUBJECT, event.to_bytes(), headers={"Nats-Msg-Id": event.event_id})
    return time.monotonic()


def for_job(bodies: list[dict[str, Any]], job_id: str) -> list[dict[str, Any]]:
    return [b for b in bodies if b.get("job_id") == job_id]


def train_questions(spec: JobSpec) -> int:
    return len(split_task(task_for(spec.task), spec.task).train)


@pytest.mark.parametrize("kind", ["truncated", "not-json", "no-choices", "wrong-types"])
async def test_each_malformed_answer_is_a_bad_response_not_a_crash(kind: str) -> None:
    faults = Faults(rate_malformed=1.0, malformed_kinds=[kind])
    expected = {
        "truncated": "invalid JSON",
        "not-json": "invalid JSON",
        "no-choices": "no 'choices'",
        "wrong-types": "has no message content",
    }[kind]
    with running_simulator(SimulatorConfig(models={"m": ModelSpec(faults=faults)})) as sim:
        async with TeacherClient(sim.base_url, "m", max_retries=1, backoff_base_s=0.01) as client:
            with pytest.raises(TeacherBadResponse, match=expected):
                await client.complete([{"role": "user", "content": "2+2?"}])
        assert sim.simulator.stats()["faults"] == {"malformed": 2}


@pytest.mark.nats
@pytest.mark.timeout(150)
async def test_teacher_eval_scores_around_storms_timeouts_garbage_and_refusals(
    nats_server, tmp_path, nc, collect
) -> None:
    """Job 1 has one usable teacher among broken ones: it is chosen and the job goes on. Job 2 has only broken
    teachers: it fails in teacher-eval naming every one, before any data is synthesised."""
    teachers_chosen = await collect("stratos.evt.teacher.chosen")
    ready = await collect("stratos.evt.data.ready")
    failed = await collect("stratos.evt.job.failed")
    garbled = Faults(rate_malformed=1.0, malformed_kinds=["truncated", "not-json", "no-choices", "wrong-types"])
    config = SimulatorConfig(
        seed=5,
        models={
            "sim-storm": GOOD.model_copy(update={"faults": Faults(rate_429=0.3, retry_after_s=0.05)}),
            "sim-slow": GOOD.model_copy(update={"faults": Faults(rate_timeout=1.0, timeout_delay_s=30.0)}),
            "sim-garbled": GOOD.model_copy(update={"faults": garbled}),
        },
    )
    refused = f"http://127.0.0.1:{closed_port()}/v1"
    with running_simulator(config) as sim:
        url = sim.base_url
        broken = [
            teacher("slow", url, "sim-slow"),
            teacher("garbled", url, "sim-garbled"),
            teacher("down", refused, "x"),
        ]
        mixed = job("mixed", [teacher("storm", url, "sim-storm"), *broken])
        hopeless = job("hopeless", broken)
        async with running(*stages(nats_server, tmp_path)):
            started = {"mixed": await submit(nc, "mixed", mixed), "hopeless": await submit(nc, "hopeless", hopeless)}
            await failed.wait_for(lambda c: bool(for_job(c.bodies(), "hopeless")), timeout_s=BOUND_S)
            failed_after = time.monotonic() - started["hopeless"]
            await ready.wait_for(lambda c: bool(for_job(c.bodies(), "mixed")), timeout_s=BOUND_S)
            ready_after = time.monotonic() - started["mixed"]
        faults = sim.simulator.stats()["faults"]

    chosen = for_job(teachers_chosen.bodies(), "mixed")
    assert [c["teacher"] for c in chosen] == ["storm"] and not for_job(teachers_chosen.bodies(), "hopeless")
    scores = {s["name"]: s for s in chosen[0]["scores"]}
    assert scores["storm"]["graded"] >= 8 and scores["storm"]["accuracy"] > 0.5  # retries absorbed the 429 storm
    assert f"no answer within {TIMEOUT_S:g} s" in scores["slow"]["error"] and scores["slow"]["graded"] == 0
    assert "garbled" in scores and scores["garbled"]["graded"] == 0
    assert any(p in scores["garbled"]["error"] for p in ("invalid JSON", "no 'choices'", "no message content"))
    assert "connection failed" in scores["down"]["error"] and scores["down"]["graded"] == 0
    assert faults["429"] > 0 and faults["timeout"] > 0 and faults["malformed"] > 0

    (failure,) = for_job(failed.bodies(), "hopeless")
    assert failure["stage"] == "teacher-eval"
    for name in ("slow", "garbled", "down"):
        assert f"teacher '{name}'" in failure["reason"], failure["reason"]
    assert not for_job(ready.bodies(), "hopeless"), "a job with no usable teacher reached data synthesis"

    data = for_job(ready.bodies(), "mixed")[0]
    dropped = data["rejected_by_reason"].get("teacher-error", 0)
    # every question not dropped was asked k times; the dropped ones are counted, not lost
    assert data["asked"] == mixed.distillation.samples_per_question * (train_questions(mixed) - dropped)
    assert failed_after < BOUND_S and ready_after < BOUND_S


@pytest.mark.nats
@pytest.mark.timeout(150)
async def test_data_synth_drops_and_counts_failed_questions_or_fails_naming_the_teacher(
    nats_server, tmp_path, nc, collect
) -> None:
    """Both teachers are fine while evaluated, then break during synthesis: one half the time (questions
    dropped and counted, the job goes on), one completely (the job fails naming it, without a retry in
    injection mode that could not help)."""
    teachers_chosen = await collect("stratos.evt.teacher.chosen")
    ready = await collect("stratos.evt.data.ready")
    failed = await collect("stratos.evt.job.failed")
    config = SimulatorConfig(seed=9, models={"sim-flaky": GOOD, "sim-dying": GOOD})
    with running_simulator(config) as sim:
        flaky = job("flaky", [teacher("flaky", sim.base_url, "sim-flaky")])
        dying = job("dying", [teacher("dying", sim.base_url, "sim-dying")])
        services = stages(nats_server, tmp_path, synth_retries=0)
        async with running(*services[:3]):
            await submit(nc, "flaky", flaky)
            await submit(nc, "dying", dying)
            await teachers_chosen.wait_for(lambda c: len(c.messages) == 2, timeout_s=BOUND_S)
        models = sim.simulator.config.models
        models["sim-flaky"] = GOOD.model_copy(update={"faults": Faults(rate_500=0.5)})
        models["sim-dying"] = GOOD.model_copy(update={"faults": Faults(rate_timeout=1.0, timeout_delay_s=30.0)})
        sim.simulator.reset_stats()
        started = time.monotonic()
        async with running(services[3]):
            await ready.wait_for(lambda c: len(c.messages) == 1, timeout_s=BOUND_S)
            await failed.wait_for(lambda c: len(c.messages) == 1, timeout_s=BOUND_S)
            elapsed = time.monotonic() - started
        requests = sim.simulator.stats()["requests"]

    data = ready.bodies()[0]
    questions = train_questions(flaky)
    dropped = data["rejected_by_reason"]["teacher-error"]
    assert data["job_id"] == "flaky" and 0.25 * questions < dropped < 0.75 * questions
    assert data["asked"] == flaky.distillation.samples_per_question * (questions - dropped)
    assert requests["sim-flaky"] == questions  # retries 0: one request per question, nothing re-asked

    failure = failed.bodies()[0]
    assert failure["job_id"] == "dying" and failure["stage"] == "data-synth"
    assert "teacher 'dying'" in failure["reason"] and f"no answer within {TIMEOUT_S:g} s" in failure["reason"]
    assert requests["sim-dying"] == train_questions(dying), "a dead teacher was asked again in injection mode"
    assert elapsed < BOUND_S
