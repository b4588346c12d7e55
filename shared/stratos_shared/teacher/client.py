"""Async client for OpenAI-compatible chat completions, built for bulk distillation.

Distillation sends thousands of prompts to a rate-limited, sometimes flaky
API, so the client bounds concurrency, retries what is transient (429, 5xx,
timeouts, dropped connections) with exponential backoff, full jitter and the
server's ``Retry-After``, counts tokens and dollars, and consults a response
cache first so repeated work is free. The API key is sent as a Bearer token
and appears in no log line, repr or exception.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, SecretStr

from stratos_shared.metrics import teacher_requests, teacher_seconds
from stratos_shared.teacher.cache import MemoryCache, ResponseCache, cache_key
from stratos_shared.teacher.engines import EngineConnectionError, EngineTimeout, HttpEngine, dumps, loads, make_engine
from stratos_shared.teacher.errors import (
    TeacherAddressRefused,
    TeacherBadResponse,
    TeacherError,
    TeacherRequestRejected,
    TeacherUnavailable,
)

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
ADDRESS_CHECK_TTL_S = 10.0
"""How long a checked resolution of the teacher's host is trusted before it is resolved and checked again."""
_REFUSES_N: set[str] = set()
"""Endpoints (chat-completions URLs) that answered a request with n > 1 by refusing it; every client of this
process asks them once per sample from then on."""


class Pricing(BaseModel):
    """USD per one million tokens; zero by default (local or simulated teachers)."""

    input_usd_per_1m: float = 0.0
    output_usd_per_1m: float = 0.0

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_usd_per_1m + output_tokens * self.output_usd_per_1m) / 1_000_000


@dataclass(frozen=True)
class Completion:
    """The outcome of one :meth:`TeacherClient.complete` call (``n`` samples)."""

    model: str
    texts: tuple[str, ...]
    latency_s: float
    input_tokens: int
    output_tokens: int
    cost_usd: float
    cached: bool
    """True when every sample came from the cache (no HTTP call, no cost)."""
    http_calls: int = 0

    @property
    def text(self) -> str:
        return self.texts[0]


@dataclass
class UsageTotals:
    """Running totals for one client, for progress reports and budgets."""

    completions: int = 0
    http_calls: int = 0
    retries: int = 0
    cache_hits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


@dataclass
class _Reply:
    texts: list[str]
    input_tokens: int
    output_tokens: int
    calls: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


class TeacherClient:
    """One teacher endpoint and model. Use as ``async with TeacherClient(...) as client``."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: SecretStr | str | None = None,
        max_concurrency: int = 16,
        timeout_s: float = 60.0,
        max_retries: int = 4,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 20.0,
        max_retry_after_s: float = 60.0,
        pricing: Pricing | None = None,
        cache: ResponseCache | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        address_guard: Callable[[str], str | None] | None = None,
    ) -> None:
        if max_concurrency < 1 or max_retries < 0 or timeout_s <= 0:
            raise ValueError("max_concurrency >= 1, max_retries >= 0 and timeout_s > 0 are required")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._key = api_key if isinstance(api_key, SecretStr) or api_key is None else SecretStr(api_key)
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.max_retry_after_s = max_retry_after_s
        self.pricing = pricing or Pricing()
        self.cache = cache
        # Says why an IP address may not be reached (the operator's policy); the host is resolved and checked
        # when the client first connects and again every ADDRESS_CHECK_TTL_S, since a name can change address.
        self._address_guard = address_guard
        self._address_checked_until = 0.0
        self.usage = UsageTotals()
        self._n_supported: bool | None = None
        self._sem = asyncio.Semaphore(max_concurrency)
        # aiohttp when installed, else httpx; a given httpx transport always goes through httpx.
        self._http: HttpEngine = make_engine(max_connections=max_concurrency, timeout_s=timeout_s, transport=transport)
        self._url = f"{self.base_url}/chat/completions"
        # Cache backends are synchronous; anything but the in-memory one may touch disk or network, so its
        # calls run in a worker thread instead of stalling every in-flight request on the event loop.
        self._cache_in_thread = cache is not None and not isinstance(cache, MemoryCache)

    @property
    def engine(self) -> str:
        """Which HTTP engine this client uses: ``"aiohttp"`` or ``"httpx"``."""
        return self._http.name

    def __repr__(self) -> str:
        return (
            f"TeacherClient(base_url={self.base_url!r}, model={self.model!r}, api_key={'set' if self._key else 'none'})"
        )

    async def __aenter__(self) -> TeacherClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------------ public

    async def complete(
        self,
        messages: list[dict[str, str]],
        *,
        n: int = 1,
        temperature: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Completion:
        """``n`` sampled completions of ``messages``; cached samples are reused, the rest fetched."""
        if n < 1:
            raise ValueError("n must be at least 1")
        params: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens, "seed": seed, **(extra or {})}
        params = {k: v for k, v in params.items() if v is not None}
        keys = [cache_key(self.model, messages, params, i) for i in range(n)] if self.cache is not None else []
        texts: list[str | None] = [None] * n
        if self.cache is not None:
            hits = await self._cache_call(_cache_get_many, self.cache, keys)
            for i, hit in enumerate(hits):
                if hit is not None and isinstance(hit.get("text"), str):
                    texts[i] = hit["text"]
        missing = [i for i, t in enumerate(texts) if t is None]
        self.usage.completions += 1
        self.usage.cache_hits += n - len(missing)
        start = time.perf_counter()
        reply = _Reply([], 0, 0, calls=0)
        if missing:
            try:
                reply = await self._fetch(messages, params, missing, whole=len(missing) == n)
            except TeacherError as exc:
                teacher_requests.add(1, {"model": self.model, "outcome": type(exc).__name__})
                raise
            teacher_requests.add(1, {"model": self.model, "outcome": "ok"})
            teacher_seconds.record(time.perf_counter() - start, {"model": self.model})
            for i, text in zip(missing, reply.texts, strict=True):
                texts[i] = text
            if self.cache is not None:
                entries = [(keys[i], {"model": self.model, "text": texts[i]}) for i in missing]
                await self._cache_call(_cache_put_many, self.cache, entries)
        cost = self.pricing.cost(reply.input_tokens, reply.output_tokens)
        self.usage.input_tokens += reply.input_tokens
        self.usage.output_tokens += reply.output_tokens
        self.usage.cost_usd += cost
        return Completion(
            model=self.model,
            texts=tuple(t for t in texts if t is not None),
            latency_s=time.perf_counter() - start,
            input_tokens=reply.input_tokens,
            output_tokens=reply.output_tokens,
            cost_usd=cost,
            cached=not missing,
            http_calls=reply.calls,
        )

    async def _cache_call(self, fn: Any, *args: Any) -> Any:
        if self._cache_in_thread:
            return await asyncio.to_thread(fn, *args)
        return fn(*args)

    # ------------------------------------------------------------------ sampling

    async def _fetch(
        self, messages: list[dict[str, str]], params: dict[str, Any], indices: list[int], *, whole: bool
    ) -> _Reply:
        """Texts for the sample ``indices``: one request with ``n`` when possible, else one per sample."""
        body = {"model": self.model, "messages": messages, **params}
        if len(indices) == 1 and indices[0] == 0:
            return await self._request({**body, "n": 1}, want=1)
        if whole and self._n_supported is not False and self._url not in _REFUSES_N:
            try:
                first = await self._request({**body, "n": len(indices)}, want=len(indices))
            except TeacherRequestRejected as exc:
                if exc.status not in (400, 422):
                    raise
                # Servers that do not sample n (llama.cpp, Stratos' CPU server before it batched n, ...) answer
                # 400 "only n=1 is supported": ask once per sample. Should those fail too, their error is raised.
                rest = await self._separate(body, params, indices)
                self._n_supported = False
                _REFUSES_N.add(self._url)
                log.info("teacher %s refused n=%d (%s); using separate requests", self.model, len(indices), exc)
                rest.calls += 1
                return rest
            if len(first.texts) >= len(indices):
                self._n_supported = True
                first.texts = first.texts[: len(indices)]
                return first
            # The server ignored n: keep what came back, fetch the rest one by one.
            self._n_supported = False
            log.info("teacher %s ignored n=%d; falling back to separate requests", self.model, len(indices))
            rest = await self._separate(body, params, indices[len(first.texts) :])
            return _Reply(
                first.texts + rest.texts,
                first.input_tokens + rest.input_tokens,
                first.output_tokens + rest.output_tokens,
                calls=first.calls + rest.calls,
            )
        return await self._separate(body, params, indices)

    async def _separate(self, body: dict[str, Any], params: dict[str, Any], indices: list[int]) -> _Reply:
        """One request per sample; sample ``i`` gets seed ``base + i`` so samples differ yet stay reproducible."""
        base = int(params.get("seed", 0))
        replies = await asyncio.gather(*(self._request({**body, "n": 1, "seed": base + i}, want=1) for i in indices))
        return _Reply(
            [r.texts[0] for r in replies],
            sum(r.input_tokens for r in replies),
            sum(r.output_tokens for r in replies),
            calls=sum(r.calls for r in replies),
        )

    # ------------------------------------------------------------------ HTTP

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._key is not None:
            headers["Authorization"] = f"Bearer {self._key.get_secret_value()}"
        return headers

    def _redact(self, text: str) -> str:
        if self._key is not None and self._key.get_secret_value():
            text = text.replace(self._key.get_secret_value(), "**********")
        return text

    async def _check_address(self) -> None:
        """Refuse to send anything (the key included) to a host that resolves to a refused address."""
        if self._address_guard is None or time.monotonic() < self._address_checked_until:
            return
        split = urlsplit(self.base_url)
        host = split.hostname or ""
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, split.port or 443)
        except (OSError, UnicodeError):
            return  # unresolvable: the request fails as a connection error and is retried like one
        for address in sorted({str(info[4][0]) for info in infos}):
            problem = self._address_guard(address)
            if problem:
                raise TeacherAddressRefused(f"teacher '{self.model}' at {self.base_url} is refused: {host}: {problem}")
        self._address_checked_until = time.monotonic() + ADDRESS_CHECK_TTL_S

    async def _request(self, body: dict[str, Any], *, want: int) -> _Reply:
        """POST once per attempt until success or the retry budget is spent."""
        await self._check_address()
        url = self._url
        payload = dumps(body)
        headers = self._headers()
        last_problem = "no attempt made"
        bad_body = False
        calls = 0
        for attempt in range(self.max_retries + 1):
            retry_after: float | None = None
            async with self._sem:
                calls += 1
                self.usage.http_calls += 1
                try:
                    async with asyncio.timeout(self.timeout_s):
                        resp = await self._http.post(url, payload, headers)
                except (TimeoutError, EngineTimeout):
                    last_problem, bad_body = f"no answer within {self.timeout_s:g} s", False
                except EngineConnectionError as exc:
                    last_problem, bad_body = f"connection failed ({exc.kind})", False
                else:
                    if resp.status == 200:
                        try:
                            reply = _parse_reply(resp.content)
                        except TeacherBadResponse as exc:
                            last_problem, bad_body = str(exc), True
                        else:
                            reply.calls = calls
                            return reply
                    elif resp.status in RETRY_STATUSES:
                        last_problem, bad_body = f"HTTP {resp.status}", False
                        retry_after = _retry_after(resp.retry_after)
                    else:
                        snippet = self._redact(resp.text[:300])
                        raise TeacherRequestRejected(
                            resp.status,
                            f"teacher '{self.model}' rejected the request: HTTP {resp.status}: {snippet}",
                        )
            if attempt == self.max_retries:
                break
            self.usage.retries += 1
            delay = self._backoff(attempt, retry_after)
            log.debug("teacher %s: %s; retry %d in %.2f s", self.model, last_problem, attempt + 1, delay)
            await asyncio.sleep(delay)
        tries = self.max_retries + 1
        message = (
            f"teacher '{self.model}' at {self.base_url} failed after {tries} attempts; last problem: {last_problem}"
        )
        if bad_body:
            raise TeacherBadResponse(message)
        raise TeacherUnavailable(message)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Server's Retry-After when given (capped), else capped exponential backoff with full jitter."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after_s)
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2**attempt)
        return random.uniform(ceiling / 2, ceiling)


def _cache_get_many(cache: ResponseCache, keys: list[str]) -> list[dict[str, Any] | None]:
    return [cache.get(key) for key in keys]


def _cache_put_many(cache: ResponseCache, entries: list[tuple[str, dict[str, Any]]]) -> None:
    for key, value in entries:
        cache.put(key, value)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _parse_reply(content: bytes) -> _Reply:
    """Texts and usage from a chat-completions body; TeacherBadResponse when it is not one."""
    try:
        data = loads(content)
    except ValueError:  # json.JSONDecodeError, orjson.JSONDecodeError and UnicodeDecodeError all are
        raise TeacherBadResponse(f"teacher answered with invalid JSON ({len(content)} bytes)") from None
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices:
        raise TeacherBadResponse("teacher response has no 'choices'")
    texts: list[tuple[int, str]] = []
    for pos, choice in enumerate(choices):
        message = choice.get("message") if isinstance(choice, dict) else None
        text = message.get("content") if isinstance(message, dict) else None
        if not isinstance(text, str):
            raise TeacherBadResponse(f"teacher choice {pos} has no message content")
        index = choice.get("index", pos)
        texts.append((index if isinstance(index, int) else pos, text))
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    prompt_tokens = usage.get("prompt_tokens", 0)
    completion_tokens = usage.get("completion_tokens", 0)
    return _Reply(
        [t for _, t in sorted(texts, key=lambda x: x[0])],
        prompt_tokens if isinstance(prompt_tokens, int) else 0,
        completion_tokens if isinstance(completion_tokens, int) else 0,
    )
