"""A small synthetic task for trainer tests: 2-digit addition with a short column-wise reasoning trace."""

from __future__ import annotations

import random
import re
from typing import Any

_ANSWER = re.compile(r"Answer:\s*(-?\d+)")


def trace(a: int, b: int) -> str:
    """The reasoning a teacher would write: ones column with carry, tens column, answer."""
    ones = a % 10 + b % 10
    carry = ones // 10
    tens = a // 10 + b // 10 + carry
    return f"{a % 10} + {b % 10} = {ones}\n{a // 10} + {b // 10} + {carry} = {tens}\nAnswer: {a + b}"


def prompt(a: int, b: int) -> list[dict[str, str]]:
    # No system turn: every token costs CPU time in tests, and the format is learned from the traces.
    return [{"role": "user", "content": f"What is {a} + {b}?"}]


def records(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` SFT records (the trainer's JSONL format) with distinct operand pairs."""
    rng = random.Random(seed)
    pairs = rng.sample([(a, b) for a in range(10, 100) for b in range(10, 100)], n)
    return [
        {
            "id": f"add-{seed}-{i}",
            "messages": [*prompt(a, b), {"role": "assistant", "content": trace(a, b)}],
            "answer": str(a + b),
        }
        for i, (a, b) in enumerate(pairs)
    ]


def split(n_train: int, n_test: int, seed: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Disjoint train and held-out records."""
    recs = records(n_train + n_test, seed)
    return recs[:n_train], recs[n_train:]


def grade(completion: str, answer: str) -> float:
    """1.0 when the last ``Answer: N`` line equals the answer."""
    found = _ANSWER.findall(completion)
    return 1.0 if found and found[-1] == answer else 0.0


TWO_TURNS = [
    {"role": "system", "content": "You add numbers."},
    {"role": "user", "content": "What is 37 + 48?"},
    {"role": "assistant", "content": "Answer: 85"},
    {"role": "user", "content": "And 10 + 5?"},
    {"role": "assistant", "content": "Answer: 15"},
]
"""A two-turn chat with short answers: where an assistant mask starts and ends is plain to read."""
