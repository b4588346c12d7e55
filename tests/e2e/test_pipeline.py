"""The whole pipeline over a real nats-server: six services, simulated teachers, a tiny student, a server failure.

The same code path as `make demo`, at a smaller size: the job is placed, the
teacher and mode chosen, data synthesised, the student pre-screened and
trained; its server is marked down mid-training, the job is re-planned and
resumes from its checkpoint elsewhere, is deployed, measured and completed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from nats.aio.client import Client

from stratos_data_synth.main import build as build_data_synth
from stratos_data_synth.settings import DataSynthSettings
from stratos_deployer.main import build as build_deployer
from stratos_deployer.settings import DeployerSettings
from stratos_inventory.main import build as build_inventory
from stratos_inventory.settings import InventorySettings
from stratos_selector.main import build as build_selector
from stratos_selector.settings import SelectorSettings
from stratos_shared.bus.kv import TypedKV
from stratos_shared.bus.names import JOBS_BUCKET
from stratos_shared.contracts.events import JobSubmitted, ServerDownRequested
from stratos_shared.contracts.job import JobSpec
from stratos_shared.jobs import JobState
from stratos_shared.teacher.simulator import ModelSpec, RunningSimulator, SimulatorConfig, running_simulator
from stratos_teacher_eval.main import build as build_teacher_eval
from stratos_teacher_eval.settings import TeacherEvalSettings
from stratos_trainer.main import build as build_trainer
from stratos_trainer.settings import TrainerSettings
from tests.nats.services import common, running

pytestmark = pytest.mark.nats
ROOT = Path(__file__).parents[2]


def small_job(sim: RunningSimulator) -> JobSpec:
    spec = JobSpec.from_yaml(ROOT / "examples" / "math-alignment.yaml")
    return spec.model_copy(
        update={
            "teachers": [t.model_copy(update={"base_url": sim.base_url, "api_key_ref": None}) for t in spec.teachers],
            "students": spec.students[:1],
            "task": spec.task.model_copy(update={"size": 240, "generator": {"max_steps": 1}}),
            "training": spec.training.model_copy(update={"max_steps": 60, "checkpoint_every_steps": 10}),
            "distillation": spec.distillation.model_copy(update={"eval_samples": 30, "min_dataset_size": 20}),
        }
    )


async def test_job_runs_end_to_end_and_survives_a_server_failure(nats_server, tmp_path, nc: Client, collect) -> None:
    progress = await collect("stratos.evt.training.progress")
    chosen = await collect("stratos.evt.server.chosen")
    everything = await collect("stratos.evt.>")
    base = {**common(nats_server, tmp_path), "ack_wait_s": 10.0}
    with running_simulator(
        SimulatorConfig(
            seed=5,
            models={"sim-strong": ModelSpec(accuracy={"math": 0.9}), "sim-weak": ModelSpec(accuracy={"math": 0.3})},
        )
    ) as sim:
        spec = small_job(sim)
        services = (
            build_inventory(InventorySettings(**base, catalog=ROOT / "examples" / "servers.yaml")),
            build_selector(SelectorSettings(**base)),
            build_teacher_eval(TeacherEvalSettings(**base)),
            build_data_synth(DataSynthSettings(**base)),
            build_trainer(TrainerSettings(**base, eval_samples=40, prescreen_items=8)),
            build_deployer(DeployerSettings(**base, probe_requests=4, accuracy_samples=40)),
        )
        async with running(*services):
            event = JobSubmitted(job_id="e2e-1", spec=spec)
            await nc.jetstream().publish(event.SUBJECT, event.to_bytes(), headers={"Nats-Msg-Id": event.event_id})
            await progress.wait_for(lambda c: any(b.get("checkpoint_uri") for b in c.bodies()), timeout_s=600)
            first_server = chosen.bodies()[0]["server"]["id"]
            down = ServerDownRequested(server_id=first_server, reason="test: failure mid-training")
            await nc.jetstream().publish(down.SUBJECT, down.to_bytes(), headers={"Nats-Msg-Id": down.event_id})
            await everything.wait_for(
                lambda c: bool(c.of_type("JobCompleted") or c.of_type("JobFailed")), timeout_s=900
            )
            jobs = TypedKV(await nc.jetstream().key_value(JOBS_BUCKET), JobState)
            for _ in range(50):
                state = (await jobs.get("e2e-1") or (None, 0))[0]
                if state and state.status != "running":
                    break
                await asyncio.sleep(0.2)

    assert not everything.of_type("JobFailed"), everything.of_type("JobFailed")
    types = [b["event_type"] for b in everything.bodies()]
    for stage in (
        "ServerChosen",
        "TeacherChosen",
        "DataReady",
        "StudentChosen",
        "ModelTrained",
        "ModelDeployed",
        "JobCompleted",
    ):
        assert stage in types, f"{stage} missing from {types}"
    revisions = [b for b in chosen.bodies() if b["job_id"] == "e2e-1"]
    assert [b["revision"] for b in revisions] == [1, 2]
    assert revisions[1]["server"]["id"] != first_server
    trained = everything.of_type("ModelTrained")[0]
    assert trained["resumed_from_step"] > 0, "training restarted from zero instead of the checkpoint"
    assert trained["server_id"] == revisions[1]["server"]["id"]
    assert trained["accuracy_after"] >= trained["accuracy_before"] + 0.2, trained
    deployed = everything.of_type("ModelDeployed")[0]
    assert deployed["revision"] == 2 and deployed["server_id"] == revisions[1]["server"]["id"]
    assert state is not None and state.status == "completed" and state.report_uri
