"""User tasks: any JSONL of ``question``/``answer`` (optional ``id``) with a declared grader.

Built-in graders: ``exact`` (case- and space-insensitive string match),
``numeric`` (number equality, as in math), ``set`` (comma-separated items,
order-free, with precision/recall), ``regex`` (the stored answer is a
pattern the extracted answer must fully match) and ``regex:<pattern>`` (the
pattern picks the answer out of the output, its first group if it has one,
then compares it like ``exact``; for outputs without an ``Answer:`` line). Both kinds of pattern are the
user's, so they run in RE2 (`stratos_shared.tasks.patterns`): linear time, refused at load when RE2 cannot run
them. Any other name is looked up as
an entry point in the ``stratos.graders`` group; it must be a callable
``(output: str, example: Example) -> Grade``, so a team can plug in its own
grading without touching Stratos.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path

from stratos_shared.tasks._common import final_answer, precision_recall
from stratos_shared.tasks._jsonl import read_records, record_id
from stratos_shared.tasks.base import ANSWER_MARKER, Example, Grade, Task
from stratos_shared.tasks.errors import TaskConfigError, TaskDataError, TaskError
from stratos_shared.tasks.kinds import TaskKind, register_kind
from stratos_shared.tasks.math import canonical_number, extract_number, extract_number_how, numbers_equal, parse_number
from stratos_shared.tasks.patterns import PatternError, compile_user_pattern, full_match

KIND = "jsonl"
GRADER_GROUP = "stratos.graders"
BUILTIN_GRADERS = ("exact", "numeric", "set", "regex")

GraderFn = Callable[[str, Example], Grade]


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def _items(text: str) -> set[str]:
    return {_norm(x) for x in re.split(r"[,;]", text) if x.strip()}


def grade_exact(output: str, example: Example) -> Grade:
    got, how = final_answer(output)
    return Grade(correct=got is not None and _norm(got) == _norm(example.answer), extracted=got, extraction=how)


def grade_numeric(output: str, example: Example) -> Grade:
    got, how = extract_number_how(output)
    want = parse_number(example.answer)
    return Grade(
        correct=got is not None and want is not None and numbers_equal(got, want), extracted=got, extraction=how
    )


def grade_set(output: str, example: Example) -> Grade:
    got, how = final_answer(output)
    if got is None:
        return Grade(correct=False, extracted=None, precision=0.0, recall=0.0)
    predicted, truth = _items(got), _items(example.answer)
    precision, recall = precision_recall(predicted, truth)
    return Grade(correct=predicted == truth, extracted=got, precision=precision, recall=recall, extraction=how)


def grade_regex(output: str, example: Example) -> Grade:
    got, how = final_answer(output)
    try:
        correct = got is not None and full_match(example.answer, got)
    except PatternError:  # refused when the data was loaded; an example built elsewhere grades as wrong
        correct = False
    return Grade(correct=correct, extracted=got, extraction=how)


_BUILTIN: dict[str, GraderFn] = {
    "exact": grade_exact,
    "numeric": grade_numeric,
    "set": grade_set,
    "regex": grade_regex,
}


def regex_extractor(pattern: str) -> GraderFn:
    """``regex:<pattern>``: the pattern finds the answer in the output; compared like ``exact``."""
    try:
        compiled = compile_user_pattern(pattern)
    except PatternError as exc:
        raise TaskConfigError(f"grader 'regex:{pattern[:100]}' is not a valid regular expression here: {exc}") from None

    def grade(output: str, example: Example) -> Grade:
        matches = list(compiled.finditer(output))
        if not matches:
            return Grade(correct=False, extracted=None)
        last = matches[-1]
        got = ((last.group(1) if compiled.groups else last.group(0)) or "").strip()
        return Grade(correct=_norm(got) == _norm(example.answer), extracted=got, extraction="regex")

    return grade


def load_grader(name: str) -> GraderFn:
    """A built-in grader, ``regex:<pattern>``, or the ``stratos.graders`` entry point of that name."""
    if name in _BUILTIN:
        return _BUILTIN[name]
    if name.startswith("regex:"):
        return regex_extractor(name.removeprefix("regex:"))
    found = [ep for ep in entry_points(group=GRADER_GROUP) if ep.name == name]
    if not found:
        raise TaskConfigError(
            f"unknown grader '{name}': use one of {', '.join(BUILTIN_GRADERS)} "
            f"or install a plug-in registering it under the '{GRADER_GROUP}' entry point group"
        )
    try:
        grader = found[0].load()
    except Exception as exc:  # a broken plug-in must not look like a missing one
        raise TaskConfigError(f"grader plug-in '{name}' failed to load: {exc}") from exc
    if not callable(grader):
        raise TaskConfigError(f"grader plug-in '{name}' is not callable")
    return grader


class UserTask(Task):
    """A task defined by the user's data and the grader they declared."""

    name = KIND

    def __init__(self, examples: Sequence[Example], grader: str = "exact") -> None:
        self.grader_name = grader
        self._grader = load_grader(grader)
        self._examples = list(examples)
        self._reasoning: dict[str, str] = {}

    @classmethod
    def from_jsonl(cls, path: str | Path, grader: str = "exact", data: bytes | None = None) -> UserTask:
        """Load ``{"id"?, "question", "answer", "reasoning"?}`` lines (from ``data`` when given, `path` naming
        it); regex answers must compile."""
        task = cls([], grader)
        seen: set[str] = set()
        for number, rec in read_records(path, ("question", "answer"), data):
            ident = record_id(path, number, rec, seen)
            answer = rec["answer"].strip()
            if grader == "regex":
                try:
                    compile_user_pattern(answer)
                except PatternError as exc:
                    raise TaskDataError(path, number, f"answer is not a valid regular expression here: {exc}") from None
            if grader == "numeric" and parse_number(answer) is None:
                raise TaskDataError(path, number, f"answer {answer!r} is not a number")
            stratum = rec.get("stratum", "")
            task._examples.append(
                Example(
                    id=ident,
                    question=rec["question"],
                    answer=answer,
                    stratum=stratum if isinstance(stratum, str) else "",
                )
            )
            if isinstance(rec.get("reasoning"), str) and rec["reasoning"].strip():
                task._reasoning[ident] = rec["reasoning"].strip()
        return task

    def examples(self) -> Sequence[Example]:
        return self._examples

    def system_prompt(self) -> str:
        kind = {
            "numeric": "a number",
            "set": "a comma-separated list",
        }.get(self.grader_name, "the final answer only")
        return (
            "Answer the question. Think step by step, then end with a final line of the form "
            f"'{ANSWER_MARKER} <answer>' where <answer> is {kind}."
        )

    def extract_answer(self, output: str) -> str | None:
        if self.grader_name == "numeric":
            return extract_number(output)
        if self.grader_name.startswith("regex:"):
            return self._grader(output, Example(id="", question="", answer="")).extracted
        return final_answer(output)[0]

    def grade(self, output: str, example: Example) -> Grade:
        return self._grader(output, example)

    def reference_trace(self, example: Example) -> str:
        """The data's own ``reasoning`` field, when the file provides one."""
        reasoning = self._reasoning.get(example.id)
        if reasoning is None:
            raise TaskError(f"user example '{example.id}' has no 'reasoning' field to serve as a worked solution")
        return f"{reasoning}\n{ANSWER_MARKER} {example.answer}"

    def wrong_trace(self, example: Example, rng: random.Random) -> str:
        if self.grader_name == "numeric":
            value = parse_number(example.answer) or "0"
            wrong = canonical_number(str(int(float(value)) + rng.choice((-1, 1, 2))))
            return f"Estimating roughly.\n{ANSWER_MARKER} {wrong}"
        items = [x.strip() for x in example.answer.split(",")]
        if self.grader_name == "set" and len(items) > 1:
            return f"Listing what I found.\n{ANSWER_MARKER} {', '.join(items[:-1])}"
        return super().wrong_trace(example, rng)


register_kind(
    TaskKind(
        name=KIND,
        load=lambda source: UserTask.from_jsonl(source.path, source.grader or "exact", source.data),
        takes_grader=True,
    )
)
