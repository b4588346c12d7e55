"""The GRPO sweep reads a setting string into a TrainingConfig (given fields, defaults for the rest)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def load_sweep():
    spec = importlib.util.spec_from_file_location("grpo_sweep", ROOT / "bench" / "grpo_sweep.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_setting_fills_unnamed_fields_from_the_defaults() -> None:
    cfg = load_sweep().grpo_config("3e-4,0.5,60,0.04")
    assert (cfg.learning_rate, cfg.temperature, cfg.max_steps, cfg.beta) == (3e-4, 0.5, 60, 0.04)
    assert (cfg.num_generations, cfg.batch_size, cfg.warmup_ratio) == (8, 64, 0.05)
    assert cfg.extra == {"loss_type": "dapo"} and cfg.method == "grpo"
    cfg.resolved()  # consistent: batch is a multiple of the group size
