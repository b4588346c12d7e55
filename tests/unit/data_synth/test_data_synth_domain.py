"""Data synthesis rules: rejection sampling, verification of injected traces, de-duplication per question."""

from __future__ import annotations

from stratos_data_synth.domain import (
    REJECT_DUPLICATE,
    REJECT_ENDS_ELSEWHERE,
    REJECT_NO_STEPS,
    REJECT_WRONG,
    DatasetBuilder,
)
from stratos_shared.tasks import Example, build_task


def test_alignment_keeps_only_correct_traces_and_dedups_per_question() -> None:
    task = build_task("math", seed=1, size=50, generator={"max_steps": 1})
    first, second = task.examples()[:2]
    builder = DatasetBuilder(task, "alignment", keep_per_question=1)
    good = task.reference_trace(first)
    assert builder.offer(first, good)
    assert not builder.offer(first, good.upper())  # same question, same trace modulo case: a duplicate
    assert not builder.offer(first, good.replace(f"Answer: {first.answer}", "Answer: 99999"))
    assert builder.rejected == {REJECT_DUPLICATE: 1, REJECT_WRONG: 1}
    assert builder.passed == 2 and builder.asked == 3

    # Another question whose trace happens to be identical (same numbers, other nouns) is kept.
    twin = Example(id="twin", question=first.question.replace("has", "holds", 1), answer=first.answer)
    assert builder.offer(twin, good)
    records = builder.records([first, second, twin])
    assert [r["example_id"] for r in records] == [first.id, "twin"]
    assert records[0]["messages"][-1] == {"role": "assistant", "content": good}


def test_injection_refuses_traces_without_steps() -> None:
    task = build_task("custom-rules", seed=2, size=20)
    example = task.examples()[0]
    builder = DatasetBuilder(task, "injection", keep_per_question=1)
    assert not builder.offer(example, f"The answer is {example.answer}.\nAnswer: {example.answer}")
    assert builder.rejected == {REJECT_NO_STEPS: 1}
    assert builder.offer(example, task.reference_trace(example))
    # The student is trained on its own prompt (the question alone), not the teacher's rules-bearing one.
    assert builder.records([example])[0]["messages"][:-1] == [{"role": "user", "content": example.question}]


def test_a_trace_right_by_a_flexible_extraction_is_kept_ending_on_the_answer_line() -> None:
    """Verification reads '#### 7' or a last number as teacher-eval does; the kept trace ends on 'Answer: 7'."""
    task = build_task("math", seed=1, size=50, generator={"max_steps": 1})
    example = task.examples()[0]
    body = task.reference_trace(example).replace(f"Answer: {example.answer}", "").strip()
    builder = DatasetBuilder(task, "alignment", keep_per_question=3)
    assert builder.offer(example, f"{body}\n#### {example.answer}\nThe answer is: {example.answer}")
    assert builder.offer(example, f"{body}\nSo the result is {example.answer}.\nHope this helps!")
    assert not builder.offer(example, f"{body}\nAnswer: {example.answer}")  # the first one, rewritten
    assert builder.verified_by_extraction == {"hash": 1, "last-number": 1, "strict": 1}
    assert builder.rejected == {REJECT_DUPLICATE: 1}
    assert sorted(builder.accepted[example.id], key=len) == [
        f"{body}\nAnswer: {example.answer}",
        f"{body}\nSo the result is {example.answer}.\nAnswer: {example.answer}",
    ]


def test_a_flexible_answer_needs_reasoning_that_reaches_it_in_alignment_too() -> None:
    task = build_task("math", seed=1, size=50, generator={"max_steps": 1})
    example = task.examples()[0]
    builder = DatasetBuilder(task, "alignment", keep_per_question=1)
    assert not builder.offer(example, f"I just know it.\nThe answer is {example.answer}.")
    assert not builder.offer(example, f"3 + 4 = 7, so it is {example.answer}.")
    assert builder.rejected == {REJECT_NO_STEPS: 1, REJECT_ENDS_ELSEWHERE: 1}
    assert not builder.offer(example, task.reference_trace(example).replace(f"Answer: {example.answer}", "So 0."))
    assert builder.rejected[REJECT_WRONG] == 1  # the last number is what it answered: 0
