"""Student capacity pre-screening: which base model is worth distilling into?

Each candidate answers task items with ``k`` verified reasoning traces shown
in context. Few-shot accuracy is a cheap proxy for how much of the task a base
can already represent: candidates below a threshold are dropped, and among the
rest the smallest one nearly as good as the best is chosen, because a smaller
student is cheaper to train and to serve.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stratos_trainer.domain.config import PrescreenConfig, resolve_device
from stratos_trainer.domain.data import Messages
from stratos_trainer.domain.evaluate import Grader, evaluate, load_model


@dataclass(frozen=True)
class CandidateScore:
    """Screening outcome of one candidate."""

    path: str
    """The candidate's model directory."""
    accuracy: float
    """Few-shot accuracy on the screening items."""
    num_parameters: int
    """Total parameters (LoRA adapters merged or not, the base's size counts)."""
    n: int
    """Items evaluated."""


@dataclass
class PrescreenResult:
    """All scores and the choice."""

    scores: list[CandidateScore]
    """Every candidate, best accuracy first."""
    chosen: CandidateScore | None
    """The picked student, None when no candidate passed the threshold."""
    reason: str
    """Why this choice (or why none), for logs and events."""
    passed: list[CandidateScore] = field(default_factory=list)
    """Candidates at or above the threshold."""


def few_shot_prompt(shots: Sequence[Messages], prompt: Messages) -> Messages:
    """The item's system turn, then each shot's user/assistant turns, then the item's user turn."""
    system = [m for m in prompt if m["role"] == "system"]
    demo = [m for s in shots for m in s if m["role"] in ("user", "assistant")]
    return [*system, *demo, *[m for m in prompt if m["role"] != "system"]]


def screen_candidate(
    path: str | Path,
    shots: Sequence[Messages],
    items: Sequence[tuple[Messages, str]],
    grader: Grader,
    cfg: PrescreenConfig,
) -> CandidateScore:
    """Few-shot accuracy and size of one candidate."""
    model, tokenizer = load_model(path, resolve_device(cfg.device))
    prompts = [(few_shot_prompt(shots, p), a) for p, a in items]
    result = evaluate(model, tokenizer, prompts, grader, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size)
    n_params = sum(p.numel() for p in model.parameters())
    return CandidateScore(path=str(path), accuracy=result.accuracy, num_parameters=n_params, n=result.n)


def choose(scores: Sequence[CandidateScore], threshold: float, tolerance: float) -> PrescreenResult:
    """Drop candidates below ``threshold``; pick the smallest within ``tolerance`` of the best remaining."""
    ranked = sorted(scores, key=lambda s: (-s.accuracy, s.num_parameters))
    passed = [s for s in ranked if s.accuracy >= threshold]
    if not passed:
        best = ranked[0].accuracy if ranked else 0.0
        return PrescreenResult(list(ranked), None, f"no candidate reached {threshold:.0%} (best {best:.0%})", [])
    best = passed[0].accuracy
    near = [s for s in passed if s.accuracy >= best - tolerance]
    chosen = min(near, key=lambda s: (s.num_parameters, -s.accuracy))
    reason = (
        f"smallest of {len(near)} candidate(s) within {tolerance:.0%} of the best "
        f"({best:.0%}); {len(passed)}/{len(ranked)} passed the {threshold:.0%} threshold"
    )
    return PrescreenResult(list(ranked), chosen, reason, passed)


def prescreen(
    candidates: Sequence[str | Path],
    shots: Sequence[Messages],
    items: Sequence[tuple[Messages, str]],
    grader: Grader,
    cfg: PrescreenConfig | None = None,
) -> PrescreenResult:
    """Screen every candidate on the same shots and items, then :func:`choose`.

    ``shots`` are full verified conversations (ending with the assistant's
    trace); only the first ``cfg.k_shots`` are used. ``items`` are sampled down
    to ``cfg.n_eval`` with ``cfg.seed``.
    """
    cfg = cfg or PrescreenConfig()
    rng = random.Random(cfg.seed)
    sample = list(items) if len(items) <= cfg.n_eval else rng.sample(list(items), cfg.n_eval)
    scores = [screen_candidate(c, shots[: cfg.k_shots], sample, grader, cfg) for c in candidates]
    return choose(scores, cfg.threshold, cfg.tolerance)
