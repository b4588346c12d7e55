"""Hostile requests to the CPU server: refused one by one, never harming the requests decoded beside them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from stratos_deployer.serving.cpu_server import CpuServerConfig, RunningServer, start_in_thread
from tests.unit.serving.conftest import SERVED_NAME
from tests.unit.serving.test_serving_cpu_server import PROMPTS

REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "nan temperature (string)": ({"temperature": "nan"}, "temperature"),
    "infinite top_p": ({"top_p": "inf"}, "top_p"),
    "temperature past 2": ({"temperature": 7}, "temperature"),
    "max_tokens past the limit": ({"max_tokens": 10**9}, "at most 2048"),
    "max_tokens as a float": ({"max_tokens": 8.5}, "max_tokens"),
    "max_tokens as a bool": ({"max_completion_tokens": True}, "max_completion_tokens"),
    "five stop strings": ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    "stream as a string": ({"stream": "yes"}, "stream"),
    "n as a string": ({"n": "3"}, "'n'"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_a_bad_field_is_refused_naming_it(cpu_server: RunningServer, name: str) -> None:
    change, phrase = REFUSED[name]
    guarded = cpu_server.url + "/v1/chat/completions"
    reply = httpx.post(guarded, json={"model": SERVED_NAME, "messages": PROMPTS[0], **change})
    assert reply.status_code == 400, reply.text
    assert phrase in reply.json()["error"]["message"], reply.text


def test_a_nan_beside_good_requests_leaves_them_whole(
    cpu_server: RunningServer, reference_generate: Callable[[Sequence[Any], int], str]
) -> None:
    """JSON's own NaN literal and the string "nan" arrive while greedy requests decode: they are refused, and
    the greedy answers are exactly what model.generate writes (once, a NaN cut every batch-mate short)."""
    url = cpu_server.url + "/v1/chat/completions"

    async def run() -> tuple[list[httpx.Response], list[httpx.Response]]:
        async with httpx.AsyncClient(timeout=60) as client:
            good = [
                client.post(url, json={"model": SERVED_NAME, "messages": p, "max_tokens": 16, "temperature": 0})
                for p in PROMPTS[:3]
            ]
            raw_nan = b'{"model": "x", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}'
            bad = [
                client.post(url, content=raw_nan, headers={"content-type": "application/json"}),
                client.post(url, json={"model": SERVED_NAME, "messages": PROMPTS[0], "temperature": "nan"}),
            ]
            replies = await asyncio.gather(*good, *bad)
            return list(replies[:3]), list(replies[3:])

    good, bad = asyncio.run(run())
    assert [r.status_code for r in bad] == [400, 400]
    for prompt, reply in zip(PROMPTS[:3], good, strict=True):
        choice = reply.json()["choices"][0]
        assert choice["message"]["content"] == reference_generate(prompt, 16)


@pytest.fixture(scope="module")
def guarded_server(tiny_model_path: Path) -> Any:
    config = CpuServerConfig(
        model_path=tiny_model_path,
        served_name=SERVED_NAME,
        port=0,
        max_tokens_limit=64,
        max_body_bytes=4096,
        api_key="s3cret-serving-key",
    )
    with start_in_thread(config) as server:
        yield server


def test_the_key_the_body_size_and_the_token_limit_are_enforced(guarded_server: RunningServer) -> None:
    url = guarded_server.url + "/v1/chat/completions"
    body = {"model": SERVED_NAME, "messages": PROMPTS[0], "max_tokens": 4}
    key = {"authorization": "Bearer s3cret-serving-key"}
    assert httpx.post(url, json=body).status_code == 401
    assert httpx.post(url, json=body, headers={"authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(guarded_server.url + "/stats").status_code == 401
    assert httpx.get(guarded_server.url + "/health").status_code == 200  # a load balancer's probe needs no key
    assert httpx.post(url, json=body, headers=key).status_code == 200
    too_long = httpx.post(url, json={**body, "max_tokens": 65}, headers=key)
    assert too_long.status_code == 400 and "at most 64" in too_long.json()["error"]["message"]
    huge = {**body, "messages": [{"role": "user", "content": "x" * 10_000}]}
    assert httpx.post(url, json=huge, headers=key).status_code == 413

    def chunks() -> Any:  # no Content-Length: the size is enforced while reading
        yield b'{"model": "m", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}]}'

    assert httpx.post(url, content=chunks(), headers=key).status_code == 413
    # the default: a request without max_tokens gets the smaller of the default and the limit
    default = httpx.post(url, json={"model": SERVED_NAME, "messages": PROMPTS[0]}, headers=key)
    assert default.status_code == 200 and default.json()["usage"]["completion_tokens"] <= 64
