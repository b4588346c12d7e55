"""HTTP engines behind :class:`~stratos_shared.teacher.client.TeacherClient`.

The client needs one thing from HTTP: POST a JSON body, get back the status,
the body bytes and ``Retry-After``. Two engines do that:

* :class:`AiohttpEngine` (preferred, used when ``aiohttp`` is importable and no
  httpx ``transport`` was given). aiohttp's connector hands out a pooled
  connection in O(1) and parses HTTP in C: about 0.2 ms of client CPU per
  request at any concurrency.
* :class:`HttpxEngine` (fallback, and always used when the caller passes an
  ``httpx`` transport, e.g. ``httpx.MockTransport`` in tests). httpcore's pool
  rescans every connection on each request and each release, and each check
  asks anyio for the socket (a dict build plus a ``getpeername`` syscall), so
  its CPU cost per request grows with the pool: ~1.6 ms at 8 connections,
  ~9 ms at 64. To keep that bounded the engine splits ``max_concurrency`` over
  several small httpx clients (:data:`HTTPX_SHARD_SIZE` connections each).

``STRATOS_TEACHER_HTTP_ENGINE=httpx`` (or ``aiohttp``) forces a choice.

Engines raise :class:`EngineTimeout` or :class:`EngineConnectionError` for
transport problems; anything they raise carries no request headers (so no key).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import ssl
import urllib.parse
import urllib.request
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

import httpx

from stratos_shared.teacher.errors import TeacherError

_aiohttp: ModuleType | None
try:
    import aiohttp as _aiohttp_module

    _aiohttp = _aiohttp_module
except ImportError:  # optional: the httpx engine is the fallback
    _aiohttp = None

ENGINE_ENV = "STRATOS_TEACHER_HTTP_ENGINE"
HTTPX_SHARD_SIZE = 8
"""Connections per httpx client in the fallback engine (httpcore's per-request cost is linear in this)."""


@dataclass(frozen=True, slots=True)
class HttpResult:
    status: int
    content: bytes
    retry_after: str | None

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


class EngineError(TeacherError):
    """One HTTP request to the teacher did not complete; the client retries it and, out of retries, raises
    TeacherUnavailable with what happened."""


class EngineTimeout(EngineError):
    """No complete answer within the engine's timeout."""


class EngineConnectionError(EngineError):
    """Connecting, sending or reading failed; ``kind`` names the underlying error type."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class HttpEngine(Protocol):
    name: str

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> HttpResult: ...

    async def aclose(self) -> None: ...


class HttpxEngine:
    """httpx, sharded over small pools so httpcore's per-request pool scan stays short."""

    name = "httpx"

    def __init__(
        self, *, max_connections: int, timeout_s: float, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        timeout = httpx.Timeout(timeout_s)
        # A caller's transport (a mock, a proxy mount) is used as given, in one client.
        shards = 1 if transport is not None else max(1, -(-max_connections // HTTPX_SHARD_SIZE))
        per_shard = -(-max_connections // shards)
        limits = httpx.Limits(max_connections=per_shard, max_keepalive_connections=per_shard)
        self._clients = [httpx.AsyncClient(timeout=timeout, limits=limits, transport=transport) for _ in range(shards)]
        self._next = itertools.cycle(self._clients)

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> HttpResult:
        try:
            resp = await next(self._next).post(url, content=body, headers=headers)
        except httpx.TimeoutException:
            raise EngineTimeout() from None
        except httpx.TransportError as exc:
            raise EngineConnectionError(type(exc).__name__) from None
        return HttpResult(resp.status_code, resp.content, resp.headers.get("retry-after"))

    async def aclose(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self._clients))


class AiohttpEngine:
    """aiohttp with one session per client, created on first use inside the running loop."""

    name = "aiohttp"

    def __init__(self, *, max_connections: int, timeout_s: float) -> None:
        if _aiohttp is None:
            raise RuntimeError("aiohttp is not installed")
        self._limit = max_connections
        self._timeout_s = timeout_s
        self._session: Any = None  # aiohttp.ClientSession (aiohttp is optional, so not named in types)
        self._closed = False
        self._proxies: dict[tuple[str, str], str | None] = {}

    def _open(self) -> Any:
        assert _aiohttp is not None
        if self._closed:
            raise RuntimeError("engine is closed")
        # Same trust store as httpx (certifi) so switching engines changes no TLS behaviour.
        try:
            import certifi

            ctx = ssl.create_default_context(cafile=certifi.where())
        except ImportError:
            ctx = ssl.create_default_context()
        connector = _aiohttp.TCPConnector(limit=self._limit, limit_per_host=0, ssl=ctx)
        # Total deadline is enforced by the caller (asyncio.timeout); these bound the phases like httpx does.
        t = self._timeout_s
        timeout = _aiohttp.ClientTimeout(total=None, connect=t, sock_connect=t, sock_read=t)
        # trust_env=False: with it aiohttp re-reads the proxy environment and ~/.netrc in a worker thread on
        # every request (about as much CPU as the request itself); the proxy is resolved once per host instead.
        self._session = _aiohttp.ClientSession(
            connector=connector, timeout=timeout, trust_env=False, auto_decompress=True, raise_for_status=False
        )
        return self._session

    def _proxy_for(self, url: str) -> str | None:
        """HTTP(S)_PROXY / NO_PROXY for this URL's scheme and host, read once (httpx honours them by default)."""
        split = urllib.parse.urlsplit(url)
        key = (split.scheme, split.netloc)
        if key not in self._proxies:
            proxy = urllib.request.getproxies_environment().get(split.scheme)
            bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
            if proxy and bypass(split.hostname or ""):
                proxy = None
            self._proxies[key] = proxy or None
        return self._proxies[key]

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> HttpResult:
        assert _aiohttp is not None
        session = self._session or self._open()
        try:
            proxy = self._proxy_for(url)
            async with session.post(url, data=body, headers=headers, allow_redirects=False, proxy=proxy) as resp:
                content = await resp.read()
                return HttpResult(resp.status, content, resp.headers.get("Retry-After"))
        except TimeoutError:  # aiohttp's ServerTimeoutError / ConnectionTimeoutError subclass it
            raise EngineTimeout() from None
        except (_aiohttp.ClientError, OSError) as exc:
            raise EngineConnectionError(type(exc).__name__) from None

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None


def engine_name(transport: httpx.AsyncBaseTransport | None = None) -> str:
    """The engine :func:`make_engine` picks: aiohttp when installed and no httpx transport was given
    (``STRATOS_TEACHER_HTTP_ENGINE`` overrides), else httpx."""
    forced = os.environ.get(ENGINE_ENV, "").strip().lower()
    if forced not in ("", "aiohttp", "httpx"):
        raise ValueError(f"{ENGINE_ENV} must be 'aiohttp' or 'httpx', not {forced!r}")
    if transport is not None or forced == "httpx" or (forced == "" and _aiohttp is None):
        return "httpx"
    if _aiohttp is None:
        raise RuntimeError(f"{ENGINE_ENV}=aiohttp but aiohttp is not installed")
    return "aiohttp"


def make_engine(
    *, max_connections: int, timeout_s: float, transport: httpx.AsyncBaseTransport | None = None
) -> HttpEngine:
    if engine_name(transport) == "httpx":
        return HttpxEngine(max_connections=max_connections, timeout_s=timeout_s, transport=transport)
    return AiohttpEngine(max_connections=max_connections, timeout_s=timeout_s)


def _std_dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


try:
    import orjson

    def _dumps(obj: Any) -> bytes:
        try:
            return orjson.dumps(obj)
        except TypeError:  # e.g. ints beyond 64 bits or non-str keys in caller-supplied extras
            return _std_dumps(obj)

    def _loads(data: bytes) -> Any:
        return orjson.loads(data)

except ImportError:  # optional speed-up
    _dumps = _std_dumps

    def _loads(data: bytes) -> Any:
        return json.loads(data)


dumps = _dumps
"""Compact UTF-8 JSON bytes (orjson when installed)."""
loads = _loads
"""Parse JSON bytes; raises ValueError (json's or orjson's JSONDecodeError, UnicodeDecodeError) when invalid."""
