"""Answer extraction on real free-text outputs of a real model (SmolLM2-135M-Instruct, the bundled one).

``data/smollm2_math_outputs.jsonl`` holds its greedy completions (its own chat template, the math task's
prompt, at most 128 new tokens) of ``MathTask.generate(seed=7, size=16)``, made once through the trainer's
``evaluate_path`` (79 s on 2 cores). It never writes the ``Answer:`` line the prompt asks for; it ends with
"The answer is 32.", "#### 5", or a sentence. The expected values below are what a person reads as the
model's final answer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stratos_shared.tasks import Example
from stratos_shared.tasks.math import MathTask

DATA = Path(__file__).parent / "data" / "smollm2_math_outputs.jsonl"
RECORDS = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
TASK = MathTask([])

# id suffix -> (the final answer a reader sees, how it is found); None: cut off before any final answer
READ_BY_A_PERSON: dict[int, tuple[str, str] | None] = {
    0: ("11", "last-number"),  # "... which equals 11. So Mia has 11 cards now."
    1: ("32", "last-number"),  # "The answer is 32."
    2: ("14", "last-number"),
    3: ("6", "last-number"),  # "So, Zoe has 6 coins now."
    4: None,
    5: ("5", "hash"),  # "#### 5\nThe answer is: 5"
    6: ("2", "hash"),
    7: ("10", "hash"),
    8: None,
    9: ("4", "last-number"),
    10: None,
    11: None,
    12: ("99", "last-number"),
    13: ("24", "last-number"),
    14: ("16", "last-number"),
    15: ("3", "hash"),
}


def _example(rec: dict[str, str]) -> Example:
    return Example(id=rec["id"], question=rec["question"], answer=rec["answer"])


def test_the_fixture_is_sixteen_real_outputs_without_an_answer_line() -> None:
    assert len(RECORDS) == 16
    assert MathTask.generate(seed=7, size=16).examples()[3].question == RECORDS[3]["question"]
    assert not any("Answer:" in r["output"] for r in RECORDS)


@pytest.mark.parametrize("rec", RECORDS, ids=[r["id"] for r in RECORDS])
def test_flexible_extraction_reads_the_final_answer_a_person_reads(rec: dict[str, str]) -> None:
    read = READ_BY_A_PERSON[int(rec["id"].rsplit("-", 1)[1])]
    grade = TASK.grade(rec["output"], _example(rec))
    if read is None:
        assert not grade.correct  # cut off mid-reasoning: whatever number is last, it is not the answer
    else:
        assert (grade.extracted, grade.extraction) == read
        assert grade.correct is (read[0] == rec["answer"])


def test_strict_scores_zero_where_flexible_finds_three_right() -> None:
    flexible = [TASK.grade(r["output"], _example(r)) for r in RECORDS]
    strict = [TASK.grade_strict(r["output"], _example(r)) for r in RECORDS]
    assert sum(g.correct for g in strict) == 0 and all(g.extracted is None for g in strict)
    assert [r["id"] for r, g in zip(RECORDS, flexible, strict=True) if g.correct] == [
        "math-7-1",
        "math-7-3",
        "math-7-9",
    ]
