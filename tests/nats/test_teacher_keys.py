"""A teacher whose key reference does not resolve where teacher-eval runs is reported unusable, with the reason,
in TeacherChosen, the job's status and its report: never scored as an accuracy of 0."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from rich.console import Console

from stratos_cli.views import job_view
from stratos_shared.bus.kv import TypedKV
from stratos_shared.bus.names import JOBS_BUCKET
from stratos_shared.jobs import JobState
from stratos_shared.teacher.simulator import SimulatorConfig, running_simulator
from tests.nats.services import running
from tests.nats.test_bad_teachers import GOOD, job, stages, submit, teacher

pytestmark = pytest.mark.nats
MISSING = "TEACHER_KEY_NOT_SET_ISSUE29"


@pytest.mark.timeout(120)
async def test_an_unresolvable_key_makes_its_teacher_unusable_saying_why(
    nats_server, tmp_path: Path, nc, collect, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MISSING, raising=False)
    chosen, failed = await collect("stratos.evt.teacher.chosen"), await collect("stratos.evt.job.failed")
    with running_simulator(SimulatorConfig(models={"sim-good": GOOD})) as sim:
        keyless = teacher("keyless", sim.base_url, "sim-good").model_copy(update={"api_key_ref": f"env:{MISSING}"})
        mixed = job("mixed", [teacher("good", sim.base_url, "sim-good"), keyless])
        only = job("only-keyless", [keyless])
        async with running(*stages(nats_server, tmp_path)[:3]):
            await submit(nc, "mixed", mixed)
            await submit(nc, "only-keyless", only)
            await chosen.wait_for(lambda c: len(c.messages) == 1, timeout_s=60)
            await failed.wait_for(lambda c: len(c.messages) == 1, timeout_s=60)
            jobs = TypedKV(await nc.jetstream().key_value(JOBS_BUCKET), JobState)
            state = None
            for _ in range(100):
                found = await jobs.get("mixed")
                state = found[0] if found else None
                if state is not None and state.results.unusable_teachers:
                    break
                await asyncio.sleep(0.05)

    (event,) = chosen.bodies()
    scores = {s["name"]: s for s in event["scores"]}
    assert event["teacher"] == "good"
    assert scores["keyless"]["graded"] == 0
    assert f"environment variable '{MISSING}' is not set" in scores["keyless"]["error"]
    assert state is not None and "keyless" not in state.results.teacher, "an unusable teacher shown as accuracy 0"
    assert MISSING in state.results.unusable_teachers["keyless"]
    console = Console(width=200, record=True)
    console.print(job_view(state))
    shown = console.export_text()
    assert f"unusable: cannot be used from teacher-eval's host: environment variable '{MISSING}'" in shown
    (failure,) = failed.bodies()
    assert failure["job_id"] == "only-keyless" and MISSING in failure["reason"]
