"""GRPO with TRL's ``GRPOTrainer`` and a correctness reward from the task's grader.

The grader is passed in (``grader(completion_text, answer) -> float``) so the
reward means exactly what evaluation means. Rollouts use ``model.generate``
(no vLLM), which is fine for the small students this runs on. Start from an
SFT-warmed model: with zero reward on every sample the group-normalised
advantage is zero and GRPO cannot learn (likewise for a perfect model).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer  # type: ignore[attr-defined]

from stratos_shared.localmodels import load_tokenizer
from stratos_trainer.domain.checkpoints import CheckpointSink, ControlCallback, ProgressFn, StopFn, TrainResult
from stratos_trainer.domain.config import TrainingConfig, resolve_precision
from stratos_trainer.domain.evaluate import Grader, score_of
from stratos_trainer.domain.runner import common_args, load_base, run
from stratos_trainer.domain.sft import lora_config

REWARD_NAME = "correctness"
REWARD_METRICS = ["reward", "reward_std", f"rewards/{REWARD_NAME}/mean", "completions/mean_length"]
"""Series copied into ``TrainResult.metrics`` (TRL's log keys)."""


def correctness_reward(grader: Grader) -> Callable[..., list[float | None]]:
    """Adapt ``grader(text, answer)`` to TRL's reward signature (completions plus dataset columns)."""

    def correctness(completions: list[Any], answer: list[str], **_: Any) -> list[float | None]:
        texts = [c[-1]["content"] if isinstance(c, list) else str(c) for c in completions]
        return [score_of(grader(t, a)) for t, a in zip(texts, answer, strict=True)]

    correctness.__name__ = REWARD_NAME
    return correctness


def grpo_config(cfg: TrainingConfig, output_dir: Path) -> GRPOConfig:
    """The TRL ``GRPOConfig`` for a :class:`TrainingConfig`."""
    precision = resolve_precision(cfg.device)
    args = common_args(cfg, output_dir, precision)
    args["include_num_input_tokens_seen"] = "no"  # GRPO batches have no input_ids; TRL logs num_tokens instead
    return GRPOConfig(
        **args,
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        beta=cfg.beta,
        temperature=cfg.temperature,
    )


def train_grpo(
    base_model: str | Path,
    train: Dataset,
    grader: Grader,
    cfg: TrainingConfig,
    output_dir: str | Path,
    *,
    resume_from: str | Path | None = None,
    sink: CheckpointSink | None = None,
    should_stop: StopFn | None = None,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """GRPO on prompts with answers (see :mod:`.data`, GRPO format); reward is ``grader(completion, answer)``."""
    if cfg.method != "grpo":
        raise ValueError(f"train_grpo cannot run method {cfg.method!r}")
    cfg = cfg.for_base(base_model)
    out = Path(output_dir)
    precision = resolve_precision(cfg.device)
    tokenizer = load_tokenizer(base_model)
    control = ControlCallback(sink, should_stop, progress)
    trainer = GRPOTrainer(
        model=load_base(base_model, precision),
        reward_funcs=[correctness_reward(grader)],
        args=grpo_config(cfg, out),
        train_dataset=train.select_columns(["prompt", "answer"]),
        processing_class=tokenizer,
        peft_config=lora_config(cfg) if cfg.grpo_use_lora else None,
        callbacks=[control],
    )
    return run(trainer, control, cfg, out, tokenizer, base_model, resume_from, REWARD_METRICS)
