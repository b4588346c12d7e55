"""A GRPO job through the real stages: the trainer warms the student up on the verified traces, then runs GRPO.

A tiny base never earns the correctness reward, so GRPO straight from it has no
signal (every group's advantage is zero). With ``training.warm_start_steps``
the trainer first runs full SFT on the traces data-synth kept, stores that
model, and trains GRPO on top of it. Upstream stages, the trainer and the
teacher simulator are real; only the scale is small.
"""

from __future__ import annotations

import json

import pytest
from nats.aio.client import Client

from stratos_cli.client import wait_for_workers
from stratos_shared.artifacts import NatsArtifactStore
from stratos_shared.bus.names import server_artifacts_bucket
from stratos_shared.contracts.job import EscalationSpec, JobSpec
from stratos_shared.teacher.simulator import RunningSimulator
from stratos_trainer.main import build as build_trainer
from stratos_trainer.settings import TrainerSettings
from stratos_trainer.training import WARM_START_MODEL, WARM_START_RECORD
from tests.nats.services import common, running
from tests.nats.test_teacher_and_data import job, services, simulator, submit

pytestmark = [pytest.mark.nats, pytest.mark.slow]  # ~150 s of GRPO through the pipeline: STRATOS_FULL_TESTS=1
__all__ = ["simulator"]  # the fixture, used by name

WARM_START_STEPS, GRPO_STEPS = 300, 8
SERVER = "a10-us-central"


def grpo_job(sim: RunningSimulator) -> JobSpec:
    """One-step math problems, so that 300 SFT steps take a 1M student well off zero."""
    spec = job("math-alignment.yaml", sim, size=800)
    return spec.model_copy(
        update={
            "students": spec.students[:1],
            "escalation": EscalationSpec(max_attempts=1),  # one attempt: not what this test is about
            "task": spec.task.model_copy(update={"generator": {"max_steps": 1}}),
            "training": spec.training.model_copy(
                update={
                    "method": "grpo",
                    "warm_start_steps": WARM_START_STEPS,
                    "max_steps": GRPO_STEPS,
                    "batch_size": 16,
                    "learning_rate": None,
                    "checkpoint_every_steps": 4,
                }
            ),
        }
    )


@pytest.mark.timeout(600)
async def test_a_grpo_job_starts_from_an_sft_warm_start_on_the_verified_traces(
    nats_server, tmp_path, nc: Client, collect, simulator: RunningSimulator
) -> None:
    trained = await collect("stratos.evt.model.trained")
    progress = await collect("stratos.evt.training.progress")
    failed = await collect("stratos.evt.job.failed")
    settings = TrainerSettings(
        **common(nats_server, tmp_path), server_id=SERVER, eval_samples=60, max_new_tokens=32, prescreen_items=4
    )
    async with running(*services(nats_server, tmp_path, require_workers=True), build_trainer(settings)):
        await wait_for_workers(nats_server.url, [SERVER])
        await submit(nc, "grpo-1", grpo_job(simulator))
        await trained.wait_for(lambda c: len(c.messages) == 1 or bool(failed.messages), timeout_s=480)
    assert not failed.messages, failed.bodies()
    result = trained.bodies()[0]
    store = NatsArtifactStore(nc.jetstream(), server_artifacts_bucket(SERVER))  # what the trainer wrote
    steps = {b["total_steps"] for b in progress.bodies()}

    assert result["method"] == "grpo" and result["steps"] == GRPO_STEPS
    assert result["server_id"] == SERVER and {b["server_id"] for b in progress.bodies()} == {SERVER}
    assert await store.exists(store.uri_for("grpo-1", WARM_START_MODEL)), "the warm start was not kept"
    assert {WARM_START_STEPS, GRPO_STEPS} <= steps, f"progress did not show both phases: {steps}"
    warm = json.loads(await store.get_bytes(store.uri_for("grpo-1", WARM_START_RECORD)))
    assert warm["steps"] == WARM_START_STEPS
    assert result["training_seconds"] > warm["seconds"] > 0, "the warm start's time is not in the job's training time"
    # base near 0% on 60 held-out items; the warm-started student is well off it
    assert result["accuracy_after"] >= result["accuracy_before"] + 0.1, result
