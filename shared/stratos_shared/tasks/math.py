"""Math word problems: GSM8K-format data and a generator of tiny multi-step problems.

Answers are numbers; grading compares numbers, not strings, so ``1,234``,
``$1234.00`` and ``1234 apples`` all count as 1234. The generator makes short
1-3 step problems with small integers so a very small student can learn them
on a CPU in minutes, while still needing real intermediate steps.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path

from stratos_shared.tasks import _arith
from stratos_shared.tasks._common import final_answer, reasoning_body
from stratos_shared.tasks._jsonl import read_records, record_id
from stratos_shared.tasks.base import ANSWER_MARKER, Example, Extraction, Grade, StepCheck, Task
from stratos_shared.tasks.errors import TaskConfigError, TaskDataError, TaskError
from stratos_shared.tasks.kinds import TaskKind, register_kind

KIND = "math"

SYSTEM_PROMPT = (
    "You solve math word problems. Work step by step, writing each calculation as an "
    "equation such as '3 + 4 = 7'. End with a final line of the form "
    f"'{ANSWER_MARKER} <number>' containing only the number."
)

_NUMBER = re.compile(r"(?P<sign>-\s*)?\$?\s*(?P<int>\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?P<frac>\.\d+)?")
_NUM = r"\$?\d[\d,]*(?:\.\d+)?"
_STATEMENT = re.compile(rf"((?:\(\s*)*{_NUM}(?:\s*\)*\s*[-+*/×x÷]\s*\(*\s*{_NUM}\s*\)*)+)\s*=\s*(-?\s*{_NUM})")


def parse_number(text: str) -> str | None:
    """The first number in ``text`` in canonical form (``"1,234.50 apples"`` -> ``"1234.5"``)."""
    m = _NUMBER.search(text)
    if m is None:
        return None
    raw = ("-" if m.group("sign") else "") + m.group("int").replace(",", "") + (m.group("frac") or "")
    return canonical_number(raw)


def canonical_number(raw: str) -> str | None:
    """Normalise a plain number string: no trailing zeros, no exponent, ``-0`` -> ``0``."""
    try:
        value = Decimal(raw.replace(",", "").strip())
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def extract_number(output: str) -> str | None:
    """The final numeric answer (see :func:`extract_number_how`)."""
    return extract_number_how(output)[0]


def extract_number_how(output: str) -> tuple[str | None, Extraction | None]:
    """The final numeric answer and how it was found: the last ``Answer:`` line, else ``####``, else
    ``\\boxed{}``, else the last number in the output. An ``Answer:`` line without a number is no answer."""
    text, how = final_answer(output, numeric=True)
    value = parse_number(text) if text is not None else None
    return (value, how) if value is not None else (None, None)


def numbers_equal(a: str, b: str) -> bool:
    """Numeric equality of two canonical number strings."""
    try:
        return Decimal(a) == Decimal(b)
    except InvalidOperation:
        return False


def check_arithmetic(output: str) -> StepCheck:
    """Every ``expr = value`` statement in the reasoning must be right, there must be one, and the last one must
    arrive at the answer the output gives.

    The last rule is what keeps reverse reasoning honest: a teacher told the answer can write a right equation
    that has nothing to do with it ("6 + 3 = 9. So the answer is 3.", or the prompt's own example "3 + 4 = 7"),
    then state the answer it was given.
    """
    body = reasoning_body(output)
    found = 0
    last: Fraction | None = None
    for m in _STATEMENT.finditer(body):
        lhs, rhs = m.group(1), m.group(2).replace(" ", "")
        try:
            left = _arith.evaluate(lhs)
            right = _arith.evaluate(rhs.lstrip("-"))
        except ValueError:
            continue
        if rhs.startswith("-"):
            right = -right
        found += 1
        if left != right:
            return StepCheck(ok=False, reason=f"wrong arithmetic: '{m.group(0).strip()}'", problem="wrong-step")
        last = right
    if found == 0 or last is None:
        return StepCheck(
            ok=False, reason="no arithmetic steps such as '3 + 4 = 7' before the answer", problem="missing"
        )
    answer = extract_number(output)
    if answer is not None and last != Fraction(answer):
        return StepCheck(
            ok=False,
            reason=f"the reasoning ends on {last}, not on the answer {answer}",
            problem="ends-elsewhere",
        )
    return StepCheck(ok=True)


# --------------------------------------------------------------------------- generator

_NAMES = ("Tom", "Ann", "Sam", "Mia", "Ben", "Eva", "Leo", "Zoe")
_ITEMS = ("apples", "pens", "cards", "books", "coins", "shells", "stickers", "marbles")
_ADD = ("buys {b} more", "finds {b} more", "gets {b} more")
_SUB = ("gives away {b}", "loses {b}", "sells {b}")
_MUL = {2: "The {item} double", 3: "The {item} triple"}

_START_RE = re.compile(r"^(?P<name>[A-Z][a-z]+) has (?P<a>\d+) (?P<item>[a-z]+)\.$")
_ADD_RE = re.compile(r"^(?P<name>[A-Z][a-z]+) (?:buys|finds|gets) (?P<b>\d+) more\.$")
_SUB_RE = re.compile(r"^(?P<name>[A-Z][a-z]+) (?:gives away|loses|sells) (?P<b>\d+)\.$")
_MUL_RE = re.compile(r"^The (?P<item>[a-z]+) (?P<w>double|triple)\.$")
_ASK_RE = re.compile(r"^How many (?P<item>[a-z]+) does (?P<name>[A-Z][a-z]+) have now\?$")


@dataclass(frozen=True)
class WordProblem:
    """A generated problem: a start amount and a list of ``(op, operand)`` steps."""

    name: str
    item: str
    start: int
    steps: tuple[tuple[str, int], ...]

    def question(self) -> str:
        parts = [f"{self.name} has {self.start} {self.item}."]
        rng = random.Random(f"{self.name}{self.item}{self.start}{self.steps}")
        for op, n in self.steps:
            if op == "+":
                parts.append(f"{self.name} {rng.choice(_ADD).format(b=n)}.")
            elif op == "-":
                parts.append(f"{self.name} {rng.choice(_SUB).format(b=n)}.")
            else:
                parts.append(_MUL[n].format(item=self.item) + ".")
        parts.append(f"How many {self.item} does {self.name} have now?")
        return " ".join(parts)

    def values(self, steps: Sequence[tuple[str, int]] | None = None) -> list[int]:
        """Running totals after each step (first element is the start)."""
        out = [self.start]
        for op, n in steps if steps is not None else self.steps:
            cur = out[-1]
            out.append(cur + n if op == "+" else cur - n if op == "-" else cur * n)
        return out

    def answer(self) -> int:
        return self.values()[-1]

    def trace(self, steps: Sequence[tuple[str, int]] | None = None) -> str:
        use = list(steps if steps is not None else self.steps)
        vals = self.values(use)
        lines = [f"Start: {self.start}"]
        for (op, n), before, after in zip(use, vals[:-1], vals[1:], strict=True):
            lines.append(f"{before} {op} {n} = {after}")
        lines.append(f"{ANSWER_MARKER} {vals[-1]}")
        return "\n".join(lines)


def parse_word_problem(question: str) -> WordProblem | None:
    """Read back a generated question (None for anything else, e.g. GSM8K text)."""
    sentences = re.findall(r"[^.?]+[.?]", question.strip())
    sentences = [s.strip() for s in sentences]
    if len(sentences) < 3:
        return None
    start = _START_RE.match(sentences[0])
    ask = _ASK_RE.match(sentences[-1])
    if start is None or ask is None:
        return None
    name, item = start.group("name"), start.group("item")
    if ask.group("name") != name or ask.group("item") != item:
        return None
    steps: list[tuple[str, int]] = []
    for s in sentences[1:-1]:
        if (m := _ADD_RE.match(s)) and m.group("name") == name:
            steps.append(("+", int(m.group("b"))))
        elif (m := _SUB_RE.match(s)) and m.group("name") == name:
            steps.append(("-", int(m.group("b"))))
        elif (m := _MUL_RE.match(s)) and m.group("item") == item:
            steps.append(("*", 2 if m.group("w") == "double" else 3))
        else:
            return None
    return WordProblem(name, item, int(start.group("a")), tuple(steps))


def generate_problem(rng: random.Random, n_steps: int) -> WordProblem:
    """One problem with ``n_steps`` operations, small numbers and a non-negative result."""
    start = rng.randint(1, 12)
    cur = start
    steps: list[tuple[str, int]] = []
    for _ in range(n_steps):
        choices = ["+", "-"] + (["*"] if cur <= 30 else [])
        op = rng.choice(choices if cur > 1 else ["+", "*"])
        if op == "+":
            n = rng.randint(1, 9)
            cur += n
        elif op == "-":
            n = rng.randint(1, min(9, cur - 1))
            cur -= n
        else:
            n = rng.choice((2, 3))
            cur *= n
        steps.append((op, n))
    return WordProblem(rng.choice(_NAMES), rng.choice(_ITEMS), start, tuple(steps))


class MathTask(Task):
    """Numeric word problems graded by numeric equality."""

    name = KIND

    def __init__(self, examples: Sequence[Example], solutions: dict[str, str] | None = None) -> None:
        self._examples = list(examples)
        self._solutions = dict(solutions or {})

    @classmethod
    def from_jsonl(cls, path: str | Path, data: bytes | None = None) -> MathTask:
        """Load GSM8K-format JSONL: ``question`` plus ``answer`` ending in ``#### <number>``."""
        examples: list[Example] = []
        solutions: dict[str, str] = {}
        seen: set[str] = set()
        for number, rec in read_records(path, ("question", "answer"), data):
            ident = record_id(path, number, rec, seen)
            raw: str = rec["answer"]
            if "####" not in raw:
                raise TaskDataError(path, number, "answer has no '#### <number>' final line")
            solution, final = raw.rsplit("####", 1)
            value = parse_number(final)
            if value is None:
                raise TaskDataError(path, number, f"no number after '####' (got {final.strip()!r})")
            steps = solution.count("\n") + 1 if solution.strip() else 0
            stratum = f"steps={min(steps, 8)}" if steps else ""
            examples.append(Example(id=ident, question=rec["question"].strip(), answer=value, stratum=stratum))
            if solution.strip():
                solutions[ident] = solution.strip()
        return cls(examples, solutions)

    @classmethod
    def generate(cls, *, seed: int = 0, size: int = 1000, min_steps: int = 1, max_steps: int = 3) -> MathTask:
        """``size`` seeded problems, spread evenly over ``min_steps..max_steps`` (the strata)."""
        if not 1 <= min_steps <= max_steps <= 6:
            raise TaskConfigError("math generator needs 1 <= min_steps <= max_steps <= 6")
        rng = random.Random(f"math:{seed}")
        examples: list[Example] = []
        seen: set[str] = set()
        strata = list(range(min_steps, max_steps + 1))
        attempts = 0
        while len(examples) < size:
            attempts += 1
            if attempts > size * 50:
                raise TaskConfigError(f"cannot generate {size} distinct math problems; ask for fewer")
            n_steps = strata[len(examples) % len(strata)]
            problem = generate_problem(rng, n_steps)
            q = problem.question()
            if q in seen:
                continue
            seen.add(q)
            examples.append(
                Example(
                    id=f"math-{seed}-{len(examples)}",
                    question=q,
                    answer=str(problem.answer()),
                    stratum=f"steps={n_steps}",
                )
            )
        return cls(examples)

    def examples(self) -> Sequence[Example]:
        return self._examples

    def system_prompt(self) -> str:
        return SYSTEM_PROMPT

    def extract_answer(self, output: str) -> str | None:
        return extract_number(output)

    def grade(self, output: str, example: Example) -> Grade:
        got, how = extract_number_how(output)
        return Grade(correct=got is not None and numbers_equal(got, example.answer), extracted=got, extraction=how)

    def check_steps(self, output: str, example: Example) -> StepCheck:
        return check_arithmetic(output)

    def reference_trace(self, example: Example) -> str:
        problem = parse_word_problem(example.question)
        if problem is not None:
            return problem.trace()
        solution = self._solutions.get(example.id)
        if solution is None:
            raise TaskError(f"no worked solution known for math example '{example.id}'")
        # GSM8K marks calculator calls as <<3+4=7>>; the prose already shows the step.
        text = re.sub(r"<<[^>]*>>", "", solution)
        return f"{text}\n{ANSWER_MARKER} {example.answer}"

    def wrong_trace(self, example: Example, rng: random.Random) -> str:
        problem = parse_word_problem(example.question)
        if problem is not None and problem.steps:
            # A classic slip: one operation misread (+ for -, + for ×), arithmetic itself right.
            i = rng.randrange(len(problem.steps))
            op, n = problem.steps[i]
            slip = ("-", n) if op == "+" else ("+", n)
            steps = list(problem.steps)
            steps[i] = slip
            if problem.values(steps)[-1] != problem.answer() and min(problem.values(steps)) >= 0:
                return problem.trace(steps)
        try:
            body = reasoning_body(self.reference_trace(example)).rstrip()
        except TaskError:
            body = "Working through the problem step by step."
        wrong = Decimal(example.answer) + rng.choice((-2, -1, 1, 2, 10))
        return f"{body}\n{ANSWER_MARKER} {canonical_number(str(wrong))}"


def task_for_prompt(system_prompt: str, question: str) -> tuple[Task, Example] | None:
    """Recognise a generated math question under the math system prompt (the simulator uses this)."""
    if system_prompt.strip() != SYSTEM_PROMPT:
        return None
    problem = parse_word_problem(question)
    if problem is None:
        return None
    example = Example(
        id="prompt", question=question, answer=str(problem.answer()), stratum=f"steps={len(problem.steps)}"
    )
    return MathTask([example]), example


register_kind(
    TaskKind(
        name=KIND,
        load=lambda source: MathTask.from_jsonl(source.path, source.data),
        generate=MathTask.generate,
        generator_options=frozenset({"min_steps", "max_steps"}),
    )
)
