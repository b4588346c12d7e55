"""The task protocol every stage shares.

A task knows how to load its examples, turn one into a chat prompt (forward, or
reverse when the answer is given), pull the final answer out of model output,
and grade it. Teacher evaluation, data synthesis, pre-screening, training
rewards and the deployer's accuracy check all go through this one interface, so
"correct" means the same thing in every stage.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from stratos_shared.tasks._common import ANSWER_MARKER, Extraction, with_answer_line
from stratos_shared.tasks.errors import TaskError

__all__ = [
    "ANSWER_MARKER",
    "FLEXIBLE_EXTRACTIONS",
    "ChatMessage",
    "Example",
    "Extraction",
    "Grade",
    "StepCheck",
    "StepProblem",
    "Task",
]

ChatMessage = dict[str, str]
"""One OpenAI-style chat message: ``{"role": ..., "content": ...}``."""


class Example(BaseModel):
    """One task item with its ground-truth answer."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Stable id, unique within the task's data.")
    question: str = Field(description="The input shown to the model.")
    answer: str = Field(description="The ground-truth final answer, in the task's canonical form.")
    stratum: str = Field(default="", description="Group used for stratified sampling (difficulty, size, ...).")


FLEXIBLE_EXTRACTIONS: frozenset[str] = frozenset({"hash", "boxed", "last-number"})
"""Extractions that find an answer the model did not put where the prompt asked: a trace verified by one must also
show reasoning that reaches it (data-synth), and is kept rewritten to end on the ``Answer:`` line."""


class Grade(BaseModel):
    """The verdict on one model output."""

    model_config = ConfigDict(frozen=True)

    correct: bool
    extracted: str | None = Field(description="The answer extracted from the output, None when none was found.")
    precision: float | None = Field(
        default=None, description="Set-valued tasks: share of predicted items that are right."
    )
    recall: float | None = Field(default=None, description="Set-valued tasks: share of true items that were predicted.")
    extraction: Extraction | None = Field(
        default=None,
        description="How the answer was found: 'strict' (the Answer: line), 'hash' (#### x), 'boxed' (\\boxed{x}), "
        "'last-number' (numeric tasks) or 'regex' (a user task's pattern); None when none was found.",
    )


StepProblem = Literal["missing", "wrong-step", "ends-elsewhere"]
"""Why a trace's reasoning was refused: no steps shown, a step that is wrong, or steps that are right but end on
another value than the answer the trace gives (the answer was copied from the prompt, not derived)."""


class StepCheck(BaseModel):
    """Whether a reasoning trace shows real, consistent steps (used by knowledge injection)."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    reason: str = ""
    problem: StepProblem | None = Field(
        default=None, description="What was wrong when not ok; None for a task that does not say (counted as missing)."
    )


class Task(ABC):
    """A task: examples, prompts, answer extraction and grading."""

    name: str

    @abstractmethod
    def examples(self) -> Sequence[Example]:
        """All examples of the task, in a stable order."""

    @abstractmethod
    def system_prompt(self) -> str:
        """Instructions that define the task and the required output format."""

    def prompt(self, example: Example) -> list[ChatMessage]:
        """Forward prompt a teacher gets, instructions and question (teacher evaluation, knowledge alignment)."""
        return [
            {"role": "system", "content": self.system_prompt()},
            {"role": "user", "content": example.question},
        ]

    def student_prompt(self, example: Example) -> list[ChatMessage]:
        """What a distilled student is trained, evaluated and served on: the teacher's prompt unless a task says.

        A task whose instructions carry knowledge the traces spell out anyway can drop them here: the student
        learns that knowledge from the traces, and every training step and served request gets cheaper.
        """
        return self.prompt(example)

    def reverse_prompt(self, example: Example) -> list[ChatMessage]:
        """Reverse prompt: question plus correct answer; the model writes reasoning that leads to it."""
        return [
            {"role": "system", "content": self.system_prompt()},
            {
                "role": "user",
                "content": (
                    f"{example.question}\n\nThe correct final answer is: {example.answer}\n"
                    "Write the step-by-step reasoning that derives this answer, then end with the line "
                    f"'{ANSWER_MARKER} {example.answer}'."
                ),
            },
        ]

    @abstractmethod
    def extract_answer(self, output: str) -> str | None:
        """The final answer in canonical form, or None when the output has none."""

    @abstractmethod
    def grade(self, output: str, example: Example) -> Grade:
        """Grade a model output against the example's ground truth."""

    def grade_strict(self, output: str, example: Example) -> Grade:
        """:meth:`grade`, but an answer found only by a flexible extraction (``####``, ``\\boxed``, the last
        number) counts as no answer.

        It measures whether a model follows the task's format (benchmarks report it beside :meth:`grade`).
        Verification, evaluation and rewards all use the forgiving :meth:`grade`; data-synth makes a kept trace
        strict by rewriting its end (:meth:`canonical_trace`).
        """
        grade = self.grade(output, example)
        if grade.extraction not in FLEXIBLE_EXTRACTIONS:
            return grade
        has_sets = grade.precision is not None
        return Grade(
            correct=False, extracted=None, precision=0.0 if has_sets else None, recall=0.0 if has_sets else None
        )

    def check_steps(self, output: str, example: Example) -> StepCheck:
        """Check that a trace reasons rather than just stating the answer.

        The default only requires some reasoning text before the answer line;
        tasks that can verify intermediate steps (arithmetic, tile groupings)
        override this.
        """
        body = output.split(ANSWER_MARKER)[0].strip()
        if len(body.split()) < 3:
            return StepCheck(ok=False, reason="no reasoning steps before the answer", problem="missing")
        return StepCheck(ok=True)

    def canonical_trace(self, output: str, example: Example, grade: Grade) -> str:
        """``output``, a trace graded correct, as a student should learn to write it: ending on the answer line.

        Whatever extraction found the answer (the ``Answer:`` line, ``#### 9``, ``\\boxed{9}``, "The answer is
        9."), the trace is cut after the line that gave it and ends with ``Answer: <answer in canonical form>``,
        so a teacher that does not follow the format still teaches the format evaluation reads strictly. A user
        task's own ``regex:`` format is left as the teacher wrote it.
        """
        if grade.extraction is None or grade.extraction == "regex":
            return output
        return with_answer_line(output, example.answer, grade.extraction)

    def reference_trace(self, example: Example) -> str:
        """A correct step-by-step trace ending in the answer line.

        It defines what good reasoning looks like for the task and is what the
        teacher simulator answers with. Tasks that cannot solve their own
        questions (arbitrary user data) keep this default and refuse.
        """
        raise TaskError(f"task '{self.name}' cannot write a worked solution for its examples")

    def wrong_trace(self, example: Example, rng: random.Random) -> str:
        """A plausible but wrong trace ending in a wrong answer line (the simulator's mistakes).

        The default states a wrong answer without reasoning; tasks override it
        with a realistic slip (misread operation, missed tile...).
        """
        return f"I think it is this.\n{ANSWER_MARKER} not {example.answer}"
