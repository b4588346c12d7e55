"""Custom rules: invented operators, exact grading, step verification."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stratos_shared.tasks import Example, TaskConfigError, TaskDataError
from stratos_shared.tasks.custom_rules import CustomRulesTask, Rule, parse_expr, parse_rules, task_for_prompt

RULES = [Rule("⊕", "lin", 2, 1, 3), Rule("⊗", "prod", 1, 0, 7)]
TASK = CustomRulesTask(RULES, [])
# (3 ⊕ 5) ⊗ 2: 3 ⊕ 5 = (6 + 5 + 3) mod 10 = 4; 4 ⊗ 2 = (8 + 7) mod 10 = 5
EX = Example(id="a", question="Compute (3 ⊕ 5) ⊗ 2", answer="5")


def test_hand_checked_evaluation() -> None:
    expr = parse_expr("(3 ⊕ 5) ⊗ 2", TASK.symbols)
    assert expr == ((3, "⊕", 5), "⊗", 2)
    assert TASK.evaluate(expr) == 5
    assert TASK.evaluate(parse_expr("9 ⊕ (9 ⊗ 9)", TASK.symbols) or 0) == (18 + (81 + 7) % 10 + 3) % 10


@pytest.mark.parametrize(
    ("output", "correct", "strict"),
    [
        ("Answer: 5", True, True),
        ("Answer: 5.", True, True),
        ("Answer: 05", True, True),
        ("Answer: 15", False, False),
        ("so it is 5", True, False),  # the last number: right for evaluation, not a verified trace
        ("\\boxed{5}", True, False),
    ],
)
def test_grade(output: str, correct: bool, strict: bool) -> None:
    assert TASK.grade(output, EX).correct is correct
    assert TASK.grade_strict(output, EX).correct is strict


def test_check_steps() -> None:
    trace = TASK.reference_trace(EX)
    assert trace == (
        "3 ⊕ 5 = (2*3 + 1*5 + 3) mod 10 = (6 + 5 + 3) mod 10 = 14 mod 10 = 4\n"
        "4 ⊗ 2 = (1*4*2 + 7) mod 10 = (8 + 7) mod 10 = 15 mod 10 = 5\nAnswer: 5"
    )
    assert TASK.check_steps(trace, EX).ok
    assert TASK.check_steps("3 ⊕ 5 = 4\n4 ⊗ 2 = 5\nAnswer: 5", EX).ok
    wrong_expansion = trace.replace("(2*3 + 1*5 + 3)", "(2*3 + 1*5 + 4)")
    assert "wrong step" in TASK.check_steps(wrong_expansion, EX).reason
    assert "shows 1 operation" in TASK.check_steps("4 ⊗ 2 = 5\nAnswer: 5", EX).reason
    assert not TASK.check_steps("It is 5.\nAnswer: 5", EX).ok


def test_products_are_reduced_to_their_last_digit_one_step_at_a_time() -> None:
    rule = Rule("⊙", "prod", 3, 0, 4)
    # 7 * 9 = 63 -> 3; 3 * 3 = 9; 9 + 4 = 13 -> 3, which is (3*7*9 + 4) mod 10 = 193 mod 10.
    assert rule.steps(7, 9) == ["(3*7*9 + 4) mod 10", "(3*3 + 4) mod 10", "(9 + 4) mod 10", "13 mod 10", "3"]
    assert Rule("⊕", "lin", 4, 3, 9).steps(7, 8) == ["(4*7 + 3*8 + 9) mod 10", "(8 + 4 + 9) mod 10", "21 mod 10", "1"]


def test_students_get_the_question_alone_and_teachers_the_rules() -> None:
    assert TASK.student_prompt(EX) == [{"role": "user", "content": EX.question}]
    assert [m["role"] for m in TASK.prompt(EX)] == ["system", "user"]
    assert parse_rules(TASK.prompt(EX)[0]["content"]) == RULES


@given(st.integers(0, 10_000))
def test_generated_round_trip(seed: int) -> None:
    task = CustomRulesTask.generate(seed=seed, size=6)
    assert {e.stratum for e in task.examples()} == {"ops=1", "ops=2", "ops=3"}
    for ex in task.examples():
        found = task_for_prompt(task.system_prompt(), ex.question)
        assert found is not None and found[1].answer == ex.answer
        trace = task.reference_trace(ex)
        assert task.grade(trace, ex).correct and task.check_steps(trace, ex).ok
        assert not task.grade(task.wrong_trace(ex, random.Random(seed)), ex).correct


def test_rules_are_seeded_distinct_and_readable_back() -> None:
    a = CustomRulesTask.generate(seed=5, size=10, n_rules=4)
    assert parse_rules(a.system_prompt()) == list(a.rules.values())
    assert len({(r.form, r.p, r.q, r.r) for r in a.rules.values()}) == 4
    assert a.examples() == CustomRulesTask.generate(seed=5, size=10, n_rules=4).examples()
    with pytest.raises(TaskConfigError):
        CustomRulesTask.generate(seed=5, size=10, n_rules=9)


def test_loader(tmp_path: Path) -> None:
    task = CustomRulesTask.generate(seed=2, size=1)
    path = tmp_path / "c.jsonl"
    path.write_text(f'{{"question": "{task.examples()[0].question}"}}\n{{"question": "Compute 3 + 4"}}\n')
    with pytest.raises(TaskDataError, match="line 2: question is not"):
        CustomRulesTask.from_jsonl(path, seed=2)
