"""Task kinds register themselves: the registry lists the shipped ones, and a kind registered from outside the
shipped modules (here, a test double) is usable through the normal path of a job spec."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from stratos_selector.admission import task_problem
from stratos_shared.contracts.job import JobSpec
from stratos_shared.jobcontext import split_task, task_for
from stratos_shared.tasks import TASK_KINDS, Example, Grade, Task, TaskConfigError, build_task
from stratos_shared.tasks import kinds as kinds_module
from stratos_shared.tasks._common import final_answer
from stratos_shared.tasks.kinds import Source, TaskKind, register_kind, task_kind, task_kinds

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


class EchoTask(Task):
    """TEST DOUBLE of a task kind: 'say N' is answered N."""

    name = "echo"

    def __init__(self, examples: list[Example]) -> None:
        self._examples = examples

    @classmethod
    def generate(cls, *, seed: int = 0, size: int = 10, offset: int = 0) -> EchoTask:
        numbers = range(seed + offset, seed + offset + size)
        return cls([Example(id=f"echo-{n}", question=f"say {n}", answer=str(n)) for n in numbers])

    def examples(self) -> Sequence[Example]:
        return self._examples

    def system_prompt(self) -> str:
        return "Repeat the number. End with 'Answer: <number>'."

    def extract_answer(self, output: str) -> str | None:
        return final_answer(output)[0]

    def grade(self, output: str, example: Example) -> Grade:
        got, how = final_answer(output)
        return Grade(correct=got == example.answer, extracted=got, extraction=how)


@pytest.fixture
def echo_kind() -> Iterator[TaskKind]:
    kind = register_kind(
        TaskKind(
            name="echo",
            load=lambda source: pytest.fail("the echo kind is generated, never loaded"),
            generate=EchoTask.generate,
            generator_options=frozenset({"offset"}),
        )
    )
    yield kind
    del kinds_module._KINDS["echo"]


def test_the_registry_lists_every_shipped_kind_with_its_options() -> None:
    assert [kind.name for kind in task_kinds()] == list(TASK_KINDS)
    assert task_kind("math").generator_options == {"min_steps", "max_steps"}
    assert task_kind("custom-rules").generator_options == {"n_rules", "min_ops", "max_ops"}
    assert [kind.name for kind in task_kinds() if kind.takes_grader] == ["jsonl"]
    assert task_kind("jsonl").generate is None  # the user's data: read, never generated


def test_a_kind_cannot_be_registered_twice() -> None:
    with pytest.raises(TaskConfigError, match="registered twice"):
        register_kind(TaskKind(name="math", load=task_kind("math").load))
    assert task_kind("math").generate is not None  # the shipped one stands


def test_a_registered_kind_is_usable_through_a_job_spec(echo_kind: TaskKind) -> None:
    raw = JobSpec.from_yaml(EXAMPLES / "math-alignment.yaml").model_dump(mode="json")
    raw["task"] = {"kind": "echo", "size": 80, "seed": 3, "generator": {"offset": 100}}
    spec = JobSpec.model_validate(raw)
    assert echo_kind in task_kinds()
    task = task_for(spec.task)
    assert isinstance(task, EchoTask) and len(task.examples()) == 80
    assert task.examples()[0].answer == "103"
    split = split_task(task, spec.task)
    assert split.eval and split.train and len(split.eval) + len(split.train) == 80
    example = split.eval[0]
    assert task.grade(f"Repeating.\nAnswer: {example.answer}", example).correct
    assert task_problem(spec) is None  # admission accepts it like a shipped kind
    with pytest.raises(TaskConfigError, match="unknown generator option"):
        build_task("echo", generator={"steps": 1})


def test_an_unregistered_kind_is_refused_by_the_spec_naming_the_known_ones() -> None:
    raw = JobSpec.from_yaml(EXAMPLES / "math-alignment.yaml").model_dump(mode="json")
    raw["task"]["kind"] = "echo"
    with pytest.raises(ValueError, match="unknown task kind 'echo'; known kinds: math, mahjong-winning-tiles"):
        JobSpec.model_validate(raw)


def test_a_kind_loaded_from_a_file_gets_what_the_spec_says(tmp_path: Path) -> None:
    seen: list[Source] = []
    register_kind(TaskKind(name="recorded", load=lambda source: seen.append(source) or EchoTask.generate(size=3)))
    try:
        task = build_task("recorded", path="data.jsonl", data=b"{}\n", seed=5, size=2)
    finally:
        del kinds_module._KINDS["recorded"]
    assert seen == [Source(path="data.jsonl", data=b"{}\n", seed=5, options={}, grader=None)]
    assert len(task.examples()) == 2  # a loaded task is cut to the spec's size
    with pytest.raises(TaskConfigError, match="unknown task kind 'recorded'"):
        build_task("recorded", path="data.jsonl")
