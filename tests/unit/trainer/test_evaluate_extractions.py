"""Held-out evaluation reports how each answer was found, as evaluation harnesses do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helpers

from stratos_shared.tasks import Example
from stratos_shared.tasks.math import MathTask
from stratos_trainer.domain.evaluate import evaluate_path

MATH = MathTask([])


def _grade(output: str, answer: str) -> Any:
    return MATH.grade(output, Example(id="x", question="q", answer=answer))


def test_extractions_are_reported_per_output_when_the_grader_returns_grades(base_model: Path, held_out: Any) -> None:
    items = held_out[:8]
    result = evaluate_path(base_model, items, _grade, max_new_tokens=24)
    assert len(result.extractions) == 8 and sum(result.extraction_counts().values()) == 8
    assert set(result.extractions) <= {"strict", "hash", "boxed", "last-number", "none"}
    # the same outputs graded again give the same verdicts and extractions
    regraded = [_grade(o, a) for o, (_, a) in zip(result.outputs, items, strict=True)]
    assert result.scores == [float(g.correct) for g in regraded]
    assert result.extractions == [g.extraction or "none" for g in regraded]
    correct = result.extraction_counts(correct_only=True)
    assert sum(correct.values()) == sum(result.scores)

    plain = evaluate_path(base_model, items, helpers.grade, max_new_tokens=24)
    assert plain.extractions == [] and plain.extraction_counts() == {}
    assert plain.outputs == result.outputs
