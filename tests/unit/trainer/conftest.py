"""Shared fixtures: one tiny base model and one SFT-trained student per test session.

The base lives in the normal content-addressed model cache, so only the first
run on a machine pays for building it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import helpers

from stratos_shared.localmodels import ensure_tiny_model
from stratos_trainer.domain.checkpoints import TrainResult
from stratos_trainer.domain.config import TrainingConfig
from stratos_trainer.domain.data import eval_items, sft_dataset
from stratos_trainer.domain.evaluate import EvalResult, evaluate_path
from tests.variation import SEED

N_TRAIN, N_TEST = 6000, 100
SFT_STEPS = 450


@pytest.fixture(scope="session")
def base_model() -> Path:
    return ensure_tiny_model("tiny-1m")


@pytest.fixture(scope="session")
def task_data() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return helpers.split(N_TRAIN, N_TEST, seed=SEED)


@pytest.fixture(scope="session")
def held_out(task_data: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> list[tuple[list[dict[str, str]], str]]:
    return eval_items(task_data[1])


@pytest.fixture(scope="session")
def base_eval(base_model: Path, held_out: list[tuple[list[dict[str, str]], str]]) -> EvalResult:
    return evaluate_path(base_model, held_out, helpers.grade)


@pytest.fixture(scope="session")
def sft_student(base_model: Path, task_data: Any, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """Full SFT of the base on the addition traces (also the warm start for GRPO and a prescreen candidate)."""
    cfg = TrainingConfig(
        method="sft",
        max_steps=SFT_STEPS,
        learning_rate=3e-3,
        batch_size=32,
        packing=False,
        checkpoint_interval=150,
        seed=SEED,
    )
    cfg.keep_checkpoints = 3  # the intermediate ones are GRPO warm starts
    return train_sft_cached(base_model, task_data[0], cfg, tmp_path_factory.mktemp("sft"))


def train_sft_cached(base: Path, records: list[dict[str, Any]], cfg: TrainingConfig, out: Path) -> TrainResult:
    from stratos_trainer.domain.sft import train_sft

    return train_sft(base, sft_dataset(records), cfg, out)


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """SmolLM2-135M-Instruct converted from the bundled GGUF (``make models`` converts it; ~20 s when it has not)."""
    from stratos_shared.localmodels.bundled import ensure_bundled_model

    return ensure_bundled_model("smollm2-135m")
