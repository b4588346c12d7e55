"""The generated generic corpus used to pre-train the tiny base models.

It teaches the *format* every Stratos task uses (chat turns; the assistant
writes a few short reasoning lines, then ``Answer: <x>``), digits, single-digit
arithmetic facts and some English-ish text. It deliberately avoids the shipped
eval tasks (multi-digit addition etc.) so that gains measured after
distillation come from distillation, not from pre-training.
"""

from __future__ import annotations

import random
from collections.abc import Callable

Chat = list[dict[str, str]]

SYSTEM_PROMPT = "You are a careful assistant. Think in short steps, then end with the line 'Answer: <answer>'."

_NAMES = ["Ana", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jo"]
_NOUNS = ["apple", "river", "stone", "book", "lamp", "cloud", "garden", "train", "window", "bird", "cat", "road"]
_VERBS = ["sees", "finds", "likes", "draws", "moves", "holds", "reads", "opens", "counts", "paints"]
_ADJS = ["small", "red", "quiet", "old", "bright", "green", "cold", "round", "tall", "soft"]
_WORDS = [*_NOUNS, "sun", "map", "key", "door", "fish", "tree", "milk", "ship", "moon", "star"]


def _sentence(rng: random.Random) -> str:
    return (
        f"{rng.choice(_NAMES)} {rng.choice(_VERBS)} the {rng.choice(_ADJS)} {rng.choice(_NOUNS)}"
        f" near the {rng.choice(_NOUNS)}."
    )


def _prose(rng: random.Random) -> str:
    return " ".join(_sentence(rng) for _ in range(rng.randint(2, 5)))


def _add_fact(rng: random.Random) -> tuple[str, list[str], str]:
    a, b = rng.randint(0, 9), rng.randint(0, 9)
    return f"What is {a} + {b}?", [f"{a} + {b} = {a + b}"], str(a + b)


def _mul_fact(rng: random.Random) -> tuple[str, list[str], str]:
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    return f"What is {a} * {b}?", [f"{a} * {b} = {a * b}"], str(a * b)


def _sub_fact(rng: random.Random) -> tuple[str, list[str], str]:
    a = rng.randint(0, 18)
    b = rng.randint(0, min(a, 9))
    return f"What is {a} - {b}?", [f"{a} - {b} = {a - b}"], str(a - b)


def _next_number(rng: random.Random) -> tuple[str, list[str], str]:
    n = rng.randint(0, 998)
    return f"What number comes after {n}?", [f"{n} + 1 = {n + 1}"], str(n + 1)


def _larger(rng: random.Random) -> tuple[str, list[str], str]:
    a, b = rng.sample(range(100), 2)
    big = max(a, b)
    return f"Which is larger, {a} or {b}?", [f"{big} is more than {min(a, b)}"], str(big)


def _count_letters(rng: random.Random) -> tuple[str, list[str], str]:
    w = rng.choice(_WORDS)
    return f"How many letters are in the word '{w}'?", [" ".join(w), f"That is {len(w)} letters."], str(len(w))


def _reverse(rng: random.Random) -> tuple[str, list[str], str]:
    w = rng.choice(_WORDS)
    return f"Spell '{w}' backwards.", [f"The letters are {' '.join(w)}", f"Backwards: {' '.join(w[::-1])}"], w[::-1]


def _who(rng: random.Random) -> tuple[str, list[str], str]:
    name, noun = rng.choice(_NAMES), rng.choice(_NOUNS)
    text = f"{name} {rng.choice(_VERBS)} the {noun}."
    return f"{text} Who is in the sentence?", [f"The sentence names {name}."], name


_SKILLS: list[Callable[[random.Random], tuple[str, list[str], str]]] = [
    _add_fact,
    _mul_fact,
    _sub_fact,
    _next_number,
    _larger,
    _count_letters,
    _reverse,
    _who,
]


def chat_item(rng: random.Random) -> Chat:
    """One chat exchange in the house format: reasoning lines, then the answer line."""
    question, steps, answer = rng.choice(_SKILLS)(rng)
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": question},
        {"role": "assistant", "content": "\n".join([*steps, f"Answer: {answer}"])},
    ]


def generate_corpus(n_docs: int, seed: int) -> tuple[list[Chat], list[str]]:
    """``n_docs`` documents: about 70% chat items and 30% plain prose, reproducible from ``seed``."""
    rng = random.Random(seed)
    chats: list[Chat] = []
    prose: list[str] = []
    for _ in range(n_docs):
        if rng.random() < 0.7:
            chats.append(chat_item(rng))
        else:
            prose.append(_prose(rng))
    return chats, prose
