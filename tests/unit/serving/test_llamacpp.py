"""llama.cpp as the CPU engine: the argv, the engine choice, and (where `make llama-cpp` built it) SmolLM2 served.

The tests that run the engine skip with a one-line reason where it is not built (CI builds nothing: 14 minutes).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

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
)
from stratos_deployer.serving.process import ServingError
from tests.unit.serving.test_gateway import GOOD, KEY, REFUSED

ENGINE = find_engine()


@pytest.fixture(scope="module")
def smollm2() -> Path:
    """SmolLM2-135M-Instruct converted from the bundled GGUF (``make models``)."""
    from stratos_shared.localmodels.bundled import ensure_bundled_model

    return ensure_bundled_model("smollm2-135m")


needs_engine = pytest.mark.skipif(ENGINE is None, reason=engine_problem() or "")


def test_llama_server_argv_has_the_slots_and_context(tmp_path: Path) -> None:
    engine = LlamaCppEngine(tmp_path)
    config = LlamaServerConfig(gguf=Path("/m.gguf"), served_name="job-1", port=9001, parallel=8, ctx_per_slot=512)
    assert build_llama_server_command(engine, config) == [
        str(tmp_path / "bin" / "llama-server"), "-m", "/m.gguf", "--alias", "job-1",
        "--host", "127.0.0.1", "--port", "9001", "--parallel", "8", "--ctx-size", "4096",
        "--no-webui", "--no-slots",
    ]  # fmt: skip


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


@pytest.fixture(scope="module")
def served(smollm2: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LlamaCppBackend, str]]:
    """SmolLM2 converted once and served by the deployer's llama.cpp backend (4 slots, keyed) for this module."""
    assert ENGINE is not None
    logs = tmp_path_factory.mktemp("llama") / "logs"
    backend = LlamaCppBackend("smol", ENGINE, quant="q8_0", parallel=4, log_dir=logs)
    url = backend.start(smollm2, None, free_port(), api_key=KEY)
    try:
        yield backend, url
    finally:
        backend.stop()


@needs_engine
def test_smollm2_is_served_by_llama_server_with_its_key(served: tuple[LlamaCppBackend, str]) -> None:
    backend, url = served
    question = {"model": "smol", "messages": [{"role": "user", "content": "What is 2+3?"}], "max_tokens": 16}
    assert httpx.post(url + "/chat/completions", json=question, timeout=60).status_code == 401

    async def ask_four() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=120, headers={"Authorization": GOOD}) as client:
            asks = [client.post(url + "/chat/completions", json=question) for _ in range(4)]
            return list(await asyncio.gather(*asks))

    replies = asyncio.run(ask_four())
    assert [r.status_code for r in replies] == [200] * 4
    assert all(r.json()["model"] == "smol" and r.json()["choices"][0]["message"]["content"] for r in replies)
    assert backend.gguf is not None and backend.gguf.stat().st_size > 50_000_000  # q8_0 of 135M parameters


@needs_engine
def test_hostile_requests_during_a_generation_are_refused_and_it_is_unharmed(
    served: tuple[LlamaCppBackend, str],
) -> None:
    """The issue's list (NaN, negative and huge parameters, a 50 MB body, no key, a wrong key) sent while a
    streamed greedy answer is being generated: each refused with its reason, the answer the same as alone."""
    url = served[1] + "/chat/completions"
    question = {"messages": [{"role": "user", "content": "Count from 1 to 30."}], "max_tokens": 96, "temperature": 0}
    alone = httpx.post(url, json=question, headers={"authorization": GOOD}, timeout=120).json()
    streamed, refusals = asyncio.run(_hostile_beside(url, question))
    for name, (status, phrase) in _expected().items():
        assert refusals[name][0] == status and phrase in refusals[name][1], (name, refusals[name])
    assert streamed == alone["choices"][0]["message"]["content"]


def _expected() -> dict[str, tuple[int, str]]:
    expected = {name: (status, phrase) for name, (_, _, status, phrase) in REFUSED.items()}
    # the deployer's limit is a slot's context (1024 tokens), not the gateway test's 64
    expected["huge max_tokens"] = (400, "at most 1024")
    return {**expected, "a 50 MB body": (413, "larger than"), "JSON's NaN literal": (400, "temperature")}


async def _hostile_beside(url: str, question: dict[str, Any]) -> tuple[str, dict[str, tuple[int, str]]]:
    """Stream `question`; once its first tokens arrived, send every hostile request; then read it to the end."""
    refusals: dict[str, tuple[int, str]] = {}
    text: list[str] = []
    async with httpx.AsyncClient(timeout=120) as client:
        stream = {**question, "stream": True}
        async with client.stream("POST", url, json=stream, headers={"authorization": GOOD}) as reply:
            lines = reply.aiter_lines()
            async for line in lines:
                if _delta(line, text):
                    break
            for name, request in _hostile_requests().items():
                answer = await client.post(url, **request)
                refusals[name] = (answer.status_code, answer.json()["error"]["message"])
            async for line in lines:
                _delta(line, text)
    return "".join(text), refusals


def _hostile_requests() -> dict[str, dict[str, Any]]:
    requests: dict[str, dict[str, Any]] = {}
    for name, (body, authorization, _, _) in REFUSED.items():
        headers = {"authorization": authorization} if authorization else {}
        requests[name] = {"content" if isinstance(body, bytes) else "json": body, "headers": headers}
    big = {"messages": [{"role": "user", "content": "x" * (50 << 20)}]}
    requests["a 50 MB body"] = {"json": big, "headers": {"authorization": GOOD}}
    nan = b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}'
    json_headers = {"authorization": GOOD, "content-type": "application/json"}
    requests["JSON's NaN literal"] = {"content": nan, "headers": json_headers}
    return requests


def _delta(line: str, text: list[str]) -> bool:
    """Append a streamed chunk's content to `text`; True when it carried some."""
    if not line.startswith("data: ") or line == "data: [DONE]":
        return False
    choices = json.loads(line[6:])["choices"]
    content = choices[0]["delta"].get("content") if choices else None
    if content:
        text.append(content)
    return bool(content)
