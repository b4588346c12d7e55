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


def lora_config(max_steps: int) -> TrainingConfig:
    return TrainingConfig(
        method="lora-sft",
        max_steps=max_steps,
        learning_rate=4e-3,
        batch_size=32,
        packing=False,
        checkpoint_interval=10_000,
        seed=SEED,
    )


LORA_SHORT_STEPS, LORA_SHORT_LOSS_RATIO = 60, 0.6
"""60 LoRA steps take the mean loss of the last 10 steps to 0.46-0.47 of the first 10's under seeds 0-2, one and two
threads, native (AVX-512), AVX2 and plain kernels (`python bench/robustness.py -- tests/unit/trainer/test_sft.py`);
0.6 leaves room for kernels not tried. Held-out accuracy after 60 steps is still near the base's: the learning
claim is the 400-step test below."""


def test_a_short_lora_run_trains_its_adapter_and_the_adapter_alone_is_the_merged_model(
    base_model: Path, task_data: Any, held_out: Any, tmp_path: Path
) -> None:
    """The LoRA path in every `make test`: the adapter learns (its loss falls by a margin measured across seeds,
    threads and kernels) and base + adapter is the same model as the merged copy."""
    result = train_sft_cached(base_model, task_data[0], lora_config(LORA_SHORT_STEPS), tmp_path)
    assert result.adapter_dir is not None and (result.adapter_dir / "adapter_config.json").exists()
    losses = [loss for _, loss in result.loss_history]
    ratio = (sum(losses[-10:]) / 10) / (sum(losses[:10]) / 10)
    record("lora-sft short loss ratio", round(ratio, 3))
    assert ratio < LORA_SHORT_LOSS_RATIO, losses
    merged = evaluate_path(result.model_dir, held_out[:20], helpers.grade)
    assert evaluate_path(result.adapter_dir, held_out[:20], helpers.grade).outputs == merged.outputs


@pytest.mark.slow  # ~100 s on two cores: the learning claim runs with STRATOS_FULL_TESTS=1 and in bench/robustness.py
@pytest.mark.timeout(1200)
def test_lora_sft_learns_addition(
    base_model: Path, task_data: Any, base_eval: EvalResult, held_out: Any, tmp_path: Path
) -> None:
    result = train_sft_cached(base_model, task_data[0], lora_config(400), tmp_path)
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
