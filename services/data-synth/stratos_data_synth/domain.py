"""Data synthesis rules, free of messaging and HTTP.

- Alignment: keep a teacher trace only if its extracted answer grades correct
  (rejection sampling); at most `keep` per question, shortest first.
- Injection: the teacher saw the answer, so a correct final answer proves
  little; a trace is kept only if it also reasons (`Task.check_steps`: steps
  present and, where the task can check them, consistent).
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

REJECT_WRONG = "wrong-answer"
REJECT_NO_ANSWER = "no-answer"
REJECT_NO_STEPS = "no-reasoning-steps"
REJECT_DUPLICATE = "duplicate"


def normalised_hash(text: str) -> str:
    return hashlib.sha256(re.sub(r"\s+", " ", text.strip().lower()).encode()).hexdigest()


@dataclass
class Verdict:
    accepted: bool
    reason: str = ""


def judge(task: Task, mode: DistillationMode, trace: str, example: Example) -> Verdict:
    """Accept or reject one trace, with the reason counted in DataReady.

    Strict grading: a kept trace is what the student learns to write, so its answer must be on the task's
    ``Answer:`` line; one found only by a flexible extraction (last number, ``####``) counts as no answer.
    """
    grade = task.grade_strict(trace, example)
    if grade.extracted is None:
        return Verdict(False, REJECT_NO_ANSWER)
    if not grade.correct:
        return Verdict(False, REJECT_WRONG)
    if mode == "injection":
        steps = task.check_steps(trace, example)
        if not steps.ok:
            return Verdict(False, REJECT_NO_STEPS)
    return Verdict(True)


@dataclass
class DatasetBuilder:
    """Accumulates accepted traces per question, de-duplicated, and counts rejections by reason."""

    task: Task
    mode: DistillationMode
    keep_per_question: int
    accepted: dict[str, list[str]] = field(default_factory=dict)
    rejected: Counter[str] = field(default_factory=Counter)
    asked: int = 0
    passed: int = 0
    """Traces that passed verification (before de-duplication): the acceptance rate's numerator."""
    _seen: set[tuple[str, str]] = field(default_factory=set)

    def offer(self, example: Example, trace: str) -> bool:
        self.asked += 1
        verdict = judge(self.task, self.mode, trace, example)
        if not verdict.accepted:
            self.rejected[verdict.reason] += 1
            return False
        self.passed += 1
        key = (example.id, normalised_hash(trace))
        if key in self._seen:
            self.rejected[REJECT_DUPLICATE] += 1
            return False
        self._seen.add(key)
        self.accepted.setdefault(example.id, []).append(trace)
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
