"""Data synthesis rules, free of messaging and HTTP.

- Alignment: keep a teacher trace only if its extracted answer grades correct
  (rejection sampling); at most `keep` per question, shortest first.
- Injection: the teacher saw the answer, so a correct final answer proves
  little; a trace is kept only if it also reasons (`Task.check_steps`: steps
  present and, where the task can check them, right and ending on the answer).
- Both: the answer is read as teacher-eval reads it (the task's ``Answer:``
  line, else ``####``, ``\\boxed{}``, the last number), so a real teacher that
  answers "The answer is: 9" is judged by what it answered, not by its format.
  A trace found right only by such a flexible extraction must also pass
  `check_steps` (in alignment too: it did not follow the format, so its
  reasoning has to show it reached the answer), and is kept rewritten to end
  on the task's answer line (`Task.canonical_trace`), so the student learns
  the format evaluation reads strictly. A trace read by its last number that
  stops mid-sentence was cut off, and is refused. Which extraction verified
  each trace is counted (DataReady ``verified_by_extraction``).
- Both: near-identical traces *for the same question* are dropped
  (whitespace/case-insensitive hash). Different questions may share a trace
  (two word problems over the same numbers) and both are kept.

Records use the chat format the trainer consumes (docs/datasets.md): the user
turn is always the forward question, also for injection traces, so the student
learns to reason *to* the answer rather than from it.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from stratos_shared.contracts.events import DistillationMode
from stratos_shared.tasks import Example, Task
from stratos_shared.tasks.base import FLEXIBLE_EXTRACTIONS, StepProblem

REJECT_WRONG = "wrong-answer"
REJECT_NO_ANSWER = "no-answer"
REJECT_NO_STEPS = "no-reasoning-steps"
REJECT_WRONG_STEP = "wrong-step"
REJECT_ENDS_ELSEWHERE = "reasoning-ends-elsewhere"
REJECT_CUT_OFF = "cut-off"
REJECT_DUPLICATE = "duplicate"
REJECT_GRADING_TIMEOUT = "grading-timeout"

_STEP_REJECTIONS: dict[StepProblem | None, str] = {
    "missing": REJECT_NO_STEPS,
    "wrong-step": REJECT_WRONG_STEP,
    "ends-elsewhere": REJECT_ENDS_ELSEWHERE,
    None: REJECT_NO_STEPS,
}


def normalised_hash(text: str) -> str:
    return hashlib.sha256(re.sub(r"\s+", " ", text.strip().lower()).encode()).hexdigest()


@dataclass
class Verdict:
    accepted: bool
    reason: str = ""
    extraction: str | None = None
    """How the answer was found (``strict``, ``hash``, ``boxed``, ``last-number``, ``regex``)."""
    trace: str = ""
    """An accepted trace as it is kept: ending on the task's answer line."""


def judge(task: Task, mode: DistillationMode, trace: str, example: Example) -> Verdict:
    """Accept or reject one trace, with the reason counted in DataReady (see the module docstring)."""
    grade = task.grade(trace, example)
    if grade.extracted is None:
        return Verdict(False, REJECT_NO_ANSWER)
    if not grade.correct:
        return Verdict(False, REJECT_WRONG)
    if grade.extraction == "last-number" and ends_mid_sentence(trace):
        return Verdict(False, REJECT_CUT_OFF)
    if mode == "injection" or grade.extraction in FLEXIBLE_EXTRACTIONS:
        steps = task.check_steps(trace, example)
        if not steps.ok:
            return Verdict(False, _STEP_REJECTIONS[steps.problem])
    return Verdict(True, extraction=grade.extraction, trace=task.canonical_trace(trace, example, grade))


_MID_SENTENCE = re.compile(r"[A-Za-z,]\s*$")


def ends_mid_sentence(trace: str) -> bool:
    """An output that stops on a word or a comma was cut off by the token limit: its last number is whatever it
    was writing about then ("... add 5 shells to 9 shells to"), not an answer it gave."""
    return _MID_SENTENCE.search(trace) is not None


@dataclass
class DatasetBuilder:
    """Accumulates accepted traces per question, de-duplicated, and counts rejections by reason."""

    task: Task
    mode: DistillationMode
    keep_per_question: int
    accepted: dict[str, list[str]] = field(default_factory=dict)
    rejected: Counter[str] = field(default_factory=Counter)
    verified_by_extraction: Counter[str] = field(default_factory=Counter)
    """Traces that passed verification, by the extraction that found their answer."""
    asked: int = 0
    passed: int = 0
    """Traces that passed verification (before de-duplication): the acceptance rate's numerator."""
    _seen: set[tuple[str, str]] = field(default_factory=set)

    def offer(self, example: Example, trace: str) -> bool:
        """Judge `trace` and keep it if it passes (judging here, on the caller's thread)."""
        return self.record(example, judge(self.task, self.mode, trace, example))

    def record(self, example: Example, verdict: Verdict) -> bool:
        """Count a trace judged elsewhere (off the event loop) and keep it if it passed and is new."""
        self.asked += 1
        if not verdict.accepted:
            self.rejected[verdict.reason] += 1
            return False
        self.passed += 1
        self.verified_by_extraction[verdict.extraction or "strict"] += 1
        key = (example.id, normalised_hash(verdict.trace))
        if key in self._seen:
            self.rejected[REJECT_DUPLICATE] += 1
            return False
        self._seen.add(key)
        self.accepted.setdefault(example.id, []).append(verdict.trace)
        return True

    def has_enough(self, example: Example) -> bool:
        return len(self.accepted.get(example.id, [])) >= self.keep_per_question

    def records(self, examples: list[Example]) -> list[dict[str, Any]]:
        """Chat-format training records: at most `keep_per_question` per question, shortest valid traces first."""
        out: list[dict[str, Any]] = []
        for example in examples:
            for index, trace in enumerate(sorted(self.accepted.get(example.id, []), key=len)[: self.keep_per_question]):
                out.append(chat_record(self.task, example, trace, suffix=index))
        return out

    @property
    def accepted_count(self) -> int:
        return sum(min(len(v), self.keep_per_question) for v in self.accepted.values())


def chat_record(task: Task, example: Example, trace: str, suffix: int = 0) -> dict[str, Any]:
    return {
        "id": f"{example.id}#{suffix}",
        "example_id": example.id,
        "messages": [*task.student_prompt(example), {"role": "assistant", "content": trace}],
        "answer": example.answer,
    }


def grpo_record(task: Task, example: Example) -> dict[str, Any]:
    """GRPO's prompt/answer format: the reward comes from grading the student's own completion."""
    return {"id": example.id, "prompt": task.student_prompt(example), "answer": example.answer}


def eval_record(task: Task, example: Example) -> dict[str, Any]:
    return {"id": example.id, "prompt": task.student_prompt(example), "answer": example.answer}
