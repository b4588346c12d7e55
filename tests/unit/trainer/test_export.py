"""Export round trip: the merged folder loads with plain transformers and computes what base + adapter computes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from stratos_shared.export import MANIFEST, export_model
from stratos_shared.localmodels import load_tokenizer
from stratos_trainer.domain.checkpoints import TrainResult
from stratos_trainer.domain.config import TrainingConfig
from stratos_trainer.domain.data import sft_dataset
from stratos_trainer.domain.sft import train_sft

PROMPT = [{"role": "user", "content": "What is 37 + 48?"}]


@pytest.fixture(scope="module")
def lora_student(base_model: Path, task_data: Any, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    cfg = TrainingConfig(method="lora-sft", max_steps=6, batch_size=8, learning_rate=5e-3, checkpoint_interval=10**6)
    return train_sft(base_model, sft_dataset(task_data[0][:48]), cfg, tmp_path_factory.mktemp("lora"))


def _logits(model: Any, tokenizer: Any) -> torch.Tensor:
    text = tokenizer.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
    enc = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        return model(**enc).logits


def test_the_merged_export_loads_with_plain_transformers_and_matches_base_plus_adapter(
    base_model: Path, lora_student: TrainResult, tmp_path: Path
) -> None:
    assert lora_student.adapter_dir is not None
    result = export_model(
        lora_student.adapter_dir, tmp_path, is_adapter=True, base_model=base_model, info={"job_id": "j1"}
    )
    assert result.adapter_dir is not None and (result.adapter_dir / "adapter_config.json").exists()

    merged = AutoModelForCausalLM.from_pretrained(str(result.model_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(result.model_dir))
    assert not (result.model_dir / "adapter_config.json").exists()  # a plain model, no PEFT needed
    assert tokenizer.chat_template == load_tokenizer(base_model).chat_template
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base_model)), result.adapter_dir)
    base_only = AutoModelForCausalLM.from_pretrained(str(base_model))
    ours = _logits(merged, tokenizer)
    assert torch.allclose(ours, _logits(reference, tokenizer), atol=1e-4)
    assert not torch.allclose(ours, _logits(base_only, tokenizer), atol=1e-3)  # the adapter is in there
    # the tokenizer round-trips too: same ids as the trainer's tokenizer
    text = tokenizer.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
    assert tokenizer(text)["input_ids"] == load_tokenizer(base_model)(text)["input_ids"]

    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["job_id"] == "j1" and manifest["has_adapter"] is True
    assert manifest["num_parameters"] == sum(p.numel() for p in merged.parameters())


def test_a_fully_fine_tuned_student_exports_without_an_adapter(lora_student: TrainResult, tmp_path: Path) -> None:
    result = export_model(lora_student.model_dir, tmp_path, is_adapter=False)
    assert result.adapter_dir is None and not (tmp_path / "adapter").exists()
    loaded = AutoModelForCausalLM.from_pretrained(str(result.model_dir))
    original = AutoModelForCausalLM.from_pretrained(str(lora_student.model_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(result.model_dir))
    assert torch.equal(_logits(loaded, tokenizer), _logits(original, tokenizer))


def test_an_adapter_without_its_base_is_refused(lora_student: TrainResult, tmp_path: Path) -> None:
    assert lora_student.adapter_dir is not None
    with pytest.raises(ValueError, match="base model"):
        export_model(lora_student.adapter_dir, tmp_path, is_adapter=True)
