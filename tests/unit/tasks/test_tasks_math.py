"""Math task: extraction, grading, step checks, generator and GSM8K loading."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stratos_shared.tasks import Example, TaskDataError
from stratos_shared.tasks.math import MathTask, parse_word_problem

TASK = MathTask([])
EX = Example(id="1", question="q", answer="1234")


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("Answer: 1,234 apples", "1234"),
        ("so\nAnswer: $1,234.00", "1234"),
        ("Answer: 1234.", "1234"),
        ("blah 5\n#### 1234", "1234"),
        ("answer: -7 degrees", "-7"),
        ("Answer: 3.50 dollars", "3.5"),
        ("end with 'Answer: <number>'\n3 + 4 = 7\nAnswer: 7", "7"),
        ("Answer: **42**", "42"),
        ("Answer: the total is 12 pens", "12"),
        ("The result is 12", "12"),
        ("Answer: none", None),
        ("no number here", None),
    ],
)
def test_extract_number(output: str, expected: str | None) -> None:
    assert TASK.extract_answer(output) == expected


@pytest.mark.parametrize(
    ("output", "correct"),
    [
        ("Answer: 1,234", True),
        ("Answer: 1234.0", True),
        ("Answer: $1234 total", True),
        ("Answer: 12345", False),
        ("Answer: 123", False),
        ("I get 1234 but Answer: 1235", False),
        ("1234", True),
        ("1,234 in all. 5 more would make 1,239", False),
    ],
)
def test_grade(output: str, correct: bool) -> None:
    assert TASK.grade(output, EX).correct is correct


@pytest.mark.parametrize(
    ("output", "value", "how"),
    [
        ("3 + 4 = 7\nAnswer: 7", "7", "strict"),
        ("Answer: 7\nbut maybe 8", "7", "strict"),  # the required line wins over later numbers
        ("3 + 4 = 7\n#### 7", "7", "hash"),
        ("#### $1,234.00\nextra 9", "1234", "hash"),
        ("So the answer is $\\boxed{12}$.", "12", "boxed"),
        ("nested \\boxed{\\frac{1}{2}} then \\boxed{3}", "3", "boxed"),
        ("\\boxed{1{,}234}", "1234", "boxed"),  # LaTeX's thousands separator
        ("Tom has 3 + 4 = 7 apples. He has 7 apples.", "7", "last-number"),
        ("It is -3.50 degrees", "-3.5", "last-number"),
        ("I do not know.", None, None),
    ],
)
def test_extraction_is_strict_first_then_flexible(output: str, value: str | None, how: str | None) -> None:
    grade = TASK.grade(output, Example(id="1", question="q", answer=value or "0"))
    assert (grade.extracted, grade.extraction) == (value, how)
    assert grade.correct is (value is not None)
    # trace verification accepts only the Answer: line
    assert TASK.grade_strict(output, Example(id="1", question="q", answer=value or "0")).correct is (how == "strict")


def test_check_steps() -> None:
    assert TASK.check_steps("3 + 4 = 7\n7 * 2 = 14\nAnswer: 14", EX).ok
    assert TASK.check_steps("He has 3 + 4 = 7 apples, then 2 x 7 = 14.\nAnswer: 14", EX).ok
    assert TASK.check_steps("<<1,000+234=1,234>>\nAnswer: 1234", EX).ok
    bad = TASK.check_steps("3 + 4 = 7\n7 * 2 = 15\nAnswer: 15", EX)
    assert not bad.ok and "7 * 2 = 15" in bad.reason
    assert not TASK.check_steps("The answer is obviously 14.\nAnswer: 14", EX).ok
    # Arithmetic after the answer line does not count as reasoning.
    assert not TASK.check_steps("Answer: 7\n3 + 4 = 7", EX).ok
    # Right steps that end elsewhere than the answer given: the answer was not derived.
    off = TASK.check_steps("6 + 3 = 9\nSo the answer is 3.", EX)
    assert (off.ok, off.problem) == (False, "ends-elsewhere")
    assert off.reason == "the reasoning ends on 9, not on the answer 3"
    assert TASK.check_steps("7 / 2 = 3.5\nThe answer is 3.50", EX).ok
    assert TASK.check_steps("3 + 4 = 7\n7 * 2 = 15\nAnswer: 15", EX).problem == "wrong-step"


@pytest.mark.parametrize(
    ("output", "kept"),
    [
        ("3 + 4 = 7\nAnswer: 7", "3 + 4 = 7\nAnswer: 7"),  # already in the format: unchanged
        ("3 + 4 = 7\n**Answer: $7.00**\n\nThis is correct.", "3 + 4 = 7\nAnswer: 7"),
        ('3 + 4 = 7, ending with "Answer: 7".', '3 + 4 = 7, ending with "Answer: 7".\nAnswer: 7'),
        ("3 + 4 = 7\n#### 7\nThe answer is: 7", "3 + 4 = 7\nAnswer: 7"),
        ("3 + 4 = 7, so $\\boxed{7}$ apples.\nDone.", "3 + 4 = 7, so $\\boxed{7}$ apples.\nAnswer: 7"),
        ("3 + 4 = 7 apples.\nThe answer is 7.\n\nHope this helps!", "3 + 4 = 7 apples.\nThe answer is 7.\nAnswer: 7"),
        ("3 + 4 = 7.00", "3 + 4 = 7.00\nAnswer: 7"),
    ],
)
def test_a_kept_trace_ends_on_the_answer_line_in_canonical_form(output: str, kept: str) -> None:
    example = Example(id="1", question="q", answer="7")
    grade = TASK.grade(output, example)
    assert grade.correct
    assert TASK.canonical_trace(output, example, grade) == kept
    assert TASK.grade_strict(kept, example).correct


@given(st.integers(0, 10_000), st.integers(1, 3))
def test_generated_problems_round_trip(seed: int, steps: int) -> None:
    task = MathTask.generate(seed=seed, size=3, min_steps=steps, max_steps=steps)
    for ex in task.examples():
        problem = parse_word_problem(ex.question)
        assert problem is not None and len(problem.steps) == steps
        assert str(problem.answer()) == ex.answer and int(ex.answer) >= 0
        trace = task.reference_trace(ex)
        assert task.grade(trace, ex).correct and task.check_steps(trace, ex).ok
        wrong = task.wrong_trace(ex, random.Random(seed))
        assert not task.grade(wrong, ex).correct


def test_generator_is_seeded_short_and_stratified() -> None:
    a = MathTask.generate(seed=3, size=90)
    b = MathTask.generate(seed=3, size=90)
    assert a.examples() == b.examples()
    assert a.examples() != MathTask.generate(seed=4, size=90).examples()
    assert {e.stratum for e in a.examples()} == {"steps=1", "steps=2", "steps=3"}
    assert len({e.question for e in a.examples()}) == 90
    assert max(len(e.question.split()) for e in a.examples()) <= 30


def test_gsm8k_loader(tmp_path: Path) -> None:
    path = tmp_path / "gsm.jsonl"
    rows = [
        {"question": "Q1?", "answer": "She has 2+3=<<2+3=5>>5.\n#### 5"},
        {"id": "x", "question": "Q2?", "answer": "Total 1000+234=<<1000+234=1234>>1234\n#### 1,234"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    task = MathTask.from_jsonl(path)
    assert [e.answer for e in task.examples()] == ["5", "1234"]
    assert [e.id for e in task.examples()] == ["line-1", "x"]
    trace = task.reference_trace(task.examples()[1])
    assert trace.endswith("Answer: 1234") and "<<" not in trace
    assert task.grade(trace, task.examples()[1]).correct


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "not valid JSON"),
        ('["a"]', "expected a JSON object"),
        ('{"question": "q"}', "field 'answer'"),
        ('{"question": "q", "answer": "no marker"}', "no '#### <number>'"),
        ('{"question": "q", "answer": "x #### many"}', "no number after"),
    ],
)
def test_gsm8k_loader_refuses_bad_lines(tmp_path: Path, line: str, reason: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "ok", "answer": "#### 1"}\n' + line + "\n")
    with pytest.raises(TaskDataError) as err:
        MathTask.from_jsonl(path)
    assert str(path) in str(err.value) and "line 2" in str(err.value) and reason in str(err.value)


def test_loader_refuses_missing_and_duplicate(tmp_path: Path) -> None:
    with pytest.raises(TaskDataError, match="file not found"):
        MathTask.from_jsonl(tmp_path / "nope.jsonl")
    path = tmp_path / "dup.jsonl"
    path.write_text(
        '{"id": 1, "question": "a", "answer": "#### 1"}\n{"id": "1", "question": "b", "answer": "#### 2"}\n'
    )
    with pytest.raises(TaskDataError, match="line 2: duplicate id '1'"):
        MathTask.from_jsonl(path)
