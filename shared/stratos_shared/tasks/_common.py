"""Helpers shared by the shipped tasks."""

from __future__ import annotations

import re

from stratos_shared.tasks.base import ANSWER_MARKER

_MARKER = re.compile(re.escape(ANSWER_MARKER), re.IGNORECASE)


def answer_text(output: str) -> str | None:
    """The text after the LAST ``Answer:`` marker, up to the end of that line.

    The last one wins because models often restate the question's format
    ("end with Answer: ...") before giving their own final line.
    """
    matches = list(_MARKER.finditer(output))
    if not matches:
        return None
    rest = output[matches[-1].end() :]
    line = rest.split("\n", 1)[0].strip()
    return line.strip("*` ").rstrip(".").strip() or None


def reasoning_body(output: str) -> str:
    """Everything before the last answer marker (the reasoning part of a trace)."""
    matches = list(_MARKER.finditer(output))
    return output[: matches[-1].start()] if matches else output


def precision_recall(predicted: set[str], truth: set[str]) -> tuple[float, float]:
    """Set precision and recall; an empty side counts as perfectly precise / fully recalled."""
    hit = len(predicted & truth)
    precision = hit / len(predicted) if predicted else 1.0
    recall = hit / len(truth) if truth else 1.0
    return precision, recall
