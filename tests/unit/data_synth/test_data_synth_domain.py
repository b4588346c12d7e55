"""Data synthesis rules: rejection sampling, verification of injected traces, de-duplication per question."""

from __future__ import annotations

from stratos_data_synth.domain import REJECT_DUPLICATE, REJECT_NO_ANSWER, REJECT_NO_STEPS, REJECT_WRONG, DatasetBuilder
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


def test_a_trace_right_only_by_a_flexible_extraction_is_not_kept() -> None:
    """Evaluation reads '#### 7' or a last number; a kept trace must carry the Answer: line the student learns."""
    task = build_task("math", seed=1, size=50, generator={"max_steps": 1})
    example = task.examples()[0]
    body = task.reference_trace(example).replace(f"Answer: {example.answer}", "").strip()
    assert task.grade(f"{body}\n#### {example.answer}", example).correct  # right, as evaluation sees it
    builder = DatasetBuilder(task, "alignment", keep_per_question=2)
    assert not builder.offer(example, f"{body}\n#### {example.answer}")
    assert not builder.offer(example, f"{body}\nSo the result is {example.answer}.")
    assert builder.rejected == {REJECT_NO_ANSWER: 2}
    assert builder.offer(example, f"{body}\nAnswer: {example.answer}")
