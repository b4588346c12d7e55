"""The gateway in front of llama.cpp: what it forwards, what it refuses, and that its engine lives and dies with it.

These run everywhere: the engine behind the gateway is a test double that records what reaches it
(`llama_server_double.py`). The same hostile requests against real llama.cpp are in `test_llamacpp.py`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stratos_deployer.serving.gateway import GatewayConfig, gateway_command, parse_args, upstream_body
from stratos_deployer.serving.process import ManagedProcess
from stratos_deployer.serving.requests import ENDPOINT_KEY_ENV, RequestRefused, parse_chat_request
from stratos_shared.embedded import free_port

KEY = "endpoint-key-for-tests"
MESSAGES = [{"role": "user", "content": "What is 2 + 3?"}]
DOUBLE = Path(__file__).with_name("llama_server_double.py")


def config(**changes: Any) -> GatewayConfig:
    values: dict[str, Any] = {"port": 9000, "upstream_port": 9001, "served_name": "job-1", "max_tokens_limit": 64}
    return GatewayConfig(**{**values, **changes})


def test_only_validated_fields_reach_the_engine_with_the_budget_resolved() -> None:
    chat = parse_chat_request(
        {"messages": MESSAGES, "n_predict": 10**9, "grammar": "root ::= x", "top_k": 1, "temperature": 0.5}
    )
    assert upstream_body(chat, config(default_max_tokens=32)) == {
        "model": "job-1",
        "messages": MESSAGES,
        "max_tokens": 32,
        "temperature": 0.5,
        "top_p": 1.0,
        "stream": False,
    }
    streamed = parse_chat_request({"messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}})
    assert upstream_body(streamed, config())["stream_options"] == {"include_usage": True}
    with pytest.raises(RequestRefused, match="at most 64"):
        upstream_body(parse_chat_request({"messages": MESSAGES, "max_tokens": 65}), config())


def test_the_command_line_names_the_key_variable_never_the_key() -> None:
    argv = gateway_command(config(api_key=KEY), ["llama-server", "-m", "m.gguf"], "python")
    assert KEY not in " ".join(argv)
    assert argv[argv.index("--api-key-env") + 1] == ENDPOINT_KEY_ENV
    os.environ[ENDPOINT_KEY_ENV] = KEY
    try:
        parsed, engine = parse_args(argv[3:])
    finally:
        del os.environ[ENDPOINT_KEY_ENV]
    assert engine == ["llama-server", "-m", "m.gguf"]
    assert parsed.api_key is not None and parsed.api_key.get_secret_value() == KEY
    assert parsed.model_dump(exclude={"api_key"}) == config().model_dump(exclude={"api_key"})


@contextlib.contextmanager
def running_gateway(tmp_path: Path) -> Iterator[tuple[str, Path, ManagedProcess]]:
    """The gateway as the deployer starts it (its own session, key in the environment), the double as its engine."""
    record = tmp_path / "record.jsonl"
    upstream = free_port()
    engine = [sys.executable, str(DOUBLE), "--port", str(upstream), "--record", str(record)]
    endpoint = config(port=free_port(), upstream_port=upstream, api_key=KEY)
    process = ManagedProcess(
        gateway_command(endpoint, engine, sys.executable),
        f"http://127.0.0.1:{endpoint.port}/health",
        tmp_path / "gateway.log",
        env={ENDPOINT_KEY_ENV: KEY, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    process.start()
    try:
        process.wait_ready(60)
        yield f"http://127.0.0.1:{endpoint.port}/v1", record, process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, ManagedProcess]]:
    with running_gateway(tmp_path_factory.mktemp("gateway")) as running:
        yield running


@pytest.fixture()
def own_gateway(tmp_path: Path) -> Iterator[tuple[str, Path, ManagedProcess]]:
    """A gateway for one test that kills it."""
    with running_gateway(tmp_path) as running:
        yield running


def forwarded(record: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


def test_requests_pass_with_the_key_and_reach_the_engine_under_its_own(gateway: tuple[str, Path, Any]) -> None:
    url, record, _ = gateway
    key = {"authorization": f"Bearer {KEY}"}
    reply = httpx.post(url + "/chat/completions", json={"messages": MESSAGES, "n_predict": 5000}, headers=key)
    assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"] == "recorded"
    streamed = httpx.post(url + "/chat/completions", json={"messages": MESSAGES, "stream": True}, headers=key)
    assert streamed.status_code == 200 and streamed.text.count("data: ") == 3 and streamed.text.endswith("[DONE]\n\n")
    assert httpx.get(url + "/models", headers=key).json()["data"][0]["id"] == "recorded-model"
    seen = forwarded(record)
    assert [s["body"]["max_tokens"] for s in seen] == [64, 64]  # the limit as default, never n_predict's 5000
    assert all("n_predict" not in s["body"] for s in seen)
    assert all(s["authorization"].startswith("Bearer ") and KEY not in s["authorization"] for s in seen)


GOOD = f"Bearer {KEY}"
REFUSED: dict[str, tuple[Any, str | None, int, str]] = {
    "no key": ({"messages": MESSAGES}, None, 401, "API key"),
    "a wrong key": ({"messages": MESSAGES}, "Bearer wrong", 401, "API key"),
    "nan temperature": ({"messages": MESSAGES, "temperature": "nan"}, GOOD, 400, "temperature"),
    "negative max_tokens": ({"messages": MESSAGES, "max_tokens": -5}, GOOD, 400, "max_tokens"),
    "huge max_tokens": ({"messages": MESSAGES, "max_tokens": 10**9}, GOOD, 400, "at most 64"),
    "n of 1000": ({"messages": MESSAGES, "n": 1000}, GOOD, 400, "'n'"),
    "a body past the limit": ({"messages": [{"role": "user", "content": "x" * (2 << 20)}]}, GOOD, 413, "larger than"),
    "not JSON": (b"{not json", GOOD, 400, "not valid JSON"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_a_hostile_request_is_refused_with_its_reason_and_never_forwarded(
    gateway: tuple[str, Path, Any], name: str
) -> None:
    url, record, _ = gateway
    before = len(forwarded(record))
    body, authorization, status, phrase = REFUSED[name]
    headers = {"authorization": authorization} if authorization else {}
    if isinstance(body, bytes):
        reply = httpx.post(url + "/chat/completions", content=body, headers=headers)
    else:
        reply = httpx.post(url + "/chat/completions", json=body, headers=headers)
    assert reply.status_code == status, reply.text
    assert phrase in reply.json()["error"]["message"]
    assert len(forwarded(record)) == before


def test_the_engine_dies_with_the_gateway_even_by_sigkill(own_gateway: tuple[str, Path, ManagedProcess]) -> None:
    _, _, process = own_gateway
    assert process.pid is not None
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    assert len(children) == 1
    os.kill(process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{children[0]}").exists() and _state(int(children[0])) != "Z":
        assert time.monotonic() < deadline, "llama-server outlived its gateway"
        time.sleep(0.1)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_the_gateway_exits_when_its_engine_does(own_gateway: tuple[str, Path, ManagedProcess]) -> None:
    _, _, process = own_gateway
    assert process.pid is not None
    child = int(Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()[0])
    os.kill(child, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while process.is_running():
        assert time.monotonic() < deadline, "the endpoint outlived its engine"
        time.sleep(0.1)
