"""GRPO end to end from a partly trained student.

What is asserted, honestly: GRPO runs on CPU with the task grader as reward,
starting from an SFT-warmed student so the reward signal is non-zero, logs one
reward per step, and saves a model that still answers in the task format.
Improvement is NOT asserted: no setting measured on the 1M student lifts it
above its warm start by more than noise (``bench/grpo_sweep.py``, 200 held-out
items, warm start 0.725): lr 3e-4..1e-3 collapse it (0.05, 0.00), lr 1e-4 at
temperature 1.0 halves it (0.37; 0.63 with a KL penalty), and the best setting
(lr 1e-4, temperature 0.5, beta 0.04, 32 prompts x 8, 25% warmup, 60 steps)
gives 0.740, within noise of 0.725.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helpers
import pytest

from stratos_trainer.domain.checkpoints import TrainResult
from stratos_trainer.domain.config import TrainingConfig
from stratos_trainer.domain.data import grpo_dataset
from stratos_trainer.domain.evaluate import evaluate_path
from stratos_trainer.domain.grpo import correctness_reward, train_grpo

STEPS = 20


def _warm_start(sft_student: TrainResult, held_out: Any) -> tuple[Path, float]:
    """An intermediate SFT checkpoint with middling accuracy: reward must vary within groups for GRPO to learn."""
    best: tuple[Path, float] | None = None
    for step in (300, 150, 450):
        path = sft_student.output_dir / f"checkpoint-{step}"
        acc = evaluate_path(path, held_out, helpers.grade).accuracy
        if 0.1 <= acc <= 0.8:
            return path, acc
        best = best or (path, acc)
    assert best is not None
    return best


def test_reward_adapter_reads_chat_completions() -> None:
    reward = correctness_reward(helpers.grade)
    completions = [[{"role": "assistant", "content": "x\nAnswer: 5"}], [{"role": "assistant", "content": "Answer: 6"}]]
    assert reward(completions=completions, answer=["5", "5"], prompts=None) == [1.0, 0.0]


@pytest.mark.timeout(1200)  # real training; minutes on a busy 2-core machine
def test_grpo_trains_end_to_end_with_a_live_reward_signal(
    sft_student: TrainResult, task_data: Any, held_out: Any, tmp_path: Path
) -> None:
    warm, warm_acc = _warm_start(sft_student, held_out)
    cfg = TrainingConfig(
        method="grpo",
        max_steps=STEPS,
        learning_rate=3e-5,
        batch_size=64,
        num_generations=8,
        max_completion_length=32,
        checkpoint_interval=10_000,
    )
    result = train_grpo(warm, grpo_dataset(task_data[0][:1000]), helpers.grade, cfg, tmp_path)
    assert result.global_step == STEPS
    rewards = result.metrics["reward"]
    assert len(rewards) == STEPS and sum(rewards) > 0, rewards  # the warm start gives GRPO a learning signal
    assert result.tokens_seen > 0 and result.tokens_per_second > 0
    after = evaluate_path(result.model_dir, held_out, helpers.grade)
    assert sum("Answer:" in o for o in after.outputs) >= 0.9 * after.n, after.outputs[:3]
    print(f"GRPO warm {warm.name} acc {warm_acc:.2f} -> {after.accuracy:.2f}; reward {rewards[:5]} ... {rewards[-5:]}")
