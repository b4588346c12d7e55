"""User JSONL tasks, grader plug-ins and build_task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stratos_shared.tasks import TASK_KINDS, Example, Grade, TaskConfigError, TaskDataError, build_task
from stratos_shared.tasks import user as user_mod
from stratos_shared.tasks.user import UserTask


def write(tmp_path: Path, rows: list[dict[str, object]]) -> str:
    path = tmp_path / "u.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_exact_grader(tmp_path: Path) -> None:
    task = build_task("jsonl", path=write(tmp_path, [{"question": "Capital of France?", "answer": "Paris"}]))
    ex = task.examples()[0]
    assert task.grade("Answer:   paris ", ex).correct
    assert task.grade("answer: PARIS.", ex).correct
    assert not task.grade("Answer: Paris, France", ex).correct
    assert not task.grade("Paris", ex).correct


def test_numeric_set_regex_graders(tmp_path: Path) -> None:
    numeric = build_task("jsonl", grader="numeric", path=write(tmp_path, [{"question": "q", "answer": "1,000"}]))
    assert numeric.grade("Answer: 1000.0 units", numeric.examples()[0]).correct
    assert not numeric.grade("Answer: 100", numeric.examples()[0]).correct

    sets = build_task("jsonl", grader="set", path=write(tmp_path, [{"question": "q", "answer": "red, green, blue"}]))
    g = sets.grade("Answer: Blue; red", sets.examples()[0])
    assert not g.correct and g.precision == 1.0 and g.recall == pytest.approx(2 / 3)
    assert sets.grade("Answer: green, blue, red", sets.examples()[0]).correct

    regex = build_task("jsonl", grader="regex", path=write(tmp_path, [{"question": "q", "answer": r"\d{3}-\d{4}"}]))
    assert regex.grade("Answer: 555-1234", regex.examples()[0]).correct
    assert not regex.grade("Answer: 555-12345", regex.examples()[0]).correct


def test_regex_extractor_grader(tmp_path: Path) -> None:
    task = build_task("jsonl", grader=r"regex:FINAL=(\w+)", path=write(tmp_path, [{"question": "q", "answer": "Blue"}]))
    ex = task.examples()[0]
    assert task.grade("FINAL=red ... no, FINAL=blue", ex).correct
    assert task.extract_answer("FINAL=blue") == "blue"
    assert not task.grade("blue", ex).correct
    with pytest.raises(TaskConfigError, match="not a valid regular expression"):
        UserTask([], "regex:(")


def test_bad_user_data(tmp_path: Path) -> None:
    with pytest.raises(TaskDataError, match="line 1: answer is not a valid regular expression"):
        build_task("jsonl", grader="regex", path=write(tmp_path, [{"question": "q", "answer": "("}]))
    with pytest.raises(TaskDataError, match="line 2: answer 'many' is not a number"):
        build_task(
            "jsonl",
            grader="numeric",
            path=write(tmp_path, [{"question": "q", "answer": "1"}, {"question": "q", "answer": "many"}]),
        )
    with pytest.raises(TaskDataError, match="field 'question'"):
        build_task("jsonl", path=write(tmp_path, [{"question": "", "answer": "x"}]))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(TaskDataError, match="no examples"):
        build_task("jsonl", path=str(empty))


def test_grader_plugin_by_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def always_right(output: str, example: Example) -> Grade:
        return Grade(correct=True, extracted=output)

    class FakeEntryPoint:
        name = "lenient"

        def load(self) -> object:
            return always_right

    def fake_entry_points(group: str) -> list[FakeEntryPoint]:
        assert group == "stratos.graders"
        return [FakeEntryPoint()]

    monkeypatch.setattr(user_mod, "entry_points", fake_entry_points)
    task = build_task("jsonl", grader="lenient", path=write(tmp_path, [{"question": "q", "answer": "a"}]))
    assert task.grade("anything", task.examples()[0]).correct
    with pytest.raises(TaskConfigError, match="unknown grader 'nope'"):
        UserTask([], "nope")


def test_reference_trace_needs_reasoning(tmp_path: Path) -> None:
    task = build_task(
        "jsonl",
        path=write(
            tmp_path, [{"question": "q", "answer": "a", "reasoning": "Because."}, {"question": "r", "answer": "b"}]
        ),
    )
    assert task.reference_trace(task.examples()[0]) == "Because.\nAnswer: a"
    with pytest.raises(Exception, match="no 'reasoning' field"):
        task.reference_trace(task.examples()[1])


def test_build_task_kinds_and_errors(tmp_path: Path) -> None:
    assert TASK_KINDS == ("math", "mahjong-winning-tiles", "custom-rules", "jsonl")
    for kind in TASK_KINDS[:3]:
        task = build_task(kind, seed=1, size=12)
        assert task.name == kind and len(task.examples()) == 12
        assert ANSWER_LINE in task.system_prompt()
    assert len(build_task("math", generator={"min_steps": 2, "max_steps": 2}, size=5).examples()) == 5
    with pytest.raises(TaskConfigError, match="unknown task kind 'chess'"):
        build_task("chess")
    with pytest.raises(TaskConfigError, match="unknown generator option"):
        build_task("math", generator={"steps": 3})
    with pytest.raises(TaskConfigError, match="needs a data file"):
        build_task("jsonl")
    with pytest.raises(TaskConfigError, match="only to 'jsonl'"):
        build_task("math", grader="exact")
    path = write(tmp_path, [{"question": f"q{i}", "answer": "a"} for i in range(5)])
    assert len(build_task("jsonl", path=path, size=2).examples()) == 2


ANSWER_LINE = "Answer: <"


@pytest.mark.parametrize(
    ("kind", "row"),
    [
        ("jsonl", {"question": "Capital of France?", "answer": "Paris"}),
        ("math", {"question": "2+2?", "answer": "Add.\n#### 4"}),
        ("mahjong-winning-tiles", {"hand": "1112345678999m"}),
    ],
)
def test_given_bytes_are_the_data_and_the_path_only_names_it(kind: str, row: dict[str, object], tmp_path: Path) -> None:
    data = (json.dumps(row) + "\n").encode()
    missing = tmp_path / "gone.jsonl"
    task = build_task(kind, path=str(missing), data=data, grader="exact" if kind == "jsonl" else None)
    assert len(task.examples()) == 1
    with pytest.raises(TaskDataError, match=r"gone\.jsonl, line 1: not valid JSON"):
        build_task(kind, path=str(missing), data=b"{nope\n", grader="exact" if kind == "jsonl" else None)
