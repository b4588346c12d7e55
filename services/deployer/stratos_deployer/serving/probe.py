"""Measure a deployed endpoint: latency (TTFT, end-to-end) and task accuracy.

Works against any OpenAI-compatible server (the CPU server, vLLM, a hosted
API), so the deployment report compares like with like. Latency uses
streaming because time to first token is only observable that way.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

ChatMessages = list[dict[str, str]]


@dataclass(frozen=True)
class LatencyReport:
    """Latency of ``n_requests`` streamed completions, in seconds."""

    n_requests: int
    concurrency: int
    ttft_p50: float
    ttft_p95: float
    e2e_p50: float
    e2e_p95: float
    completion_tokens: int
    wall_s: float

    @property
    def requests_per_s(self) -> float:
        """Completed requests per wall-clock second."""
        return self.n_requests / self.wall_s if self.wall_s > 0 else math.inf


@dataclass(frozen=True)
class AccuracyReport:
    """How many graded answers were correct, with the raw outputs for the report."""

    accuracy: float
    correct: int
    total: int
    outputs: list[str]


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default), ``q`` in [0, 100]."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


async def _timed_stream(client: httpx.AsyncClient, url: str, payload: dict[str, object]) -> tuple[float, float, int]:
    """One streamed request: (time to first content token, total time, completion tokens)."""
    start = time.perf_counter()
    first: float | None = None
    tokens = 0
    async with client.stream("POST", url, json=payload) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = int(chunk["usage"].get("completion_tokens", 0))
            for choice in chunk.get("choices", []):
                if first is None and choice.get("delta", {}).get("content"):
                    first = time.perf_counter() - start
    total = time.perf_counter() - start
    # A completion with no text has no first token; count its end as the first.
    return (first if first is not None else total), total, tokens


async def probe_latency_async(
    base_url: str,
    model: str,
    messages: Sequence[ChatMessages],
    *,
    n_requests: int = 20,
    concurrency: int = 1,
    max_tokens: int = 64,
    api_key: str | None = None,
    timeout_s: float = 300.0,
) -> LatencyReport:
    """Send ``n_requests`` streamed chats (cycling through ``messages``) and summarise latency."""
    if n_requests < 1 or concurrency < 1 or not messages:
        raise ValueError("need n_requests >= 1, concurrency >= 1 and at least one prompt")
    url = base_url.rstrip("/") + "/chat/completions"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency)

    async with httpx.AsyncClient(timeout=timeout_s, headers=headers, limits=limits) as client:

        async def one(i: int) -> tuple[float, float, int]:
            payload: dict[str, object] = {
                "model": model,
                "messages": messages[i % len(messages)],
                "max_tokens": max_tokens,
                "temperature": 0,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            async with gate:
                return await _timed_stream(client, url, payload)

        start = time.perf_counter()
        results = await asyncio.gather(*(one(i) for i in range(n_requests)))
        wall = time.perf_counter() - start
    ttft = [r[0] for r in results]
    e2e = [r[1] for r in results]
    return LatencyReport(
        n_requests=n_requests,
        concurrency=concurrency,
        ttft_p50=percentile(ttft, 50),
        ttft_p95=percentile(ttft, 95),
        e2e_p50=percentile(e2e, 50),
        e2e_p95=percentile(e2e, 95),
        completion_tokens=sum(r[2] for r in results),
        wall_s=wall,
    )


def probe_latency(base_url: str, model: str, messages: Sequence[ChatMessages], **kwargs: object) -> LatencyReport:
    """Synchronous wrapper of :func:`probe_latency_async` (same keyword arguments)."""
    return asyncio.run(probe_latency_async(base_url, model, messages, **kwargs))  # type: ignore[arg-type]


async def check_accuracy_async(
    base_url: str,
    model: str,
    items: Sequence[tuple[ChatMessages, str]],
    grade: Callable[[str, str], bool],
    *,
    max_tokens: int = 256,
    concurrency: int = 8,
    api_key: str | None = None,
    timeout_s: float = 300.0,
) -> AccuracyReport:
    """Greedy-decode every prompt and grade each output against its answer."""
    if not items:
        raise ValueError("no items to grade")
    url = base_url.rstrip("/") + "/chat/completions"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    gate = asyncio.Semaphore(concurrency)

    async with httpx.AsyncClient(timeout=timeout_s, headers=headers) as client:

        async def one(messages: ChatMessages) -> str:
            payload = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0}
            async with gate:
                response = await client.post(url, json=payload)
            response.raise_for_status()
            return str(response.json()["choices"][0]["message"]["content"] or "")

        outputs = await asyncio.gather(*(one(messages) for messages, _ in items))
    correct = sum(bool(grade(out, answer)) for out, (_, answer) in zip(outputs, items, strict=True))
    return AccuracyReport(accuracy=correct / len(items), correct=correct, total=len(items), outputs=list(outputs))


def check_accuracy(
    base_url: str,
    model: str,
    items: Sequence[tuple[ChatMessages, str]],
    grade: Callable[[str, str], bool],
    **kwargs: object,
) -> AccuracyReport:
    """Synchronous wrapper of :func:`check_accuracy_async` (same keyword arguments)."""
    return asyncio.run(check_accuracy_async(base_url, model, items, grade, **kwargs))  # type: ignore[arg-type]
