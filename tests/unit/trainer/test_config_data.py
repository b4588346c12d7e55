"""Training config defaults and validation, precision, and the dataset formats."""

from __future__ import annotations

from pathlib import Path

import helpers
import pytest
import torch

from stratos_shared.contracts.job import JobSpec
from stratos_trainer.domain.config import METHOD_DEFAULTS, REAL_MODEL_DEFAULTS, TrainingConfig, resolve_precision
from stratos_trainer.domain.data import (
    DataFormatError,
    eval_items,
    load_grpo_jsonl,
    load_sft_jsonl,
    sft_dataset,
    write_jsonl,
)
from stratos_trainer.training import training_config

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def test_per_method_defaults_and_overrides() -> None:
    for method, defaults in METHOD_DEFAULTS.items():
        cfg = TrainingConfig(method=method).resolved()  # type: ignore[arg-type]
        assert cfg.learning_rate == defaults["learning_rate"]
        assert cfg.batch_size == defaults["batch_size"]
    assert TrainingConfig(method="sft", learning_rate=0.1).lr == 0.1


def test_a_pretrained_base_gets_the_real_model_defaults(base_model: Path, tmp_path: Path) -> None:
    for method, defaults in REAL_MODEL_DEFAULTS.items():
        real = TrainingConfig(method=method).for_base(tmp_path).resolved()  # type: ignore[arg-type]
        assert real.model_scale == "real"
        assert (real.learning_rate, real.batch_size) == (defaults["learning_rate"], defaults["batch_size"])
        tiny = TrainingConfig(method=method).for_base(base_model).resolved()  # type: ignore[arg-type]
        assert tiny.model_scale == "tiny" and tiny.learning_rate == METHOD_DEFAULTS[method]["learning_rate"]
    assert REAL_MODEL_DEFAULTS["lora-sft"]["learning_rate"] < METHOD_DEFAULTS["lora-sft"]["learning_rate"]
    # an explicit scale or rate is kept whatever the base
    assert TrainingConfig(model_scale="tiny").for_base(tmp_path).lr == METHOD_DEFAULTS["lora-sft"]["learning_rate"]
    assert TrainingConfig(learning_rate=0.5).for_base(tmp_path).lr == 0.5
    # a GRPO warm start keeps the scale: full SFT at the real SFT rate
    warm = TrainingConfig(method="grpo", warm_start_steps=5).for_base(tmp_path).warm_start_config()
    assert warm.learning_rate == REAL_MODEL_DEFAULTS["sft"]["learning_rate"]


def test_a_job_spec_s_training_section_reaches_the_training_config() -> None:
    spec = JobSpec.from_yaml(EXAMPLES / "rules-injection.yaml")
    packed = spec.model_copy(update={"training": spec.training.model_copy(update={"packing": True})})
    assert training_config(spec).packing is False  # padded unless asked: see TrainingConfig.packing
    config = training_config(packed)
    assert config.packing is True
    assert (config.method, config.max_steps, config.learning_rate) == (
        spec.training.method,
        spec.training.max_steps,
        spec.training.learning_rate,
    )


def test_grpo_batch_must_be_a_multiple_of_num_generations() -> None:
    with pytest.raises(ValueError, match="multiple"):
        TrainingConfig(method="grpo", batch_size=12, num_generations=8).resolved()
    with pytest.raises(ValueError, match="unknown method"):
        TrainingConfig(method="dpo").resolved()  # type: ignore[arg-type]


def test_cpu_precision_is_fp32_without_checkpointing() -> None:
    p = resolve_precision("cpu")
    assert (p.bf16, p.gradient_checkpointing, p.use_cpu, p.dtype) == (False, False, True, torch.float32)


def test_jsonl_round_trip_both_formats(tmp_path: Path) -> None:
    recs = helpers.records(5, seed=1)
    path = write_jsonl(tmp_path / "d.jsonl", recs)
    sft = load_sft_jsonl(path)
    assert sft.column_names == ["id", "messages", "answer"] and len(sft) == 5
    grpo = load_grpo_jsonl(path)  # SFT records convert to prompts
    assert all(m["role"] != "assistant" for m in grpo[0]["prompt"])
    assert grpo[0]["answer"] == recs[0]["answer"]
    assert eval_items(recs)[0] == (recs[0]["messages"][:-1], recs[0]["answer"])


def test_bad_records_are_rejected() -> None:
    bad = {"id": "x", "messages": [{"role": "user", "content": "hi"}], "answer": "1"}
    with pytest.raises(DataFormatError, match="assistant"):
        sft_dataset([bad])
    with pytest.raises(DataFormatError, match="bad message"):
        sft_dataset([{"id": "y", "messages": [{"role": "robot", "content": "x"}]}])


def test_a_grpo_warm_start_is_full_sft_at_the_sft_defaults() -> None:
    grpo = TrainingConfig(method="grpo", max_steps=50, learning_rate=1e-5, warm_start_steps=120, packing=True)
    warm = grpo.warm_start_config()
    assert (warm.method, warm.max_steps, warm.warm_start_steps, warm.packing) == ("sft", 120, 0, True)
    assert (warm.learning_rate, warm.batch_size) == (
        METHOD_DEFAULTS["sft"]["learning_rate"],
        METHOD_DEFAULTS["sft"]["batch_size"],
    )
    with pytest.raises(ValueError, match="warm start"):
        TrainingConfig(method="grpo").warm_start_config()


def test_warm_start_steps_are_refused_outside_grpo() -> None:
    raw = JobSpec.from_yaml(EXAMPLES / "math-alignment.yaml").model_dump(mode="json")
    raw["training"]["warm_start_steps"] = 100
    with pytest.raises(ValueError, match="warm_start_steps applies to method 'grpo' only, not 'sft'"):
        JobSpec.model_validate(raw)
    raw["training"] |= {"method": "grpo", "batch_size": 16, "learning_rate": None}
    assert JobSpec.model_validate(raw).training.warm_start_steps == 100
