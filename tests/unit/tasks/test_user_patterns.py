"""User-written patterns run in RE2: linear time whatever the pattern, refused at load when RE2 cannot run them."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest

from stratos_selector.admission import task_problem
from stratos_shared.contracts.job import JobSpec
from stratos_shared.tasks import Example, TaskConfigError, TaskDataError, build_task
from stratos_shared.tasks.errors import GradingTimeout
from stratos_shared.tasks.offloop import off_loop
from stratos_shared.tasks.patterns import MAX_PATTERN_CHARS, PatternError, compile_user_pattern
from stratos_shared.tasks.user import UserTask

ROOT = Path(__file__).parents[3]
EVIL = "a" * 40 + "!"
"""Against ``(a+)+$`` a backtracking engine tries 2**40 ways to split the a's before giving up."""


def write(tmp_path: Path, rows: list[dict[str, str]]) -> str:
    path = tmp_path / "u.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.mark.timeout(20)
def test_a_catastrophic_extractor_pattern_grades_in_linear_time() -> None:
    task = UserTask([Example(id="1", question="q", answer="aaa")], "regex:(a+)+$")
    started = time.perf_counter()
    for _ in range(100):
        grade = task.grade(EVIL * 1000, task.examples()[0])
    assert not grade.correct and grade.extracted is None
    assert time.perf_counter() - started < 2.0


@pytest.mark.timeout(20)
def test_a_catastrophic_answer_pattern_grades_in_linear_time(tmp_path: Path) -> None:
    task = build_task("jsonl", grader="regex", path=write(tmp_path, [{"question": "q", "answer": "(a+)+$"}]))
    started = time.perf_counter()
    assert not task.grade(f"Answer: {EVIL}", task.examples()[0]).correct
    assert task.grade("Answer: aaaa", task.examples()[0]).correct
    assert time.perf_counter() - started < 1.0


def test_an_optional_group_that_did_not_take_part_extracts_nothing_rather_than_crashing() -> None:
    task = UserTask([Example(id="1", question="q", answer="x")], r"regex:FINAL(=\w+)?")
    assert task.grade("FINAL", task.examples()[0]).extracted == ""


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"(a)\1", "invalid escape sequence"),
        ("(?=a)b", "invalid perl operator"),
        ("x" * (MAX_PATTERN_CHARS + 1), "at most 1000"),
        (r"[\p{L}\p{N}]{900}", "pattern too large"),
    ],
)
def test_what_re2_cannot_run_is_refused_with_the_reason(pattern: str, why: str, tmp_path: Path) -> None:
    with pytest.raises(PatternError, match=why):
        compile_user_pattern(pattern)
    with pytest.raises(TaskConfigError, match=f"is not a valid regular expression here: .*{why}"):
        UserTask([], f"regex:{pattern}")
    with pytest.raises(TaskDataError, match=f"line 1: answer is not a valid regular expression here: .*{why}"):
        build_task("jsonl", grader="regex", path=write(tmp_path, [{"question": "q", "answer": pattern}]))


def test_admission_names_a_pattern_re2_cannot_run(tmp_path: Path) -> None:
    base = JobSpec.from_yaml(ROOT / "examples" / "math-alignment.yaml")
    path = write(tmp_path, [{"question": f"q{i}", "answer": "a"} for i in range(60)])
    task = base.task.model_copy(update={"kind": "jsonl", "path": path, "grader": r"regex:(\w)\1"})
    problem = task_problem(base.model_copy(update={"task": task}), Path(path).read_bytes())
    assert problem is not None and "the task cannot be loaded" in problem and "RE2" in problem, problem


async def test_grading_off_the_loop_is_bounded_and_leaves_the_loop_free() -> None:
    release = threading.Event()
    ticks = 0

    def slow_grader() -> bool:
        release.wait(5)
        return True

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    beat = asyncio.create_task(ticker())
    try:
        with pytest.raises(GradingTimeout, match=r"longer than 0\.3 s"):
            await off_loop(slow_grader, timeout_s=0.3)
    finally:
        release.set()
        beat.cancel()
    assert ticks >= 10, "the event loop was blocked while grading"
    assert await off_loop(lambda x: x + 1, 1) == 2
