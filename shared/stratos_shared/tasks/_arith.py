"""A tiny exact evaluator for the arithmetic that appears in reasoning traces.

Traces are checked by re-computing what they claim (``3 + 4 = 7``), so we need
an evaluator that is exact (fractions, no float noise) and safe (no ``eval``).
Supports ``+ - * / × x ÷ mod`` and parentheses, with the usual precedence.
"""

from __future__ import annotations

import re
from fractions import Fraction

_TOKEN = re.compile(r"\s*(?:(\d[\d,]*(?:\.\d+)?)|(mod)\b|([-+*/×x÷()]))")


def _tokens(expr: str) -> list[str]:
    out: list[str] = []
    pos = 0
    expr = expr.replace("$", "")
    while pos < len(expr):
        if expr[pos:].strip() == "":
            break
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise ValueError(f"cannot read arithmetic at {expr[pos:]!r}")
        out.append(m.group(1) or m.group(2) or m.group(3))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.i = 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> str:
        tok = self.peek()
        if tok is None:
            raise ValueError("expression ends too early")
        self.i += 1
        return tok

    def expr(self) -> Fraction:
        value = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            rhs = self.term()
            value = value + rhs if op == "+" else value - rhs
        return value

    def term(self) -> Fraction:
        value = self.unary()
        while self.peek() in ("*", "×", "x", "/", "÷", "mod"):
            op = self.take()
            rhs = self.unary()
            if op in ("*", "×", "x"):
                value *= rhs
            elif rhs == 0:
                raise ValueError("division by zero")
            elif op == "mod":
                value = value % rhs
            else:
                value /= rhs
        return value

    def unary(self) -> Fraction:
        if self.peek() == "-":
            self.take()
            return -self.unary()
        tok = self.take()
        if tok == "(":
            value = self.expr()
            if self.take() != ")":
                raise ValueError("unbalanced parentheses")
            return value
        if tok[0].isdigit():
            return Fraction(tok.replace(",", ""))
        raise ValueError(f"unexpected {tok!r}")


def evaluate(expr: str) -> Fraction:
    """Evaluate ``expr`` exactly; raise ``ValueError`` when it is not plain arithmetic."""
    parser = _Parser(_tokens(expr))
    value = parser.expr()
    if parser.peek() is not None:
        raise ValueError(f"unexpected {parser.peek()!r}")
    return value
