"""Shared fixtures: one tiny model, one LoRA adapter and one CPU server per session.

Building the model and loading the server are the slow parts, so they are
session-scoped; every test talks to the server over real HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from stratos_deployer.serving.cpu_server import CpuServerConfig, RunningServer, encode_chat, start_in_thread
from stratos_shared.localmodels import ensure_tiny_model, load_tokenizer

SERVED_NAME = "student-under-test"


@pytest.fixture(scope="session")
def tiny_model_path() -> Path:
    """The tiny base from the shared, content-addressed model cache: built once per machine (the trainer and
    deployer tests use the same one), not once per test session."""
    return ensure_tiny_model("tiny-1m")


@pytest.fixture(scope="session")
def adapter_path(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter whose B matrices are random, so it really changes outputs."""
    torch.manual_seed(1234)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    config = LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)
    out = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def cpu_server(tiny_model_path: Path) -> Iterator[RunningServer]:
    config = CpuServerConfig(
        model_path=tiny_model_path, served_name=SERVED_NAME, port=0, max_batch_size=8, max_wait_ms=100.0
    )
    with start_in_thread(config) as server:
        yield server


@pytest.fixture(scope="session")
def reference_generate(tiny_model_path: Path) -> Callable[[Sequence[Any], int], str]:
    """Greedy text from plain ``model.generate``, one prompt at a time: the ground truth."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path).train(False)
    tokenizer = load_tokenizer(tiny_model_path)

    def generate(messages: Sequence[Any], max_tokens: int) -> str:
        ids = encode_chat(tokenizer, list(messages))
        with torch.inference_mode():
            out = model.generate(torch.tensor([ids]), max_new_tokens=max_tokens, do_sample=False, attention_mask=None)
        return str(tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True))

    return generate
