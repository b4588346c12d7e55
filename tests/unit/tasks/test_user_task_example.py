"""The README's own-task example (examples/unit-conversion/) is admitted by the selector's real admission code, and
its teacher-simulator config knows every question of the data file, so the example runs as documented."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from stratos_selector.admission import Admitted, admit_spec
from stratos_shared.contracts.job import JobSpec
from stratos_shared.jobcontext import task_for
from stratos_shared.settings import StratosSettings
from stratos_shared.teacher.simulator import Simulator, load_config

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "unit-conversion"


@pytest.fixture
def admitted(monkeypatch: pytest.MonkeyPatch) -> Admitted:
    """Admitted as `stratos up` started from the repository root admits it (the data root is that folder)."""
    monkeypatch.chdir(ROOT)
    for name in ("STRATOS_DATA_ROOT", "STRATOS_HOME"):
        monkeypatch.delenv(name, raising=False)
    result = admit_spec(JobSpec.from_yaml(EXAMPLE / "job.yaml"), StratosSettings().input_policy())
    assert isinstance(result, Admitted), result
    return result


def test_the_example_job_is_admitted_with_a_snapshot_of_its_data(admitted: Admitted) -> None:
    data = (EXAMPLE / "c-to-f.jsonl").read_bytes()
    assert admitted.data == data
    assert admitted.spec.task.data_sha256 == hashlib.sha256(data).hexdigest()
    assert Path(admitted.spec.task.path or "") == EXAMPLE / "c-to-f.jsonl"


def test_the_example_simulator_answers_every_question_of_the_file(admitted: Admitted) -> None:
    task = task_for(admitted.spec.task, admitted.data)
    examples = list(task.examples())
    assert len(examples) == admitted.spec.task.size == 100
    simulator = Simulator(load_config(EXAMPLE / "teacher-sim.yaml"))
    for example in examples:
        found = simulator.find(task.system_prompt(), example.question)
        assert found is not None and found[1].answer == example.answer, example.id
        assert task.grade(task.reference_trace(example), example).correct, example.id
