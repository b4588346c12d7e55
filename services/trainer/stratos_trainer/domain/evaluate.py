"""Held-out accuracy by greedy generation, batched with left padding.

Greedy decoding makes the number reproducible, and sorting prompts by length
before batching keeps padding (wasted CPU) low.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerBase

from stratos_shared.localmodels import PLAIN_NEXT_TURN, load_tokenizer, uses_plain_template
from stratos_shared.tasks import Grade
from stratos_trainer.domain.data import Messages

Grader = Callable[[str, str], float | Grade]
"""``grader(completion_text, answer) -> score``; 1.0 for correct and 0.0 for wrong (partial credit allowed).

A grader may return the task's :class:`~stratos_shared.tasks.Grade` instead: its ``correct`` is the score and
its ``extraction`` (how the answer was found) is reported in :attr:`EvalResult.extractions`."""

NO_ANSWER = "none"
"""The extraction reported for an output in which the grader found no answer."""


def score_of(graded: float | Grade) -> float:
    """The numeric score of a grader's result."""
    return float(graded.correct) if isinstance(graded, Grade) else float(graded)


@dataclass
class EvalResult:
    """Accuracy of a model on a list of (messages, answer) items."""

    accuracy: float
    """Mean grader score."""
    n: int
    """Items evaluated."""
    outputs: list[str] = field(default_factory=list)
    """Generated completions, in input order."""
    scores: list[float] = field(default_factory=list)
    """Grader scores, in input order."""
    extractions: list[str] = field(default_factory=list)
    """How each answer was found (``strict``, ``hash``, ``boxed``, ``last-number``, ``regex`` or ``none``), in
    input order; empty when the grader returns plain scores."""

    def extraction_counts(self, *, correct_only: bool = False) -> dict[str, int]:
        """Outputs per extraction (of the correct ones only, when asked): which rule matched, as harnesses report."""
        pairs = zip(self.extractions, self.scores, strict=False)
        return dict(Counter(how for how, score in pairs if not correct_only or score > 0))


def eos_ids(model: Any, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Token ids that end a completion: the tokenizer's eos plus the model's generation eos."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(gen_eos, int):
        ids.add(gen_eos)
    elif isinstance(gen_eos, list):
        ids.update(int(i) for i in gen_eos)
    return sorted(ids)


@torch.inference_mode()
def generate(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Messages],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 64,
) -> list[str]:
    """Greedy completions of chat prompts, in input order.

    A model without a chat template of its own (a base model, rendered in the plain format) has not learned to
    stop: its completion ends where it starts inventing the next ``User:`` turn, so a grader never reads an
    answer out of a question the model made up.
    """
    plain = uses_plain_template(tokenizer)
    stop_at: dict[str, Any] = {"stop_strings": [PLAIN_NEXT_TURN], "tokenizer": tokenizer} if plain else {}
    texts = [str(tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)) for p in prompts]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    outputs: list[str] = [""] * len(texts)
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    stop = eos_ids(model, tokenizer)
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: v.to(device) for k, v in enc.items()}
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=stop,
                pad_token_id=tokenizer.pad_token_id,
                **stop_at,
            )
            new = out[:, enc["input_ids"].shape[1] :]
            for i, row in zip(idx, new, strict=True):
                text = str(tokenizer.decode(row, skip_special_tokens=True))
                outputs[i] = text.split(PLAIN_NEXT_TURN, 1)[0] if plain else text
    finally:
        tokenizer.padding_side = old_side
        model.train(was_training)
    return outputs


def evaluate(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    items: Sequence[tuple[Messages, str]],
    grader: Grader,
    *,
    max_new_tokens: int = 64,
    batch_size: int = 64,
) -> EvalResult:
    """Greedy-generate a completion per item and grade it against the item's answer."""
    outputs = generate(model, tokenizer, [m for m, _ in items], max_new_tokens=max_new_tokens, batch_size=batch_size)
    graded = [grader(o, a) for o, (_, a) in zip(outputs, items, strict=True)]
    scores = [score_of(g) for g in graded]
    extractions = [g.extraction or NO_ANSWER for g in graded if isinstance(g, Grade)]
    return EvalResult(
        accuracy=sum(scores) / max(1, len(scores)),
        n=len(scores),
        outputs=outputs,
        scores=scores,
        extractions=extractions if len(extractions) == len(graded) else [],
    )


def load_model(
    path: str | Path, device: str = "cpu", dtype: torch.dtype = torch.float32
) -> tuple[Any, PreTrainedTokenizerBase]:
    """Load a model directory (full model, or a PEFT adapter directory with its base) and its tokenizer."""
    path = Path(path)
    if (path / "adapter_config.json").exists():
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    model.to(device)
    return model, load_tokenizer(path)


def evaluate_path(
    path: str | Path,
    items: Sequence[tuple[Messages, str]],
    grader: Grader,
    *,
    device: str = "cpu",
    max_new_tokens: int = 64,
    batch_size: int = 64,
) -> EvalResult:
    """:func:`evaluate` on a model directory."""
    model, tokenizer = load_model(path, device)
    return evaluate(model, tokenizer, items, grader, max_new_tokens=max_new_tokens, batch_size=batch_size)
