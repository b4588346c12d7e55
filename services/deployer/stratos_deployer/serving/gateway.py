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
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn
from pydantic import BaseModel, Field, SecretStr
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from stratos_deployer.serving.guard import error_reply, read_body, unauthorised
from stratos_deployer.serving.llamacpp import LLAMA_KEY_ENV
from stratos_deployer.serving.requests import (
    ENDPOINT_KEY_ENV,
    ChatRequest,
    RequestRefused,
    check_length,
    parse_chat_request,
)

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
COMPLETIONS = "/v1/chat/completions"


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
    """The routes, the engine process and the client that talks to it."""

    def __init__(self, config: GatewayConfig, engine_argv: Sequence[str]) -> None:
        self.config = config
        self.engine_argv = list(engine_argv)
        self.engine_key = secrets.token_urlsafe(32)
        self.engine: subprocess.Popen[bytes] | None = None
        self.client = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{config.upstream_port}",
            headers={"authorization": f"Bearer {self.engine_key}"},
            timeout=httpx.Timeout(None, connect=10.0),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        )

    def key(self) -> str | None:
        return self.config.api_key.get_secret_value() if self.config.api_key is not None else None

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.engine = start_engine(self.engine_argv, self.engine_key)
        watcher = asyncio.create_task(self.watch_engine())
        try:
            yield
        finally:
            watcher.cancel()
            await self.client.aclose()
            stop_engine(self.engine)

    async def watch_engine(self) -> None:
        """An endpoint without its engine must not look alive: when the engine exits, the gateway exits too."""
        if self.engine is None:
            return
        code = await asyncio.to_thread(self.engine.wait)
        logger.error("llama-server exited with code %s; stopping the endpoint", code)
        os.kill(os.getpid(), signal.SIGTERM)

    async def health(self, request: Request) -> Response:
        try:
            reply = await self.client.get("/health", timeout=5.0)
        except httpx.HTTPError:
            return JSONResponse({"status": "loading"}, status_code=503)
        return Response(reply.content, status_code=reply.status_code, media_type="application/json")

    async def models(self, request: Request) -> Response:
        if (refusal := unauthorised(request, self.key())) is not None:
            return refusal
        reply = await self.client.get("/v1/models")
        return Response(reply.content, status_code=reply.status_code, media_type="application/json")

    async def chat_completions(self, request: Request) -> Response:
        if (refusal := unauthorised(request, self.key())) is not None:
            return refusal
        limit = self.config.max_body_bytes
        try:
            check_length(request.headers.get("content-length"), limit)
            chat = parse_chat_request(json.loads(await read_body(request, limit)))
            body = upstream_body(chat, self.config)
        except RequestRefused as refused:
            return error_reply(refused.status, str(refused))
        except (ValueError, RecursionError) as exc:
            return error_reply(400, f"request body is not valid JSON: {str(exc)[:200]}")
        try:
            upstream = await self.client.send(self.client.build_request("POST", COMPLETIONS, json=body), stream=True)
        except httpx.HTTPError as exc:
            return error_reply(502, f"the model server did not answer: {type(exc).__name__}")
        media_type = upstream.headers.get("content-type", "application/json")
        if not chat.stream:
            content = await upstream.aread()
            await upstream.aclose()
            return Response(content, status_code=upstream.status_code, media_type=media_type)
        return StreamingResponse(
            upstream.aiter_raw(),
            status_code=upstream.status_code,
            media_type=media_type,
            background=BackgroundTask(upstream.aclose),
        )


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


def create_app(config: GatewayConfig, engine_argv: Sequence[str]) -> Starlette:
    gateway = Gateway(config, engine_argv)
    routes = [
        Route("/health", gateway.health),
        Route("/v1/models", gateway.models),
        Route(COMPLETIONS, gateway.chat_completions, methods=["POST"]),
    ]
    return Starlette(routes=routes, lifespan=gateway.lifespan)


def serve(config: GatewayConfig, engine_argv: Sequence[str]) -> None:
    """Run the endpoint and its engine until SIGTERM (the process the deployer manages)."""
    uvicorn.run(create_app(config, engine_argv), host=config.host, port=config.port, log_level="warning")


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
