"""Trace verification on a real weak teacher's output: SmolLM2-135M-Instruct (base), served by Stratos' CPU server.

``data/smollm2_teacher_outputs.jsonl`` is every output of one run of ``python bench/real_teacher.py --forward 16
--reverse 24 --save ...`` (math, one-step problems, seed 7): 16 forward answers (greedy, as teacher-eval asks) and
46 reverse-reasoning traces (the answer given, temperature 0.8, one re-ask after a rejected trace, as data-synth
asks in injection). ``data/smollm2_teacher_reverse_t03.jsonl``: reverse traces of the first 24 questions at
temperature 0.3, at most 128 tokens (``--forward 0 --temperature 0.3 --max-tokens 128``). It never writes the
``Answer:`` line on its own (9 of its reverse traces do, asked to), and given the answer it often states it after
reasoning that does not reach it. The expected verdicts below are a person's reading of each trace.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from stratos_data_synth.domain import (
    REJECT_CUT_OFF,
    REJECT_ENDS_ELSEWHERE,
    REJECT_NO_STEPS,
    REJECT_WRONG,
    REJECT_WRONG_STEP,
    DatasetBuilder,
    judge,
)
from stratos_shared.tasks import Example, build_task
from stratos_shared.tasks.math import MathTask

DATA = Path(__file__).parent / "data"
TASK = MathTask([])


def _load(name: str) -> list[dict[str, str]]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]


RECORDS = _load("smollm2_teacher_outputs.jsonl")
COOL = _load("smollm2_teacher_reverse_t03.jsonl")


def _find(kind: str, ident: str, attempt: int = 0, records: list[dict[str, str]] = RECORDS) -> dict[str, str]:
    return next(r for r in records if (r["kind"], r["id"], r.get("attempt", 0)) == (kind, ident, attempt))


def _example(rec: dict[str, str]) -> Example:
    return Example(id=rec["id"], question=rec["question"], answer=rec["answer"])


def test_the_fixture_is_one_run_of_the_bench_on_the_seeded_task() -> None:
    assert Counter(r["kind"] for r in RECORDS) == {"forward": 16, "reverse": 46}
    examples = build_task("math", seed=7, size=40, generator={"max_steps": 1}).examples()
    assert {r["id"]: r["question"] for r in RECORDS} == {e.id: e.question for e in examples}
    # the task's Answer: line: in none of its forward answers, in 9 of its 46 reverse traces (asked for it there)
    assert Counter(r["kind"] for r in RECORDS if "answer:" in r["output"].lower()) == {"reverse": 9}


# (kind, id, attempt) -> the reason it is rejected, or the extraction that verified it; what a person reads
READ_BY_A_PERSON: dict[tuple[str, str, int], str] = {
    # "11 + 3 = 14 cards. 2. He has 14 cards now. So the answer is 14."
    ("reverse", "math-7-23", 1): "last-number",
    # "Sam has 1 + 9 = 10 marbles. ... ending the final answer with the phrase "Answer: 10"."
    ("reverse", "math-7-31", 1): "strict",
    # "6 + 3 = 9 ... So the answer is 3. The given answer is: 3": the arithmetic is right, the reasoning is not
    ("reverse", "math-7-28", 0): REJECT_ENDS_ELSEWHERE,
    # "1. 3 + 4 = 7 [the system prompt's example] ... The answer is: 1"
    ("reverse", "math-7-25", 0): REJECT_ENDS_ELSEWHERE,
    # on the Answer: line and right ("Answer: 10"), but its steps end at 3 x 20 = 60; the old strict judge kept it
    ("reverse", "math-7-22", 1): REJECT_ENDS_ELSEWHERE,
    # "9 - 5 = 2 more books, so he has 9 + 2 = 13 ... #### 13 ... The answer is: 14": its #### line says 13
    ("reverse", "math-7-27", 0): REJECT_WRONG,
    # "2. We now know that Leo has 20 - 1 = 18 pens. ... The answer: 10."
    ("reverse", "math-7-36", 0): REJECT_WRONG_STEP,
    # "... Thus, the answer is 3." with no calculation shown
    ("reverse", "math-7-26", 1): REJECT_NO_STEPS,
    # told the answer is 15, it ends on "... is 30."
    ("reverse", "math-7-20", 0): REJECT_WRONG,
    # forward, as alignment would judge it: "5 + 4 = 9 cards now. ... The answer is 9."
    ("forward", "math-7-15", 0): "last-number",
    # forward: right final number (1), but its step reads "2 - 3 = 1"
    ("forward", "math-7-6", 0): REJECT_WRONG_STEP,
}


@pytest.mark.parametrize("key", list(READ_BY_A_PERSON), ids=["-".join(map(str, k)) for k in READ_BY_A_PERSON])
def test_verification_agrees_with_a_persons_reading(key: tuple[str, str, int]) -> None:
    rec = _find(*key)
    verdict = judge(TASK, "injection" if key[0] == "reverse" else "alignment", rec["output"], _example(rec))
    assert (verdict.extraction if verdict.accepted else verdict.reason) == READ_BY_A_PERSON[key]
    if verdict.accepted:  # the kept trace ends on the task's answer line: the format the student learns
        assert verdict.trace.rstrip().splitlines()[-1] == f"Answer: {rec['answer']}"
        assert TASK.grade_strict(verdict.trace, _example(rec)).correct


def test_a_kept_trace_is_cut_after_its_answer_and_given_the_answer_line() -> None:
    rec = _find("reverse", "math-7-23", 1)
    kept = judge(TASK, "injection", rec["output"], _example(rec)).trace
    assert kept == rec["output"].rstrip() + "\nAnswer: 14"  # nothing followed "So the answer is 14."
    forward = _find("forward", "math-7-15")
    assert judge(TASK, "alignment", forward["output"], _example(forward)).trace.endswith("The answer is 9.\nAnswer: 9")


def test_a_trace_cut_off_by_the_token_limit_is_not_read_by_its_last_number() -> None:
    """'... 5 + 4 = 9 shells. ... Step 4: We can add 5 shells to 9 shells to' ends on the right number by chance."""
    rec = _find("reverse", "math-7-3", 0, COOL)
    assert TASK.grade(rec["output"], _example(rec)).correct
    assert judge(TASK, "injection", rec["output"], _example(rec)).reason == REJECT_CUT_OFF


@pytest.mark.parametrize(
    ("records", "passed", "by_extraction", "rejected"),
    [
        (
            RECORDS,
            2,
            {"last-number": 1, "strict": 1},
            {REJECT_WRONG: 16, REJECT_NO_STEPS: 10, REJECT_WRONG_STEP: 7, REJECT_ENDS_ELSEWHERE: 9, REJECT_CUT_OFF: 2},
        ),
        (
            COOL,
            7,
            {"last-number": 6, "strict": 1},
            {REJECT_WRONG: 18, REJECT_NO_STEPS: 9, REJECT_WRONG_STEP: 1, REJECT_ENDS_ELSEWHERE: 7, REJECT_CUT_OFF: 1},
        ),
    ],
    ids=["t0.8", "t0.3"],
)
def test_a_whole_run_counts_by_reason_and_by_extraction(
    records: list[dict[str, str]], passed: int, by_extraction: dict[str, int], rejected: dict[str, int]
) -> None:
    """What DataReady reports for this teacher in injection: each rejection named, each kept trace's extraction."""
    builder = DatasetBuilder(TASK, "injection", keep_per_question=1)
    reverse = [r for r in records if r["kind"] == "reverse"]
    for rec in reverse:
        builder.offer(_example(rec), rec["output"])
    assert builder.asked == len(reverse) and builder.passed == passed
    assert builder.verified_by_extraction == by_extraction
    assert builder.rejected == rejected
    # every trace whose extracted answer is not the given one is refused, whatever its format
    for rec in reverse:
        if not TASK.grade(rec["output"], _example(rec)).correct:
            assert not judge(TASK, "injection", rec["output"], _example(rec)).accepted
