"""Local tiny models: cache behaviour, tokenizer, chat template, loadability."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoModelForCausalLM

from stratos_shared import localmodels
from stratos_shared.localmodels import RECIPES, ensure_tiny_model, load_tokenizer, read_marker


@pytest.mark.timeout(1200)  # the first run on a machine builds the base (~1 min)
def test_second_ensure_returns_same_path_without_rebuilding(base_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_build(*_: object, **__: object) -> None:
        raise AssertionError("rebuilt a cached model")

    monkeypatch.setattr(localmodels.build, "build_tiny_model", no_build)
    t0 = time.monotonic()
    again = ensure_tiny_model("tiny-1m", cache_dir=base_model.parent)
    assert again == base_model
    assert time.monotonic() - t0 < 1.0


def test_cache_dir_is_content_addressed_and_env_overridable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATOS_MODEL_CACHE", str(tmp_path))
    path = localmodels.model_dir_for("tiny-1m")
    assert path.parent == tmp_path
    assert path.name == f"tiny-1m-{RECIPES['tiny-1m'].content_hash()}"
    assert localmodels.model_dir_for("tiny-4m").name != path.name


def test_built_model_loads_and_is_about_one_million_parameters(base_model: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(base_model)
    n = sum(p.numel() for p in model.parameters())
    assert 0.5e6 < n < 1.5e6
    assert read_marker(base_model)["num_parameters"] == n
    # generic pre-training actually happened
    marker = read_marker(base_model)
    assert float(marker["pretrain_final_loss"]) < float(marker["pretrain_first_loss"]) / 3  # type: ignore[arg-type]


def test_tokenizer_splits_digits_and_masks_assistant_turns(base_model: Path) -> None:
    tok = load_tokenizer(base_model)
    ids = tok("12345", add_special_tokens=False)["input_ids"]
    assert [tok.decode([i]) for i in ids] == list("12345")
    assert tok.pad_token is not None and tok.eos_token == "<|im_end|>"
    chat = [{"role": "user", "content": "What is 1 + 2?"}, {"role": "assistant", "content": "1 + 2 = 3\nAnswer: 3"}]
    enc: Any = tok.apply_chat_template(chat, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    masked = [t for t, m in zip(enc["input_ids"], enc["assistant_masks"], strict=True) if m]
    assert tok.decode(masked) == "1 + 2 = 3\nAnswer: 3<|im_end|>"


def test_generation_follows_the_answer_format(base_model: Path) -> None:
    from stratos_trainer.domain.evaluate import generate, load_model

    model, tok = load_model(base_model)
    outs = generate(model, tok, [[{"role": "user", "content": "What is 3 + 4?"}]] * 2, max_new_tokens=24)
    assert all("Answer:" in o for o in outs), outs


def test_cli_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "stratos_shared.localmodels", "build", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--name" in out.stdout and "--out" in out.stdout
