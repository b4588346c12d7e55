"""Answer extraction shared by the task protocol (`base`) and the shipped tasks; it imports no task module."""

from __future__ import annotations

import re
from typing import Literal

ANSWER_MARKER = "Answer:"
"""Every shipped task asks the model to end with a line ``Answer: <final answer>``."""

Extraction = Literal["strict", "hash", "boxed", "last-number", "regex"]
"""How an answer was found in an output: the ``Answer:`` line (``strict``), ``#### x``, ``\\boxed{x}``, the last
number (numeric tasks only), or a user task's own ``regex:`` pattern."""

_MARKER = re.compile(re.escape(ANSWER_MARKER), re.IGNORECASE)
_BOXED = "\\boxed{"
_LAST_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")


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


def _clean(text: str) -> str:
    return text.strip().strip("*`$ ").rstrip(".").strip()


def boxed_text(output: str) -> str | None:
    """The content of the LAST ``\\boxed{...}`` (braces may nest), or None."""
    start = output.rfind(_BOXED)
    if start < 0:
        return None
    depth, i = 1, start + len(_BOXED)
    for j in range(i, len(output)):
        if output[j] == "{":
            depth += 1
        elif output[j] == "}":
            depth -= 1
            if depth == 0:
                # LaTeX writes a thousands separator as {,}
                return _clean(output[i:j].replace("{,}", ",")) or None
    return None


def final_answer(output: str, *, numeric: bool = False) -> tuple[str | None, Extraction | None]:
    """The final answer's text and how it was found, strict first, as evaluation harnesses do.

    1. ``strict``: the last ``Answer:`` line (what every shipped task asks for);
    2. ``hash``: the line after the last ``####`` (GSM8K's format);
    3. ``boxed``: the last ``\\boxed{...}`` (LaTeX-style math answers);
    4. ``last-number`` (only when ``numeric``): the last number anywhere in the output.

    A later rule is tried only when the earlier ones find nothing. Only ``strict`` proves the model followed
    the format: data-synth keeps a flexibly-read trace only rewritten to end on the ``Answer:`` line
    (:meth:`Task.canonical_trace`).
    """
    text = answer_text(output)
    if text is not None:
        return text, "strict"
    if "####" in output:
        rest = _clean(output.rsplit("####", 1)[1].strip().split("\n", 1)[0])
        if rest:
            return rest, "hash"
    boxed = boxed_text(output)
    if boxed is not None:
        return boxed, "boxed"
    if numeric:
        numbers = _LAST_NUMBER.findall(output)
        if numbers:
            return numbers[-1], "last-number"
    return None, None


def with_answer_line(output: str, answer: str, how: Extraction | None) -> str:
    """``output`` cut where extraction ``how`` found its answer, then ended with the line ``Answer: answer``.

    What follows the answer (a repeated solution, a closing remark) goes. An ``Answer:`` or ``####`` line is
    replaced by the canonical answer line; a line that holds the answer mid-sentence (an ``Answer:`` quoted in
    prose, a ``\\boxed{}``, the last number) is kept and the answer line follows it.
    """
    if how == "strict":
        marker = list(_MARKER.finditer(output))[-1].start()
        line_start = output.rfind("\n", 0, marker) + 1
        starts_line = not output[line_start:marker].strip(" *`#>-")
        head = output[:line_start] if starts_line else _through_line(output, marker)
    elif how == "hash":
        head = output.rsplit("####", 1)[0]
    elif how == "boxed":
        head = _through_line(output, output.rfind(_BOXED))
    elif how == "last-number":
        numbers = list(_LAST_NUMBER.finditer(output))
        head = _through_line(output, numbers[-1].start()) if numbers else output
    else:
        head = output
    return f"{head.rstrip()}\n{ANSWER_MARKER} {answer}".lstrip()


def _through_line(text: str, position: int) -> str:
    """``text`` up to the end of the line holding ``position``."""
    end = text.find("\n", max(0, position))
    return text if end < 0 else text[:end]


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
