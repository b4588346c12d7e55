"""Both HTTP engines behind TeacherClient: same semantics (retries, timeouts, errors, secrecy), cache off-loop."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from stratos_shared.tasks import build_task
from stratos_shared.teacher import (
    DirectoryCache,
    TeacherBadResponse,
    TeacherClient,
    TeacherRequestRejected,
    TeacherUnavailable,
)
from stratos_shared.teacher.engines import (
    ENGINE_ENV,
    HTTPX_SHARD_SIZE,
    AiohttpEngine,
    HttpxEngine,
    dumps,
    engine_name,
    loads,
    make_engine,
)
from stratos_shared.teacher.simulator import Faults, ModelSpec, RunningSimulator, SimulatorConfig, running_simulator

KEY = "sk-test-ENGINE-SECRET-42"
TASK = build_task("math", seed=0, size=12)
MSGS = TASK.prompt(TASK.examples()[0])
HAVE_AIOHTTP = importlib.util.find_spec("aiohttp") is not None
ENGINES = ["httpx", pytest.param("aiohttp", marks=pytest.mark.skipif(not HAVE_AIOHTTP, reason="aiohttp not installed"))]


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    with running_simulator(SimulatorConfig(models={"t": ModelSpec()})) as running:
        yield running


@pytest.fixture(autouse=True)
def clean(sim: RunningSimulator) -> None:
    sim.simulator.config.faults = Faults()
    sim.simulator.config.latency_ms = 0
    sim.simulator.reset_stats()


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(ENGINE_ENV, request.param)
    return str(request.param)


def client(sim: RunningSimulator, **kw: Any) -> TeacherClient:
    opts: dict[str, Any] = {"api_key": KEY, "backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 2.0}
    opts.update(kw)
    return TeacherClient(sim.base_url, "t", **opts)


@pytest.mark.asyncio
async def test_engine_completes_concurrently_and_sends_bearer(sim: RunningSimulator, engine: str) -> None:
    sim.simulator.config.latency_ms = 30
    async with client(sim, max_concurrency=12) as c:
        assert c.engine == engine
        start = time.perf_counter()
        results = await asyncio.gather(*(c.complete(TASK.prompt(ex), seed=3) for ex in TASK.examples()))
        elapsed = time.perf_counter() - start
    assert all(TASK.grade(r.text, ex).correct for r, ex in zip(results, TASK.examples(), strict=True))
    assert elapsed < 12 * 0.03  # ran concurrently, not one by one
    assert sim.simulator.stats()["total"] == 12 and c.usage.http_calls == 12


@pytest.mark.asyncio
async def test_engine_retry_after_timeouts_and_errors(sim: RunningSimulator, engine: str) -> None:
    sim.simulator.config.faults = Faults(rate_429=1.0, retry_after_s=0.15)
    async with client(sim, max_retries=1) as c:
        start = time.perf_counter()
        with pytest.raises(TeacherUnavailable, match="failed after 2 attempts; last problem: HTTP 429"):
            await c.complete(MSGS)
        assert time.perf_counter() - start >= 0.15
    sim.simulator.config.faults = Faults(rate_timeout=1.0, timeout_delay_s=3.0)
    async with client(sim, max_retries=1, timeout_s=0.2) as c:
        with pytest.raises(TeacherUnavailable, match=r"no answer within 0\.2 s"):
            await c.complete(MSGS)
    sim.simulator.config.faults = Faults(rate_malformed=1.0)
    async with client(sim, max_retries=0) as c:
        with pytest.raises(TeacherBadResponse, match="invalid JSON"):
            await c.complete(MSGS)
    async with TeacherClient("http://127.0.0.1:9/v1", "t", max_retries=1, backoff_base_s=0.01) as c:
        with pytest.raises(TeacherUnavailable, match=r"connection failed \(\w+\)"):
            await c.complete(MSGS)
    sim.simulator.config.faults = Faults()
    async with TeacherClient(sim.base_url, "no-such-model", api_key=KEY) as c:
        with pytest.raises(TeacherRequestRejected, match="HTTP 404") as err:
            await c.complete(MSGS)
    assert err.value.status == 404 and KEY not in str(err.value)


@pytest.fixture(scope="module")
def echo_server() -> Iterator[str]:
    """A server that echoes the Authorization header back in a 401 body; yields its base URL."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = dict(scope["headers"])
        await send({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"bad key " + headers[b"authorization"]})

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()


@pytest.mark.asyncio
async def test_engine_redacts_key_echoed_by_server(
    echo_server: str, engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with TeacherClient(echo_server, "t", api_key=KEY) as c:
        with pytest.raises(TeacherRequestRejected) as err:
            await c.complete(MSGS)
    assert err.value.status == 401 and "bad key Bearer **********" in str(err.value)
    assert KEY not in str(err.value) and KEY not in repr(err.value) and KEY not in caplog.text


def test_engine_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENGINE_ENV, raising=False)
    assert engine_name() == ("aiohttp" if HAVE_AIOHTTP else "httpx")
    assert engine_name(httpx.MockTransport(lambda r: httpx.Response(200))) == "httpx"  # a given transport wins
    monkeypatch.setenv(ENGINE_ENV, "httpx")
    assert engine_name() == "httpx"
    monkeypatch.setenv(ENGINE_ENV, "curl")
    with pytest.raises(ValueError, match=ENGINE_ENV):
        engine_name()
    monkeypatch.setenv(ENGINE_ENV, "aiohttp")
    if not HAVE_AIOHTTP:
        with pytest.raises(RuntimeError, match="not installed"):
            engine_name()


@pytest.mark.asyncio
async def test_httpx_engine_shards_the_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENGINE_ENV, "httpx")
    engine = make_engine(max_connections=64, timeout_s=1)
    assert isinstance(engine, HttpxEngine) and len(engine._clients) == 64 // HTTPX_SHARD_SIZE
    await engine.aclose()
    engine = make_engine(max_connections=3, timeout_s=1)
    assert isinstance(engine, HttpxEngine) and len(engine._clients) == 1
    await engine.aclose()
    mock = httpx.MockTransport(lambda r: httpx.Response(200))
    engine = make_engine(max_connections=64, timeout_s=1, transport=mock)
    assert isinstance(engine, HttpxEngine) and len(engine._clients) == 1
    await engine.aclose()


@pytest.mark.skipif(not HAVE_AIOHTTP, reason="aiohttp not installed")
def test_aiohttp_engine_resolves_proxy_once_per_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.local:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    engine = AiohttpEngine(max_connections=4, timeout_s=1)
    assert engine._proxy_for("https://api.example.com/v1/chat/completions") == "http://proxy.local:3128"
    assert engine._proxy_for("https://internal.example/v1/chat/completions") is None
    assert engine._proxy_for("http://127.0.0.1:8100/v1/chat/completions") is None  # no HTTP_PROXY set
    monkeypatch.delenv("HTTPS_PROXY")
    assert engine._proxy_for("https://api.example.com/v1/chat/completions") == "http://proxy.local:3128"  # cached


class RecordingCache(DirectoryCache):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.threads: set[int] = set()

    def get(self, key: str) -> dict[str, Any] | None:
        self.threads.add(threading.get_ident())
        return super().get(key)

    def put(self, key: str, value: dict[str, Any]) -> None:
        self.threads.add(threading.get_ident())
        super().put(key, value)


@pytest.mark.asyncio
async def test_directory_cache_io_runs_off_the_event_loop(sim: RunningSimulator, tmp_path: Path) -> None:
    cache = RecordingCache(tmp_path)
    async with client(sim, cache=cache) as c:
        first = await c.complete(MSGS, n=2, seed=5)
        again = await c.complete(MSGS, n=2, seed=5)
    assert again.cached and again.texts == first.texts and sim.simulator.stats()["total"] == 1
    assert cache.threads and threading.get_ident() not in cache.threads
    assert len(await asyncio.to_thread(lambda: list(tmp_path.rglob("*.json")))) == 2


def test_json_helpers() -> None:
    body = {"model": "t", "messages": [{"role": "user", "content": "héllo"}], "seed": 2**70}  # beyond orjson's ints
    assert loads(dumps(body)) == body
    assert "héllo".encode() in dumps(body)
    for bad in (b'{"choices": [', b"\xff\xfe"):
        with pytest.raises(ValueError):
            loads(bad)
