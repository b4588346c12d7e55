"""llama.cpp as the CPU engine: the argv, the engine choice, and (where `make llama-cpp` built it) SmolLM2 served.

The tests that run the engine skip with a one-line reason where it is not built (CI builds nothing: 14 minutes).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import httpx
import pytest
from transformers import AutoTokenizer

from stratos_deployer.serving.backend import CpuBackend, LlamaCppBackend, choose_backend
from stratos_deployer.serving.cpu_server import free_port
from stratos_deployer.serving.llamacpp import (
    GgufConversionError,
    LlamaCppEngine,
    LlamaServerConfig,
    build_llama_server_command,
    convert_to_gguf,
    engine_problem,
    find_engine,
    llama_server_process,
    merged_folder,
)
from stratos_deployer.serving.process import ServingError
from stratos_shared.localmodels import PLAIN_CHAT_TEMPLATE

ENGINE = find_engine()


@pytest.fixture(scope="module")
def smollm2() -> Path:
    """SmolLM2-135M-Instruct converted from the bundled GGUF (``make models``)."""
    from stratos_shared.localmodels.bundled import ensure_bundled_model

    return ensure_bundled_model("smollm2-135m")


needs_engine = pytest.mark.skipif(ENGINE is None, reason=engine_problem() or "")


def test_llama_server_argv_has_the_slots_and_context_and_never_the_key(tmp_path: Path) -> None:
    engine = LlamaCppEngine(tmp_path)
    config = LlamaServerConfig(gguf=Path("/m.gguf"), served_name="job-1", port=9001, parallel=8, ctx_per_slot=512)
    assert build_llama_server_command(engine, config) == [
        str(tmp_path / "bin" / "llama-server"), "-m", "/m.gguf", "--alias", "job-1",
        "--host", "127.0.0.1", "--port", "9001", "--parallel", "8", "--ctx-size", "4096",
        "--no-webui", "--no-slots", "--jinja",
    ]  # fmt: skip
    process = llama_server_process(engine, config, tmp_path / "log", api_key="secret-key")
    assert process.env == {"LLAMA_API_KEY": "secret-key"}
    assert not any("secret-key" in arg for arg in process.argv)


def test_auto_picks_llama_cpp_on_cpu_only_where_it_is_built(tmp_path: Path) -> None:
    engine = LlamaCppEngine(tmp_path)
    assert isinstance(choose_backend(False, engine=engine), LlamaCppBackend)
    assert isinstance(choose_backend(False, "auto", engine=None), CpuBackend)
    assert isinstance(choose_backend(False, "cpu", engine=engine), CpuBackend)
    with pytest.raises(ServingError, match="make llama-cpp"):
        choose_backend(False, "llamacpp", engine=None)


def test_an_empty_engine_folder_says_what_is_missing_in_one_line(tmp_path: Path) -> None:
    problem = engine_problem(tmp_path)
    assert problem is not None and "make llama-cpp" in problem and "\n" not in problem
    assert find_engine(tmp_path) is None


@needs_engine
def test_a_model_the_converter_does_not_know_is_refused_with_its_reason(tiny_model_path: Path, tmp_path: Path) -> None:
    """The tiny students' tokenizer was trained locally: llama.cpp's converter does not know its pre-tokenizer,
    which is what makes the deployer fall back to the transformers server for them."""
    assert ENGINE is not None
    with pytest.raises(GgufConversionError, match=r"convert .* to GGUF failed"):
        convert_to_gguf(ENGINE, tiny_model_path, tmp_path / "tiny.gguf", "q8_0")


@needs_engine
def test_smollm2_is_served_by_llama_server_with_its_key(smollm2: Path, tmp_path: Path) -> None:
    assert ENGINE is not None
    backend = LlamaCppBackend("smol", ENGINE, quant="q8_0", parallel=4, log_dir=tmp_path / "logs")
    key = "k" * 43
    url = backend.start(smollm2, None, free_port(), api_key=key)
    try:
        question = {"model": "smol", "messages": [{"role": "user", "content": "What is 2+3?"}], "max_tokens": 16}
        assert httpx.post(url + "/chat/completions", json=question, timeout=60).status_code == 401

        async def ask_four() -> list[httpx.Response]:
            headers = {"Authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(timeout=120, headers=headers) as client:
                asks = [client.post(url + "/chat/completions", json=question) for _ in range(4)]
                return list(await asyncio.gather(*asks))

        replies = asyncio.run(ask_four())
    finally:
        backend.stop()
    assert [r.status_code for r in replies] == [200] * 4
    assert all(r.json()["model"] == "smol" and r.json()["choices"][0]["message"]["content"] for r in replies)
    assert backend.gguf is not None and backend.gguf.stat().st_size > 50_000_000  # q8_0 of 135M parameters


def test_a_model_without_a_template_is_converted_with_the_plain_one(tiny_model_path: Path, tmp_path: Path) -> None:
    """The GGUF of a base model must carry the format it was trained in, or llama-server would guess ChatML."""
    base = tmp_path / "base"
    base.mkdir()
    for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json"):
        shutil.copy(tiny_model_path / name, base / name)
    config = json.loads((tiny_model_path / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (base / "tokenizer_config.json").write_text(json.dumps(config))
    before = sorted(p.name for p in base.iterdir())

    folder = merged_folder(base, None, tmp_path / "merged")
    assert AutoTokenizer.from_pretrained(str(folder)).chat_template == PLAIN_CHAT_TEMPLATE
    assert (folder / "model.safetensors").resolve() == base / "model.safetensors"  # linked, not copied
    assert sorted(p.name for p in base.iterdir()) == before  # the cached base is never written
    assert not AutoTokenizer.from_pretrained(str(base)).chat_template
    assert merged_folder(tiny_model_path, None, tmp_path / "other") == tiny_model_path  # its own template: as is
