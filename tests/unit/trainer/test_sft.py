"""LoRA-SFT and full SFT train a real tiny model to a held-out accuracy noise cannot explain."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helpers
import pytest
from conftest import train_sft_cached

from stratos_trainer.domain.checkpoints import TrainResult
from stratos_trainer.domain.config import TrainingConfig
from stratos_trainer.domain.evaluate import EvalResult, evaluate_path
from tests.variation import SEED, record

# The base must be near zero (at most 10 of 100 held-out items: chance fluctuation of a ~0% model is a few points at
# most), and the student a margin above it that held under every setting `bench/robustness.py` tried (3 seeds x
# 1 and 2 threads on AVX-512 kernels, 3 seeds on AVX2 and on plain kernels; the table is in issue 25's note):
# full SFT reached 0.99-1.00 everywhere; LoRA on this random-init base is seed-bound, 0.23-0.86 (seed 0 with one
# thread is the low end, 0.25 on an AVX2 machine), so its margin is half the lowest it reached.
MARGINS = {"full-sft": 0.30, "lora-sft": 0.12}


def _assert_learned(result: TrainResult, base_eval: EvalResult, held_out: Any, name: str) -> float:
    assert base_eval.accuracy <= 0.10, base_eval.outputs[:3]
    trained = evaluate_path(result.model_dir, held_out, helpers.grade)
    record(name, trained.accuracy)
    assert trained.accuracy >= base_eval.accuracy + MARGINS[name], (trained.accuracy, trained.outputs[:3])
    losses = [loss for _, loss in result.loss_history]
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 * 0.5
    assert result.tokens_seen > 0 and result.tokens_per_second > 0 and result.wall_seconds > 0
    return trained.accuracy


@pytest.mark.timeout(1200)  # real training; minutes on a busy 2-core machine
def test_full_sft_learns_addition(sft_student: TrainResult, base_eval: EvalResult, held_out: Any) -> None:
    assert sft_student.adapter_dir is None
    assert sft_student.global_step == sft_student.loss_history[-1][0]
    _assert_learned(sft_student, base_eval, held_out, "full-sft")


@pytest.mark.timeout(1200)
def test_lora_sft_learns_addition(
    base_model: Path, task_data: Any, base_eval: EvalResult, held_out: Any, tmp_path: Path
) -> None:
    cfg = TrainingConfig(
        method="lora-sft",
        max_steps=400,
        learning_rate=4e-3,
        batch_size=32,
        packing=False,
        checkpoint_interval=10_000,
        seed=SEED,
    )
    result = train_sft_cached(base_model, task_data[0], cfg, tmp_path)
    assert result.adapter_dir is not None and (result.adapter_dir / "adapter_config.json").exists()
    acc = _assert_learned(result, base_eval, held_out, "lora-sft")
    # the adapter directory alone (base + adapter) gives the same model as the merged copy
    assert (
        evaluate_path(result.adapter_dir, held_out[:20], helpers.grade).accuracy
        == evaluate_path(result.model_dir, held_out[:20], helpers.grade).accuracy
    )
    assert acc > 0


def test_a_packed_step_trains_on_nearly_full_bins(base_model: Path, task_data: Any, tmp_path: Path) -> None:
    cfg = TrainingConfig(
        method="sft", max_steps=2, batch_size=2, max_seq_len=256, packing=True, checkpoint_interval=10**6
    )
    result = train_sft_cached(base_model, task_data[0][:200], cfg, tmp_path)
    full = 2 * cfg.batch * cfg.max_seq_len  # steps x bins x bin length; the ~40-token records fill bins closely
    assert 0.9 * full <= result.tokens_seen <= full, result.tokens_seen
