"""Custom rules: expressions over made-up operators on digits.

The operators are invented per seed (``a ⊕ b = (2*a + 1*b + 3) mod 10``), so no
pretrained model can know them: teachers read them in the system prompt, and
any skill the student shows must come from the distilled reasoning. Operators
have no precedence; questions parenthesise every inner operation.

Trace format: one line per operation, innermost first, each expanding the rule
and then taking one single-digit step at a time, e.g.
``3 ⊕ 5 = (2*3 + 1*5 + 3) mod 10 = (6 + 5 + 3) mod 10 = 14 mod 10 = 4``;
``check_steps`` re-computes every ``=`` segment (mod 10).

Teachers get the rules in the system prompt; students get the question alone
(``student_prompt``): every trace line spells out the rule it applies, so the
student learns the rules from the traces (knowledge injection in the strict
sense), and its prompt is 300 tokens shorter, which made training 3.5x faster.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stratos_shared.tasks import _arith
from stratos_shared.tasks._common import final_answer, reasoning_body
from stratos_shared.tasks._jsonl import read_records, record_id
from stratos_shared.tasks.base import ANSWER_MARKER, ChatMessage, Example, Extraction, Grade, StepCheck, Task
from stratos_shared.tasks.errors import TaskConfigError, TaskDataError
from stratos_shared.tasks.kinds import Source, TaskKind, register_kind

KIND = "custom-rules"
SYMBOLS = "⊕⊗⊙⊖◇★"
PROMPT_HEAD = "You evaluate expressions built from made-up operators on digits 0-9."


@dataclass(frozen=True)
class Rule:
    """``a SYM b = (p*a + q*b + r) mod 10`` (linear) or ``(p*a*b + r) mod 10`` (product)."""

    symbol: str
    form: str  # "lin" or "prod"
    p: int
    q: int
    r: int

    def expansion(self, a: str, b: str) -> str:
        if self.form == "lin":
            return f"({self.p}*{a} + {self.q}*{b} + {self.r}) mod 10"
        return f"({self.p}*{a}*{b} + {self.r}) mod 10"

    def text(self) -> str:
        return f"a {self.symbol} b = {self.expansion('a', 'b')}"

    def steps(self, a: int, b: int) -> list[str]:
        """What follows ``a SYM b =`` in a trace: the rule expanded, then one single-digit fact per step.

        Every product is reduced to its last digit before the sum (the same value mod 10), so each step is a
        times-table or addition fact on digits: a 1M-parameter student learns those, while with the one-shot
        ``(2*3 + 1*5 + 3) mod 10 = 14`` it stayed near chance (``bench/rules_ceiling.py``).
        """
        segments = [self.expansion(str(a), str(b))]
        if self.form == "lin":
            pa, qb = self.p * a % 10, self.q * b % 10
            segments.append(f"({pa} + {qb} + {self.r}) mod 10")
            total = pa + qb + self.r
        else:
            ab = a * b % 10
            pab = self.p * ab % 10
            if self.p != 1:
                segments.append(f"({self.p}*{ab} + {self.r}) mod 10")
            segments.append(f"({pab} + {self.r}) mod 10")
            total = pab + self.r
        return [*segments, f"{total} mod 10", str(total % 10)]

    def raw(self, a: int, b: int) -> int:
        return self.p * a + self.q * b + self.r if self.form == "lin" else self.p * a * b + self.r

    def apply(self, a: int, b: int) -> int:
        return self.raw(a, b) % 10


_RULE_RE = re.compile(
    r"a ([^\s\w]) b = \((\d+)\*a \+ (\d+)\*b \+ (\d+)\) mod 10|a ([^\s\w]) b = \((\d+)\*a\*b \+ (\d+)\) mod 10"
)


def make_rules(seed: int, n_rules: int = 3) -> list[Rule]:
    """Seeded invented operators (at most one per symbol)."""
    if not 1 <= n_rules <= len(SYMBOLS):
        raise TaskConfigError(f"custom-rules needs 1 to {len(SYMBOLS)} rules, got {n_rules}")
    rng = random.Random(f"custom-rules:{seed}")
    rules: list[Rule] = []
    for i, symbol in enumerate(SYMBOLS[:n_rules]):
        while True:  # distinct rules, and the first one linear so both forms are common
            form = "lin" if i == 0 else rng.choice(("lin", "prod"))
            q = rng.randint(1, 4) if form == "lin" else 0
            rule = Rule(symbol, form, rng.randint(1, 4), q, rng.randint(0, 9))
            if all((r.form, r.p, r.q, r.r) != (form, rule.p, q, rule.r) for r in rules):
                break
        rules.append(rule)
    return rules


def rules_prompt(rules: Sequence[Rule]) -> str:
    lines = [PROMPT_HEAD, "The operators are defined as:"]
    lines += [f"  {rule.text()}" for rule in rules]
    lines.append(
        "Work innermost parentheses first, one operation per line: expand the rule, reduce each product to its "
        "last digit, add, e.g. '3 ⊕ 5 = (2*3 + 1*5 + 3) mod 10 = (6 + 5 + 3) mod 10 = 14 mod 10 = 4'. "
        f"End with a final line '{ANSWER_MARKER} <digit>'."
    )
    return "\n".join(lines)


def parse_rules(text: str) -> list[Rule]:
    """Rules declared in a system prompt (the simulator reads them back)."""
    rules = []
    for m in _RULE_RE.finditer(text):
        if m.group(1):
            rules.append(Rule(m.group(1), "lin", int(m.group(2)), int(m.group(3)), int(m.group(4))))
        else:
            rules.append(Rule(m.group(5), "prod", int(m.group(6)), 0, int(m.group(7))))
    return rules


# --------------------------------------------------------------------------- expressions

Expr = int | tuple["Expr", str, "Expr"]


def render(expr: Expr, top: bool = True) -> str:
    if isinstance(expr, int):
        return str(expr)
    text = f"{render(expr[0], False)} {expr[1]} {render(expr[2], False)}"
    return text if top else f"({text})"


def parse_expr(text: str, symbols: str) -> Expr | None:
    """Parse a fully parenthesised expression of digits and ``symbols``; None if it is not one."""
    tokens = re.findall(r"\d+|[()]|\S", text)
    pos = 0

    def atom() -> Expr:
        nonlocal pos
        if pos >= len(tokens):
            raise ValueError
        tok = tokens[pos]
        pos += 1
        if tok == "(":
            inner = chain()
            if pos >= len(tokens) or tokens[pos] != ")":
                raise ValueError
            pos += 1
            return inner
        if tok.isdigit() and len(tok) == 1:
            return int(tok)
        raise ValueError

    def chain() -> Expr:
        nonlocal pos
        left = atom()
        while pos < len(tokens) and tokens[pos] in symbols:
            op = tokens[pos]
            pos += 1
            left = (left, op, atom())
        return left

    try:
        expr = chain()
    except ValueError:
        return None
    return expr if pos == len(tokens) else None


def random_expr(rng: random.Random, n_ops: int, symbols: str) -> Expr:
    if n_ops == 0:
        return rng.randint(0, 9)
    left_ops = rng.randint(0, n_ops - 1)
    return (random_expr(rng, left_ops, symbols), rng.choice(symbols), random_expr(rng, n_ops - 1 - left_ops, symbols))


def count_ops(expr: Expr) -> int:
    return 0 if isinstance(expr, int) else 1 + count_ops(expr[0]) + count_ops(expr[2])


def _question(expr: Expr) -> str:
    return f"Compute {render(expr)}"


def _expr_of(question: str, symbols: str) -> Expr | None:
    m = re.match(r"^\s*Compute\s+(.+?)\s*[.?]?\s*$", question)
    return parse_expr(m.group(1), symbols) if m else None


class CustomRulesTask(Task):
    """Made-up operator arithmetic, graded by exact digit match."""

    name = KIND

    def __init__(self, rules: Sequence[Rule], examples: Sequence[Example]) -> None:
        if not rules:
            raise TaskConfigError("custom-rules task needs at least one rule")
        self.rules = {r.symbol: r for r in rules}
        self._examples = list(examples)

    @property
    def symbols(self) -> str:
        return "".join(self.rules)

    @classmethod
    def generate(
        cls, *, seed: int = 0, size: int = 1000, n_rules: int = 3, min_ops: int = 1, max_ops: int = 3
    ) -> CustomRulesTask:
        """Seeded rules and ``size`` distinct questions, spread over ``min_ops..max_ops`` (the strata)."""
        if not 1 <= min_ops <= max_ops <= 6:
            raise TaskConfigError("custom-rules generator needs 1 <= min_ops <= max_ops <= 6")
        rules = make_rules(seed, n_rules)
        task = cls(rules, [])
        rng = random.Random(f"custom-rules-questions:{seed}")
        seen: set[str] = set()
        strata = list(range(min_ops, max_ops + 1))
        misses = dict.fromkeys(strata, 0)
        while len(task._examples) < size:
            if not strata:
                raise TaskConfigError(f"cannot generate {size} distinct custom-rules questions; ask for fewer")
            n_ops = strata[len(task._examples) % len(strata)]
            expr = random_expr(rng, n_ops, task.symbols)
            q = _question(expr)
            if q in seen:
                # Small strata (one operator: 10 x 10 x rules questions) run out; stop drawing from them.
                misses[n_ops] += 1
                if misses[n_ops] > 200:
                    strata.remove(n_ops)
                continue
            misses[n_ops] = 0
            seen.add(q)
            ident = f"custom-rules-{seed}-{len(task._examples)}"
            task._examples.append(
                Example(id=ident, question=q, answer=str(task.evaluate(expr)), stratum=f"ops={n_ops}")
            )
        return task

    @classmethod
    def from_jsonl(
        cls, path: str | Path, *, seed: int = 0, n_rules: int = 3, data: bytes | None = None
    ) -> CustomRulesTask:
        """Load ``question`` lines (``Compute (3 ⊕ 5) ⊗ 2``) under the rules of ``seed``; answers are computed."""
        task = cls(make_rules(seed, n_rules), [])
        seen: set[str] = set()
        for number, rec in read_records(path, ("question",), data):
            ident = record_id(path, number, rec, seen)
            expr = _expr_of(rec["question"], task.symbols)
            if expr is None:
                raise TaskDataError(path, number, f"question is not 'Compute <expression>' over {task.symbols}")
            value = str(task.evaluate(expr))
            if "answer" in rec and str(rec["answer"]).strip() != value:
                raise TaskDataError(path, number, f"answer {rec['answer']!r} is wrong under these rules; it is {value}")
            task._examples.append(
                Example(id=ident, question=rec["question"], answer=value, stratum=f"ops={count_ops(expr)}")
            )
        return task

    def evaluate(self, expr: Expr) -> int:
        if isinstance(expr, int):
            return expr
        return self.rules[expr[1]].apply(self.evaluate(expr[0]), self.evaluate(expr[2]))

    def examples(self) -> Sequence[Example]:
        return self._examples

    def system_prompt(self) -> str:
        return rules_prompt(list(self.rules.values()))

    def student_prompt(self, example: Example) -> list[ChatMessage]:
        """The question alone: the student learns the rules from the traces, which expand them on every line."""
        return [{"role": "user", "content": example.question}]

    def extract_answer(self, output: str) -> str | None:
        return self._extract(output)[0]

    def _extract(self, output: str) -> tuple[str | None, Extraction | None]:
        """The answer (a non-negative integer) and how it was found (see :func:`final_answer`)."""
        text, how = final_answer(output, numeric=True)
        m = re.match(r"^(\d+)\b", text) if text is not None else None
        return (str(int(m.group(1))), how) if m else (None, None)

    def grade(self, output: str, example: Example) -> Grade:
        got, how = self._extract(output)
        return Grade(correct=got == example.answer, extracted=got, extraction=how)

    def _trace_lines(self, expr: Expr, rules: dict[str, Rule], lines: list[str]) -> int:
        if isinstance(expr, int):
            return expr
        a = self._trace_lines(expr[0], rules, lines)
        b = self._trace_lines(expr[2], rules, lines)
        rule = rules[expr[1]]
        lines.append(" = ".join([f"{a} {rule.symbol} {b}", *rule.steps(a, b)]))
        return rule.apply(a, b)

    def reference_trace(self, example: Example) -> str:
        expr = _expr_of(example.question, self.symbols)
        if expr is None:
            raise TaskDataError("<question>", 0, f"cannot read custom-rules question '{example.question}'")
        lines: list[str] = []
        value = self._trace_lines(expr, self.rules, lines)
        return "\n".join([*lines, f"{ANSWER_MARKER} {value}"])

    def wrong_trace(self, example: Example, rng: random.Random) -> str:
        expr = _expr_of(example.question, self.symbols)
        if expr is None:
            return super().wrong_trace(example, rng)
        # The mistake a model leaning on prior knowledge makes: one operator read with the wrong rule.
        symbol = rng.choice(self.symbols)
        alt = Rule(symbol, "lin", 1, 1, 0)  # "⊕ is just plus"
        rules = {**self.rules, symbol: alt}
        lines: list[str] = []
        value = self._trace_lines(expr, rules, lines)
        if str(value) == example.answer:
            value = (value + rng.randint(1, 9)) % 10
        return "\n".join([*lines, f"{ANSWER_MARKER} {value}"])

    def check_steps(self, output: str, example: Example) -> StepCheck:
        expr = _expr_of(example.question, self.symbols)
        needed = count_ops(expr) if expr is not None else 1
        steps = 0
        for line in reasoning_body(output).splitlines():
            m = re.match(rf"^\s*(\d)\s*([{re.escape(self.symbols)}])\s*(\d)\s*=(.+)$", line)
            if m is None:
                continue
            a, symbol, b = int(m.group(1)), m.group(2), int(m.group(3))
            want = self.rules[symbol].apply(a, b)
            for segment in m.group(4).split("="):
                try:
                    got = _arith.evaluate(segment.strip().rstrip("."))
                except ValueError:
                    return StepCheck(ok=False, reason=f"cannot read step '{line.strip()}'")
                if got % 10 != want:
                    return StepCheck(ok=False, reason=f"wrong step '{line.strip()}' ({a} {symbol} {b} is {want})")
            steps += 1
        if steps < needed:
            return StepCheck(ok=False, reason=f"shows {steps} operation steps, the question has {needed}")
        return StepCheck(ok=True)


def task_for_prompt(system_prompt: str, question: str) -> tuple[Task, Example] | None:
    """Recognise a custom-rules question, reading the rules back from the system prompt."""
    if not system_prompt.strip().startswith(PROMPT_HEAD):
        return None
    rules = parse_rules(system_prompt)
    if not rules:
        return None
    task = CustomRulesTask(rules, [])
    expr = _expr_of(question, task.symbols)
    if expr is None:
        return None
    example = Example(id="prompt", question=question, answer=str(task.evaluate(expr)), stratum=f"ops={count_ops(expr)}")
    return task, example


def _load(source: Source) -> CustomRulesTask:
    """The rules are drawn from the seed (and ``n_rules``), the examples read from the file."""
    n_rules = source.options.get("n_rules", 3)
    return CustomRulesTask.from_jsonl(source.path, seed=source.seed, n_rules=n_rules, data=source.data)


register_kind(
    TaskKind(
        name=KIND,
        load=_load,
        generate=CustomRulesTask.generate,
        generator_options=frozenset({"n_rules", "min_ops", "max_ops"}),
    )
)
