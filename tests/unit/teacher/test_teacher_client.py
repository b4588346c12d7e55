"""TeacherClient against the in-process simulator: retries, faults, n, cache, cost, secrecy."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stratos_shared.policy import InputPolicy, networks
from stratos_shared.tasks import build_task
from stratos_shared.teacher import (
    MemoryCache,
    Pricing,
    TeacherAddressRefused,
    TeacherBadResponse,
    TeacherClient,
    TeacherRequestRejected,
    TeacherUnavailable,
)
from stratos_shared.teacher.simulator import Faults, ModelSpec, RunningSimulator, SimulatorConfig, running_simulator

KEY = "sk-test-SUPERSECRET-123"
TASK = build_task("math", seed=0, size=40)
MSGS = TASK.prompt(TASK.examples()[0])


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    with running_simulator(SimulatorConfig(models={"t": ModelSpec(), "u": ModelSpec()})) as running:
        yield running


@pytest.fixture(autouse=True)
def clean(sim: RunningSimulator) -> None:
    sim.simulator.config.faults = Faults()
    sim.simulator.config.ignore_n = False
    sim.simulator.reset_stats()


def client(sim: RunningSimulator, **kw: object) -> TeacherClient:
    opts: dict[str, object] = {"api_key": KEY, "backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 2.0}
    opts.update(kw)
    return TeacherClient(sim.base_url, "t", **opts)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_completion_tokens_and_cost(sim: RunningSimulator) -> None:
    async with client(sim, pricing=Pricing(input_usd_per_1m=2.0, output_usd_per_1m=10.0)) as c:
        result = await c.complete(MSGS)
    assert TASK.grade(result.text, TASK.examples()[0]).correct
    prompt_tokens = sum(len(m["content"].split()) for m in MSGS)
    assert result.input_tokens == prompt_tokens and result.output_tokens == len(result.text.split())
    assert result.cost_usd == pytest.approx((prompt_tokens * 2 + result.output_tokens * 10) / 1e6)
    assert not result.cached and result.latency_s > 0
    assert c.usage.cost_usd == result.cost_usd


@pytest.mark.asyncio
async def test_api_key_sent_as_bearer_and_never_leaked(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(401, text=f"bad key {KEY}")

    caplog.set_level(logging.DEBUG)
    c = TeacherClient("http://x/v1", "t", api_key=KEY, transport=httpx.MockTransport(handler))
    with pytest.raises(TeacherRequestRejected) as err:
        await c.complete(MSGS)
    await c.aclose()
    assert seen == [f"Bearer {KEY}"]
    assert err.value.status == 401
    assert KEY not in str(err.value) and KEY not in repr(err.value) and KEY not in repr(c)
    assert KEY not in caplog.text


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("base_url", "refused"),
    [("http://127.0.0.1:8100/v1", "outside the allowed teacher networks"), ("http://2852039166/v1", "169.254.0.0/16")],
)
async def test_a_refused_address_gets_no_request_and_no_key(base_url: str, refused: str) -> None:
    """Checked when the client connects, not only at submission: a name can resolve elsewhere later."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    policy = InputPolicy(data_root=Path("/"), model_root=Path("/"), allowed_networks=networks(["10.0.0.0/8"]))
    if "2852039166" in base_url:  # the decimal form of 169.254.169.254, allowed networks left open
        policy = InputPolicy(data_root=Path("/"), model_root=Path("/"))
    c = TeacherClient(
        base_url, "t", api_key=KEY, transport=httpx.MockTransport(handler), address_guard=policy.address_problem
    )
    with pytest.raises(TeacherAddressRefused, match=refused) as err:
        await c.complete(MSGS)
    await c.aclose()
    assert seen == [] and KEY not in str(err.value)


@pytest.mark.asyncio
async def test_retries_through_429_500_and_malformed(sim: RunningSimulator) -> None:
    sim.simulator.config.faults = Faults(rate_429=0.3, retry_after_s=0.01, rate_500=0.2, rate_malformed=0.1)
    async with client(sim, max_retries=8) as c:
        results = [await c.complete(TASK.prompt(ex)) for ex in TASK.examples()[:20]]
    assert all(TASK.grade(r.text, ex).correct for r, ex in zip(results, TASK.examples(), strict=False))
    faults = sim.simulator.stats()["faults"]
    assert faults.get("429", 0) > 0 and faults.get("500", 0) > 0
    assert c.usage.retries == sum(faults.values())
    assert sim.simulator.stats()["total"] == len(results) + c.usage.retries


@pytest.mark.asyncio
async def test_timeouts_are_retried(sim: RunningSimulator) -> None:
    sim.simulator.config.faults = Faults(rate_timeout=0.5, timeout_delay_s=5.0)
    async with client(sim, timeout_s=0.3, max_retries=10) as c:
        results = [await c.complete(TASK.prompt(ex)) for ex in TASK.examples()[:6]]
    assert len(results) == 6 and sim.simulator.stats()["faults"].get("timeout", 0) > 0


@pytest.mark.asyncio
async def test_retry_after_is_honoured(sim: RunningSimulator) -> None:
    sim.simulator.config.faults = Faults(rate_429=1.0, retry_after_s=0.2)
    async with client(sim, max_retries=2) as c:
        start = time.perf_counter()
        with pytest.raises(TeacherUnavailable) as err:
            await c.complete(MSGS)
        assert time.perf_counter() - start >= 0.4  # waited Retry-After, not the 10 ms backoff
        assert c.usage.retries == 2
    assert "failed after 3 attempts" in str(err.value) and "HTTP 429" in str(err.value)
    assert sim.simulator.stats()["total"] == 3


@pytest.mark.asyncio
async def test_gives_up_with_clear_errors(sim: RunningSimulator) -> None:
    sim.simulator.config.faults = Faults(rate_500=1.0)
    async with client(sim, max_retries=3) as c:
        with pytest.raises(TeacherUnavailable, match="failed after 4 attempts; last problem: HTTP 500") as err:
            await c.complete(MSGS)
    assert KEY not in str(err.value)
    sim.simulator.config.faults = Faults(rate_malformed=1.0)
    async with client(sim, max_retries=1) as c:
        with pytest.raises(TeacherBadResponse, match="invalid JSON"):
            await c.complete(MSGS)
    sim.simulator.config.faults = Faults(rate_timeout=1.0, timeout_delay_s=3.0)
    async with client(sim, max_retries=1, timeout_s=0.2) as c:
        with pytest.raises(TeacherUnavailable, match=r"no answer within 0\.2 s"):
            await c.complete(MSGS)
    async with TeacherClient("http://127.0.0.1:9/v1", "t", max_retries=1, backoff_base_s=0.01) as c:
        with pytest.raises(TeacherUnavailable, match="connection failed"):
            await c.complete(MSGS)
    async with TeacherClient(sim.base_url, "no-such-model") as c:
        with pytest.raises(TeacherRequestRejected, match="HTTP 404"):
            await c.complete(MSGS)


@pytest.mark.asyncio
async def test_n_and_fallback_when_server_ignores_n(sim: RunningSimulator) -> None:
    async with client(sim) as c:
        native = await c.complete(MSGS, n=4, seed=7)
    assert len(native.texts) == 4 and native.http_calls == 1
    sim.simulator.config.ignore_n = True
    async with client(sim) as c:
        fallback = await c.complete(MSGS, n=4, seed=7)
        assert fallback.http_calls == 4
        again = await c.complete(MSGS, n=3, seed=7)
        assert again.http_calls == 3  # remembers the server ignores n
    assert fallback.texts == native.texts  # sample i is the same sample either way


@pytest.mark.asyncio
async def test_a_server_refusing_n_gets_one_request_per_sample_remembered_per_endpoint(sim: RunningSimulator) -> None:
    """The teacher simulator (a test double) answering n > 1 with 400 "only n=1 is supported", as llama.cpp does."""
    async with client(sim) as c:
        native = await c.complete(MSGS, n=3, seed=7)
    with running_simulator(SimulatorConfig(models={"t": ModelSpec()}, refuse_n=True)) as refusing:
        async with client(refusing) as c:
            got = await c.complete(MSGS, n=3, seed=7)
            assert got.http_calls == 4  # the refused request, then one per sample
            assert (await c.complete(MSGS, n=2, seed=8)).http_calls == 2
        async with client(refusing) as fresh:  # another client of the same endpoint knows it already
            assert (await fresh.complete(MSGS, n=2, seed=9)).http_calls == 2
        assert refusing.simulator.requests["t"] == 8
    assert got.texts == native.texts  # sample i is the same sample either way


@pytest.mark.asyncio
async def test_a_400_that_is_not_about_n_is_still_an_error() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(400, json={"error": {"message": "unknown field 'foo'"}})

    c = TeacherClient("http://bad-request/v1", "t", transport=httpx.MockTransport(handler))
    with pytest.raises(TeacherRequestRejected, match="unknown field"):
        await c.complete(MSGS, n=2)
    await c.aclose()
    assert len(calls) == 3  # tried n=2 once, then each sample once: refused the same way, so it gives up


@pytest.mark.asyncio
async def test_cache_prevents_repeat_http_calls(sim: RunningSimulator) -> None:
    cache = MemoryCache()
    async with client(sim, cache=cache, pricing=Pricing(input_usd_per_1m=1.0)) as c:
        first = await c.complete(MSGS, n=2, temperature=0.7)
        assert sim.simulator.stats()["total"] == 1
        second = await c.complete(MSGS, n=2, temperature=0.7)
        assert sim.simulator.stats()["total"] == 1
        assert second.cached and second.cost_usd == 0 and second.http_calls == 0 and second.texts == first.texts
        more = await c.complete(MSGS, n=3, temperature=0.7)  # only sample 2 is new
        assert not more.cached and more.http_calls == 1 and more.texts[:2] == first.texts
        await c.complete(MSGS, n=1, temperature=0.9)  # different parameters miss
        assert sim.simulator.stats()["requests"] == {"t": 3}
        assert c.usage.cache_hits == 2 + 2


@pytest.mark.asyncio
async def test_concurrency_is_bounded(sim: RunningSimulator) -> None:
    import asyncio

    sim.simulator.config.latency_ms = 50
    try:
        async with client(sim, max_concurrency=4) as c:
            loop = asyncio.get_running_loop()
            start = loop.time()
            await asyncio.gather(*(c.complete(TASK.prompt(ex)) for ex in TASK.examples()[:16]))
            elapsed = loop.time() - start
    finally:
        sim.simulator.config.latency_ms = 0
    assert elapsed >= 16 / 4 * 0.05 * 0.95  # 4 waves of 50 ms at least
