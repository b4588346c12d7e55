"""OpenAI-compatible chat server over a transformers model, for CPU hosts.

It speaks the subset of the OpenAI API that the pipeline and the ``openai``
client use (chat completions, streaming or not; models; health), so the same
probe and teacher client work against it and against vLLM. Requests go
through the ``Batcher``; the model loads in a background thread so ``/health``
can say "not ready yet" instead of the port being closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from pydantic import BaseModel, Field, SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from stratos_deployer.serving.batcher import Batcher, RequestHandle
from stratos_deployer.serving.guard import error_reply, read_body, unauthorised
from stratos_deployer.serving.requests import (
    RequestRefused,
    check_key,
    check_length,
    parse_chat_request,
)

logger = logging.getLogger(__name__)


class CpuServerConfig(BaseModel):
    """Settings of one CPU server process."""

    model_path: Path = Field(description="Directory loadable by AutoModelForCausalLM (base or merged model).")
    adapter_path: Path | None = Field(default=None, description="Optional PEFT LoRA adapter, merged at load.")
    served_name: str = Field(default="stratos-model", description="Model id reported by /v1/models and in replies.")
    host: str = Field(default="127.0.0.1", description="Interface to bind.")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port; 0 picks a free one (in-process helper).")
    max_batch_size: int = Field(default=16, ge=1, description="Most requests decoded together in one step.")
    max_wait_ms: float = Field(default=10.0, ge=0, description="How long an idle batcher waits for a batch to fill.")
    default_max_tokens: int = Field(default=256, ge=1, description="Completion length when a request gives none.")
    max_tokens_limit: int = Field(default=2048, ge=1, description="Longest completion a request may ask for.")
    max_body_bytes: int = Field(default=1 << 20, ge=1024, description="Largest request body read (413 past it).")
    api_key: SecretStr | None = Field(default=None, description="When set, /v1/* and /stats need it as a bearer.")


class _State:
    """The server: its routes and everything they share, filled in once the model has loaded."""

    def __init__(self, config: CpuServerConfig) -> None:
        self.config = config
        self.batcher: Batcher | None = None
        self.tokenizer: Any = None
        self.load_error: str | None = None
        self.created = int(time.time())

    def load(self) -> None:
        """Load the model and start batching (a background thread at start-up); a failure is kept for /health."""
        config = self.config
        try:
            model, tokenizer = load_model(config.model_path, config.adapter_path)
            batcher = Batcher(model, tokenizer, max_batch_size=config.max_batch_size, max_wait_ms=config.max_wait_ms)
            batcher.start()
            self.tokenizer, self.batcher = tokenizer, batcher
            logger.info("serving %s as %r", config.model_path, config.served_name)
        except Exception as exc:  # reported by /health so a launcher can fail fast
            logger.exception("model failed to load")
            self.load_error = f"{type(exc).__name__}: {exc}"

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        threading.Thread(target=self.load, name="stratos-model-load", daemon=True).start()
        yield
        if self.batcher is not None:
            self.batcher.stop()

    async def health(self, request: Request) -> Response:
        if self.load_error is not None:
            return JSONResponse({"status": "failed", "error": self.load_error}, status_code=500)
        if self.batcher is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ok", "model": self.config.served_name})

    async def models(self, request: Request) -> Response:
        if (refusal := _unauthorised(request, self.config)) is not None:
            return refusal
        card = {"id": self.config.served_name, "object": "model", "created": self.created, "owned_by": "stratos"}
        return JSONResponse({"object": "list", "data": [card]})

    async def stats(self, request: Request) -> Response:
        if (refusal := _unauthorised(request, self.config)) is not None:
            return refusal
        if self.batcher is None:
            return error_reply(503, "model is still loading")
        return JSONResponse(self.batcher.stats())

    async def chat_completions(self, request: Request) -> Response:
        config, batcher = self.config, self.batcher
        if batcher is None:
            return error_reply(503, self.load_error or "model is still loading")
        try:
            check_key(request.headers.get("authorization"), _key(config))
            check_length(request.headers.get("content-length"), config.max_body_bytes)
            chat = parse_chat_request(json.loads(await read_body(request, config.max_body_bytes)))
            params = chat.sampling(config.default_max_tokens, config.max_tokens_limit)
            prompt_ids = encode_chat(self.tokenizer, chat.messages)
            # n samples are n rows of the same batch: decoded together, as the batcher does for any requests
            handles = [batcher.submit(prompt_ids, params) for _ in range(chat.samples)]
        except RequestRefused as refused:
            return error_reply(refused.status, str(refused))
        except (ValueError, TypeError, KeyError) as exc:
            return error_reply(400, str(exc)[:500])
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        if chat.stream:
            include_usage = chat.stream_options is not None and chat.stream_options.include_usage
            events = _sse(handles[0], completion_id, config.served_name, include_usage)
            return StreamingResponse(events, media_type="text/event-stream")
        replies = await asyncio.gather(*(_collect(h, completion_id, config.served_name) for h in handles))
        return JSONResponse(_merge_choices(replies))


def load_model(model_path: Path, adapter_path: Path | None) -> tuple[Any, Any]:
    """Load model + tokenizer; merge the adapter so decoding runs at base-model speed."""
    from transformers import AutoModelForCausalLM

    from stratos_shared.localmodels import load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(str(model_path))
    if adapter_path is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_path)).merge_and_unload()
    tokenizer = load_tokenizer(model_path)
    return model.train(False), tokenizer


def create_app(config: CpuServerConfig) -> Starlette:
    """Build the Starlette app; the model loads in the background on start-up."""
    state = _State(config)
    routes = [
        Route("/health", state.health),
        Route("/v1/models", state.models),
        Route("/stats", state.stats),
        Route("/v1/chat/completions", state.chat_completions, methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=state.lifespan)
    app.state.stratos = state
    return app


def _unauthorised(request: Request, config: CpuServerConfig) -> Response | None:
    return unauthorised(request, _key(config))


def _key(config: CpuServerConfig) -> str | None:
    return config.api_key.get_secret_value() if config.api_key is not None else None


def _merge_choices(replies: list[dict[str, Any]]) -> dict[str, Any]:
    """One chat completion with a choice per sample (index i); usage counts the prompt once, as OpenAI does."""
    merged = dict(replies[0])
    merged["choices"] = [{**r["choices"][0], "index": i} for i, r in enumerate(replies)]
    completion = sum(r["usage"]["completion_tokens"] for r in replies)
    merged["usage"] = _usage(replies[0]["usage"]["prompt_tokens"], completion)
    return merged


def encode_chat(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """Prompt token ids from the chat template (transformers 5 may return a dict, 4 a list)."""
    encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    return [int(i) for i in (encoded["input_ids"] if hasattr(encoded, "keys") else encoded)]


async def _collect(handle: RequestHandle, completion_id: str, model: str) -> dict[str, Any]:
    parts: list[str] = []
    async for event in handle.events():
        parts.append(event.text)
    reason = "stop" if event.finish_reason == "cancelled" else event.finish_reason
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(parts)},
                "logprobs": None,
                "finish_reason": reason,
            }
        ],
        "usage": _usage(event.prompt_tokens, event.completion_tokens),
    }


async def _sse(handle: RequestHandle, completion_id: str, model: str, include_usage: bool) -> AsyncIterator[str]:
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        payload = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [choice],
        }
        return f"data: {json.dumps(payload)}\n\n"

    try:
        yield chunk({"role": "assistant", "content": ""}, None)
        async for event in handle.events():
            if event.text:
                yield chunk({"content": event.text}, None)
            if event.finish_reason is not None:
                reason = "stop" if event.finish_reason == "cancelled" else event.finish_reason
                yield chunk({}, reason)
                if include_usage:
                    usage = {
                        "id": completion_id,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [],
                        "usage": _usage(event.prompt_tokens, event.completion_tokens),
                    }
                    yield f"data: {json.dumps(usage)}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        handle.cancel()  # no-op when finished; frees the batch row if the client went away


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


@dataclass
class RunningServer:
    """A CPU server running in this process on a background thread (tests, bench)."""

    url: str
    served_name: str
    app: Starlette
    _server: uvicorn.Server
    _thread: threading.Thread

    @property
    def batcher(self) -> Batcher | None:
        """The live batcher, once the model has loaded."""
        state: _State = self.app.state.stratos
        return state.batcher

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Block until the model has loaded; raise if loading failed or took too long."""
        state: _State = self.app.state.stratos
        deadline = time.monotonic() + timeout_s
        while state.batcher is None:
            if state.load_error is not None:
                raise RuntimeError(f"CPU server failed to load the model: {state.load_error}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"CPU server did not load the model within {timeout_s:.0f} s")
            time.sleep(0.05)

    def stop(self) -> None:
        """Ask uvicorn to shut down (runs lifespan shutdown, stopping the batcher)."""
        self._server.should_exit = True
        self._thread.join(timeout=30)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (good enough for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def start_in_thread(config: CpuServerConfig, ready_timeout_s: float = 120.0) -> RunningServer:
    """Run the server on a background thread and return once the model is loaded."""
    port = config.port or free_port(config.host)
    config = config.model_copy(update={"port": port})
    app = create_app(config)
    server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="stratos-cpu-server", daemon=True)
    thread.start()
    running = RunningServer(f"http://{config.host}:{port}", config.served_name, app, server, thread)
    deadline = time.monotonic() + ready_timeout_s
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"CPU server thread exited before listening on port {port}")
        if time.monotonic() > deadline:
            running.stop()
            raise TimeoutError(f"CPU server did not start listening within {ready_timeout_s:.0f} s")
        time.sleep(0.02)
    try:
        running.wait_ready(max(1.0, deadline - time.monotonic()))
    except Exception:
        running.stop()
        raise
    return running


def serve(config: CpuServerConfig) -> None:
    """Run the server in the foreground until SIGINT/SIGTERM (the CLI entry point)."""
    uvicorn.run(create_app(config), host=config.host, port=config.port, log_level="info")
