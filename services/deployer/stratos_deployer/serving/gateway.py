"""The endpoint in front of ``llama-server``: Stratos' request rules for an engine that takes what it is sent.

llama-server reads fields the OpenAI API does not have (``n_predict`` overrides ``max_tokens``; grammars,
samplers, ...), accepts bodies up to 100 MB and any non-negative temperature. A client of a distilled model must
not ask for more than the operator allows nor fill the host's memory, so the gateway checks every request with the
CPU server's rules (`requests.py`: the key, the body size, each field finite and in range, ``max_tokens`` and ``n``
capped), forwards only the fields it validated to llama-server on a loopback port under a key of its own, and
streams the answer back unchanged. Sampling is per slot in llama-server, so a request never changes another's.

The gateway starts llama-server as its child (which dies with it), so the deployer still manages one process per
deployment: one health URL, one log, one process group to stop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import logging
import os
import secrets
import signal
import subprocess
from collections.abc import Sequence
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import BaseModel, Field, SecretStr

from stratos_deployer.serving.llamacpp import LLAMA_KEY_ENV
from stratos_deployer.serving.requests import (
    ENDPOINT_KEY_ENV,
    ChatRequest,
    RequestRefused,
    check_key,
    check_length,
    error_body,
    parse_chat_request,
)

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
COMPLETIONS = "/v1/chat/completions"
GATEWAY_NICENESS = 10


class GatewayConfig(BaseModel):
    """What the public endpoint accepts and where the engine behind it listens."""

    host: str = Field(default="127.0.0.1", description="Interface the endpoint binds.")
    port: int = Field(ge=1, le=65535, description="The endpoint's port.")
    upstream_port: int = Field(ge=1, le=65535, description="The engine's port on 127.0.0.1.")
    served_name: str = Field(description="The model id the engine serves.")
    default_max_tokens: int = Field(default=256, ge=1, description="Completion length when a request gives none.")
    max_tokens_limit: int = Field(default=2048, ge=1, description="Longest completion a request may ask for.")
    max_body_bytes: int = Field(default=1 << 20, ge=1024, description="Largest request body read (413 past it).")
    api_key: SecretStr | None = Field(default=None, description="When set, /v1/* needs it as a bearer token.")


def upstream_body(chat: ChatRequest, config: GatewayConfig) -> dict[str, Any]:
    """The request llama-server gets: only validated fields, the token budget resolved and capped."""
    sampling = chat.sampling(config.default_max_tokens, config.max_tokens_limit)
    body: dict[str, Any] = {
        "model": config.served_name,
        "messages": chat.messages,
        "max_tokens": sampling.max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "stream": chat.stream,
    }
    if sampling.stop:
        body["stop"] = list(sampling.stop)
    if chat.samples > 1:
        body["n"] = chat.samples
    if chat.stream and chat.stream_options is not None:
        body["stream_options"] = {"include_usage": chat.stream_options.include_usage}
    return body


class Gateway:
    """The routes, the engine process and the client that talks to it (aiohttp on both sides: its C parsers keep
    the per-chunk cost of relaying 32 streams small beside llama.cpp's threads on a two-core host)."""

    def __init__(self, config: GatewayConfig, engine_argv: Sequence[str]) -> None:
        self.config = config
        self.engine_argv = list(engine_argv)
        self.engine_key = secrets.token_urlsafe(32)
        self.engine: subprocess.Popen[bytes] | None = None
        self.session: aiohttp.ClientSession | None = None
        self.watcher: asyncio.Task[None] | None = None

    def key(self) -> str | None:
        return self.config.api_key.get_secret_value() if self.config.api_key is not None else None

    async def start(self, app: web.Application) -> None:
        self.engine = start_engine(self.engine_argv, self.engine_key)
        # Below the engine's priority: on a host with as many busy cores as llama.cpp has threads, relaying a
        # chunk must not preempt a decoding thread (its peers would wait for it at the next barrier).
        os.nice(GATEWAY_NICENESS)
        self.session = aiohttp.ClientSession(
            base_url=f"http://127.0.0.1:{self.config.upstream_port}",
            headers={"authorization": f"Bearer {self.engine_key}"},
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            connector=aiohttp.TCPConnector(limit=0),
        )
        self.watcher = asyncio.create_task(self.watch_engine())

    async def stop(self, app: web.Application) -> None:
        if self.watcher is not None:
            self.watcher.cancel()
        if self.session is not None:
            await self.session.close()
        stop_engine(self.engine)

    async def watch_engine(self) -> None:
        """An endpoint without its engine must not look alive: when the engine exits, the gateway exits too."""
        if self.engine is None:
            return
        code = await asyncio.to_thread(self.engine.wait)
        logger.error("llama-server exited with code %s; stopping the endpoint", code)
        os.kill(os.getpid(), signal.SIGTERM)

    def upstream(self) -> aiohttp.ClientSession:
        assert self.session is not None, "the gateway has not started"
        return self.session

    async def health(self, request: web.Request) -> web.StreamResponse:
        try:
            async with self.upstream().get("/health", timeout=aiohttp.ClientTimeout(total=5)) as reply:
                return web.Response(body=await reply.read(), status=reply.status, content_type="application/json")
        except (aiohttp.ClientError, TimeoutError):
            return web.json_response({"status": "loading"}, status=503)

    async def models(self, request: web.Request) -> web.StreamResponse:
        try:
            check_key(request.headers.get("authorization"), self.key())
        except RequestRefused as refused:
            return refusal(refused)
        try:
            async with self.upstream().get("/v1/models") as reply:
                return web.Response(body=await reply.read(), status=reply.status, content_type="application/json")
        except aiohttp.ClientError as exc:
            return refusal(RequestRefused(502, f"the model server did not answer: {type(exc).__name__}"))

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        try:
            check_key(request.headers.get("authorization"), self.key())
            check_length(request.headers.get("content-length"), self.config.max_body_bytes)
            chat = parse_chat_request(json.loads(await bounded_body(request, self.config.max_body_bytes)))
            body = upstream_body(chat, self.config)
        except RequestRefused as refused:
            return refusal(refused)
        except (ValueError, RecursionError) as exc:
            return refusal(RequestRefused(400, f"request body is not valid JSON: {str(exc)[:200]}"))
        try:
            async with self.upstream().post(COMPLETIONS, json=body) as upstream:
                return await relay(request, upstream, streamed=chat.stream)
        except aiohttp.ClientError as exc:
            return refusal(RequestRefused(502, f"the model server did not answer: {type(exc).__name__}"))


async def relay(request: web.Request, upstream: aiohttp.ClientResponse, *, streamed: bool) -> web.StreamResponse:
    """The engine's answer, passed on as it arrives (a stream chunk by chunk)."""
    media_type = upstream.headers.get("content-type", "application/json")
    if not streamed:
        return web.Response(body=await upstream.read(), status=upstream.status, headers={"content-type": media_type})
    response = web.StreamResponse(status=upstream.status, headers={"content-type": media_type})
    await response.prepare(request)
    async for chunk in upstream.content.iter_any():
        await response.write(chunk)
    await response.write_eof()
    return response


async def bounded_body(request: web.Request, limit: int) -> bytes:
    """The body, read no further than `limit` bytes (a chunked upload says no length up front)."""
    body = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        body += chunk
        if len(body) > limit:
            raise RequestRefused(413, f"request body larger than {limit} bytes")
    return bytes(body)


def refusal(refused: RequestRefused) -> web.Response:
    return web.json_response(error_body(refused.status, str(refused)), status=refused.status)


def start_engine(argv: Sequence[str], key: str) -> subprocess.Popen[bytes]:
    """llama-server under the gateway's own key; it receives SIGTERM if the gateway dies, even by SIGKILL."""
    env = {**os.environ, LLAMA_KEY_ENV: key}
    return subprocess.Popen(list(argv), env=env, preexec_fn=_die_with_parent)  # before any thread starts


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_engine(engine: subprocess.Popen[bytes] | None, grace_s: float = 10.0) -> None:
    if engine is None or engine.poll() is not None:
        return
    engine.terminate()
    try:
        engine.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            engine.kill()
        engine.wait()


def create_app(config: GatewayConfig, engine_argv: Sequence[str]) -> web.Application:
    gateway = Gateway(config, engine_argv)
    # the body is read by `bounded_body` within the gateway's own limit, never aiohttp's
    app = web.Application(client_max_size=config.max_body_bytes)
    app.router.add_get("/health", gateway.health)
    app.router.add_get("/v1/models", gateway.models)
    app.router.add_post(COMPLETIONS, gateway.chat_completions)
    app.on_startup.append(gateway.start)
    app.on_cleanup.append(gateway.stop)
    return app


def serve(config: GatewayConfig, engine_argv: Sequence[str]) -> None:
    """Run the endpoint and its engine until SIGTERM (the process the deployer manages)."""
    web.run_app(create_app(config, engine_argv), host=config.host, port=config.port, print=None, access_log=None)


def gateway_command(config: GatewayConfig, engine_argv: Sequence[str], python: str) -> list[str]:
    """The gateway's argv (the key is not in it: the deployer sets ``ENDPOINT_KEY_ENV``)."""
    return [
        python, "-m", "stratos_deployer.serving.gateway",
        "--host", config.host, "--port", str(config.port), "--upstream-port", str(config.upstream_port),
        "--served-name", config.served_name, "--default-max-tokens", str(config.default_max_tokens),
        "--max-tokens-limit", str(config.max_tokens_limit), "--max-body-bytes", str(config.max_body_bytes),
        *(["--api-key-env", ENDPOINT_KEY_ENV] if config.api_key is not None else []),
        "--", *engine_argv,
    ]  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> tuple[GatewayConfig, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m stratos_deployer.serving.gateway",
        description="Serve an OpenAI-compatible endpoint in front of llama-server (started as a child from the "
        "command after --), refusing what Stratos' request rules refuse.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, required=True, help="the endpoint's port")
    parser.add_argument("--upstream-port", type=int, required=True, help="llama-server's port on 127.0.0.1")
    parser.add_argument("--served-name", required=True, help="the model id llama-server serves (--alias)")
    parser.add_argument("--default-max-tokens", type=int, default=256)
    parser.add_argument("--max-tokens-limit", type=int, default=2048)
    parser.add_argument("--max-body-bytes", type=int, default=1 << 20)
    parser.add_argument("--api-key-env", metavar="NAME", default=None, help="environment variable holding the key")
    parser.add_argument("engine", nargs=argparse.REMAINDER, help="-- then llama-server's command line")
    args = parser.parse_args(argv)
    engine = args.engine[1:] if args.engine[:1] == ["--"] else args.engine
    if not engine:
        parser.error("give llama-server's command line after --")
    api_key = None
    if args.api_key_env is not None:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            parser.error(f"--api-key-env {args.api_key_env}: that environment variable is not set")
    settings = {name: getattr(args, name) for name in GatewayConfig.model_fields if name != "api_key"}
    return GatewayConfig(**settings, api_key=api_key), engine


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(*parse_args())
