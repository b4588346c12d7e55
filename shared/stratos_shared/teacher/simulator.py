"""TEACHER SIMULATOR: a fake OpenAI-compatible teacher for demos and tests.

This is not a model. It recognises which shipped task a prompt belongs to
(from the system prompt), solves the question with the task's own solver and
answers with the task's reference trace, correct with a configured
probability per model and task and otherwise with a plausible wrong trace.
Everything is deterministic given (seed, model, question, sample index), so
a demo pipeline can be run end to end, offline, with reproducible numbers.

It also answers reverse prompts (question plus given answer) with a trace
reaching the given answer, sloppy (answer only) with a configured
probability so that step verification has something to reject; and it can
inject faults (429 with Retry-After, 500, answers slower than any timeout,
malformed bodies of several kinds), for every model or per model, to exercise
client retries and how the stages degrade. ``GET /stats`` counts requests per
model so tests can prove the cache saved calls.

Run: ``python -m stratos_shared.teacher.simulator --port 8100 --config sim.yaml``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import uvicorn
import yaml
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stratos_shared.tasks import custom_rules, mahjong
from stratos_shared.tasks import math as math_task
from stratos_shared.tasks.base import ANSWER_MARKER, Example, Task
from stratos_shared.tasks.errors import TaskError
from stratos_shared.tasks.registry import build_task

try:  # optional: about 3x cheaper than json on the completions hot path
    import orjson

    def _json_loads(data: bytes) -> Any:
        return orjson.loads(data)

    def _json_dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

except ImportError:

    def _json_loads(data: bytes) -> Any:
        return json.loads(data)

    def _json_dumps(obj: Any) -> bytes:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class _FastJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return _json_dumps(content)


REVERSE_MARKER = "\n\nThe correct final answer is: "
"""How ``Task.reverse_prompt`` joins question and answer; the simulator splits on it."""

DEFAULT_MODEL = "teacher-sim"


MalformedKind = Literal["truncated", "not-json", "no-choices", "wrong-types"]
"""How a malformed answer is broken: cut mid-JSON, not JSON at all, no ``choices``, or a non-string content."""

_MALFORMED_BODIES: dict[str, bytes] = {
    "truncated": b'{"choices": [ {"message": ',
    "not-json": b"<html><body>502 Bad Gateway</body></html>",
    "no-choices": b'{"id": "simcmpl-x", "object": "chat.completion", "usage": {"prompt_tokens": 1}}',
    "wrong-types": b'{"choices": [{"index": 0, "message": {"role": "assistant", "content": 42}}], "usage": "many"}',
}


class Faults(BaseModel):
    """Share of requests that fail in each way (drawn independently per request, in this order)."""

    rate_429: float = 0.0
    retry_after_s: float = 0.05
    rate_500: float = 0.0
    rate_timeout: float = 0.0
    timeout_delay_s: float = 30.0
    rate_malformed: float = 0.0
    malformed_kinds: list[MalformedKind] = Field(
        default_factory=lambda: list[MalformedKind](["truncated"]),
        min_length=1,
        description="Drawn uniformly for each malformed answer.",
    )


class ModelSpec(BaseModel):
    """One simulated model: accuracy per task kind, how often reverse traces are sloppy, its own faults."""

    accuracy: dict[str, float] = Field(default_factory=dict)
    default_accuracy: float = 1.0
    sloppy_rate: float = 0.0
    faults: Faults | None = Field(default=None, description="Faults of this model only; the global ones otherwise.")

    def accuracy_for(self, kind: str) -> float:
        return self.accuracy.get(kind, self.default_accuracy)


class DatasetSpec(BaseModel):
    """Extra data the simulator can look answers up in (e.g. GSM8K files it cannot solve itself)."""

    kind: str
    path: str | None = None
    generator: dict[str, Any] | None = None
    grader: str | None = None
    seed: int = 0
    size: int | None = None


class SimulatorConfig(BaseModel):
    seed: int = 0
    latency_ms: float = 0.0
    models: dict[str, ModelSpec] = Field(default_factory=lambda: {DEFAULT_MODEL: ModelSpec()})
    faults: Faults = Field(default_factory=Faults)
    ignore_n: bool = False
    """Behave like servers that ignore ``n`` and always return one choice."""
    refuse_n: bool = False
    """Behave like servers that answer ``n > 1`` with HTTP 400 "only n=1 is supported" (llama.cpp, many others)."""
    datasets: list[DatasetSpec] = Field(default_factory=list)


Recogniser = Callable[[str, str], "tuple[Task, Example] | None"]
_RECOGNISERS: tuple[Recogniser, ...] = (
    math_task.task_for_prompt,
    mahjong.task_for_prompt,
    custom_rules.task_for_prompt,
)


def _tokens(text: str) -> int:
    return len(text.split())


class Simulator:
    """The simulator's state and logic, independent of HTTP (so tests can drive it directly)."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.requests: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self._fault_rng = random.Random(f"faults:{config.seed}")
        self._lookup: dict[tuple[str, str], tuple[Task, Example]] = {}
        for spec in config.datasets:
            task = build_task(
                spec.kind, path=spec.path, generator=spec.generator, grader=spec.grader, seed=spec.seed, size=spec.size
            )
            for ex in task.examples():
                self._lookup[(task.system_prompt().strip(), ex.question.strip())] = (task, ex)

    def stats(self) -> dict[str, Any]:
        return {"requests": dict(self.requests), "faults": dict(self.faults), "total": sum(self.requests.values())}

    def reset_stats(self) -> None:
        self.requests.clear()
        self.faults.clear()

    def find(self, system: str, question: str) -> tuple[Task, Example] | None:
        """The task and ground truth for a prompt: configured data first, then the task solvers."""
        found = self._lookup.get((system.strip(), question.strip()))
        if found is not None:
            return found
        for recognise in _RECOGNISERS:
            found = recognise(system, question)
            if found is not None:
                return found
        return None

    def answer(self, model: str, messages: list[dict[str, str]], sample: int) -> str:
        """The text of one completion (deterministic in seed, model, prompt and sample index)."""
        spec = self.config.models[model]
        system = next((m["content"] for m in messages if m.get("role") == "system"), "")
        user = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        question, given = user, None
        if REVERSE_MARKER in user:
            question, rest = user.split(REVERSE_MARKER, 1)
            given = rest.split("\n", 1)[0].strip()
        digest = hashlib.sha256(f"{self.config.seed}|{model}|{question}|{given}|{sample}".encode()).hexdigest()
        rng = random.Random(digest)
        found = self.find(system, question)
        if given is not None:
            return self._reverse(found, given, spec, rng)
        if found is None:
            return f"I do not recognise this task.\n{ANSWER_MARKER} unknown"
        task, example = found
        if rng.random() < spec.accuracy_for(task.name):
            try:
                return task.reference_trace(example)
            except TaskError:
                return f"Recalling the answer.\n{ANSWER_MARKER} {example.answer}"
        return task.wrong_trace(example, rng)

    def _reverse(self, found: tuple[Task, Example] | None, given: str, spec: ModelSpec, rng: random.Random) -> str:
        sloppy = f"The answer is {given}.\n{ANSWER_MARKER} {given}"
        if found is None or rng.random() < spec.sloppy_rate:
            return sloppy
        task, example = found
        if not task.grade(f"{ANSWER_MARKER} {given}", example).correct:
            return sloppy  # cannot derive a wrong answer honestly; state it, verification will refuse it
        try:
            return task.reference_trace(example)
        except TaskError:
            return sloppy

    def faults_for(self, model: str) -> Faults:
        spec = self.config.models.get(model)
        return spec.faults if spec is not None and spec.faults is not None else self.config.faults

    def draw_fault(self, model: str = "") -> str | None:
        """The fault for the next request to ``model``: "429", "500", "timeout", "malformed:<kind>" or None."""
        f = self.faults_for(model)
        for name, rate in (("429", f.rate_429), ("500", f.rate_500), ("timeout", f.rate_timeout)):
            if rate > 0 and self._fault_rng.random() < rate:
                return name
        if f.rate_malformed > 0 and self._fault_rng.random() < f.rate_malformed:
            kinds = f.malformed_kinds  # one kind draws nothing, so single-kind runs keep their fault sequence
            return f"malformed:{kinds[0] if len(kinds) == 1 else self._fault_rng.choice(kinds)}"
        return None


def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status, headers=headers)


async def _refusal(sim: Simulator, body: Any) -> Response | None:
    """The error a real teacher would answer this request with, or the fault drawn for it (a timeout only delays
    the answer); None: answer it."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return _error(400, "'messages' must be a list", "invalid_request_error")
    model = str(body.get("model", ""))
    sim.requests[model] += 1
    if model not in sim.config.models:
        return _error(404, f"model '{model}' does not exist", "not_found_error")
    if sim.config.refuse_n and body.get("n", 1) not in (1, None):
        return _error(400, "only n=1 is supported", "invalid_request_error")
    faults = sim.faults_for(model)
    fault = sim.draw_fault(model)
    if fault:
        # Counted as "malformed" whatever the kind, so stats stay comparable across configs.
        sim.faults[fault.split(":", 1)[0]] += 1
    if fault == "429":
        retry = {"Retry-After": f"{faults.retry_after_s:g}"}
        return _error(429, "rate limited (simulated)", "rate_limit_error", retry)
    if fault == "500":
        return _error(500, "internal error (simulated)", "server_error")
    if fault == "timeout":
        await asyncio.sleep(faults.timeout_delay_s)
    if fault is not None and fault.startswith("malformed:"):
        return Response(_MALFORMED_BODIES[fault.removeprefix("malformed:")], media_type="application/json")
    return None


async def _answer(sim: Simulator, body: dict[str, Any]) -> Response:
    """The chat completion: n answers of the simulated model, after its latency."""
    model = str(body.get("model", ""))
    if sim.config.latency_ms > 0:
        await asyncio.sleep(sim.config.latency_ms / 1000)
    messages = [m for m in body["messages"] if isinstance(m, dict) and isinstance(m.get("content"), str)]
    n = body.get("n", 1)
    n = 1 if sim.config.ignore_n or not isinstance(n, int) or n < 1 else min(n, 128)
    base = body.get("seed", 0)
    base = base if isinstance(base, int) else 0
    texts = [sim.answer(model, messages, base + i) for i in range(n)]
    prompt_tokens = sum(_tokens(m["content"]) for m in messages)
    completion_tokens = sum(_tokens(t) for t in texts)
    return _FastJSONResponse(
        {
            "id": f"simcmpl-{hashlib.sha1(repr((model, messages, base, n)).encode()).hexdigest()[:16]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                for i, t in enumerate(texts)
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    )


def create_app(config: SimulatorConfig | Simulator) -> Starlette:
    """The ASGI app; ``app.state.simulator`` holds the state (config can be swapped at runtime)."""
    sim = config if isinstance(config, Simulator) else Simulator(config)

    async def completions(request: Request) -> Response:
        try:
            body = _json_loads(await request.body())
        except ValueError:  # json's and orjson's JSONDecodeError, UnicodeDecodeError
            return _error(400, "request body is not JSON", "invalid_request_error")
        refused = await _refusal(sim, body)
        return refused if refused is not None else await _answer(sim, body)

    async def models(request: Request) -> Response:
        data = [{"id": m, "object": "model", "owned_by": "stratos-simulator"} for m in sim.config.models]
        return JSONResponse({"object": "list", "data": data})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def stats(request: Request) -> Response:
        return JSONResponse(sim.stats())

    async def reset(request: Request) -> Response:
        sim.reset_stats()
        return JSONResponse(sim.stats())

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/stats", stats, methods=["GET"]),
            Route("/stats/reset", reset, methods=["POST"]),
        ]
    )
    app.state.simulator = sim
    return app


def load_config(path: str | Path) -> SimulatorConfig:
    """A simulator config from YAML (or JSON, which is YAML)."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    return SimulatorConfig.model_validate(data)


def serve(config: SimulatorConfig, host: str = "127.0.0.1", port: int = 8100) -> None:
    """Run the simulator in the foreground until interrupted."""
    uvicorn.run(create_app(config), host=host, port=port, log_level="warning", access_log=False)


class RunningSimulator:
    """A simulator served from a background thread; ``base_url`` ends in ``/v1``."""

    def __init__(self, simulator: Simulator, server: uvicorn.Server, thread: threading.Thread, port: int) -> None:
        self.simulator = simulator
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self._server = server
        self._thread = thread

    def stop(self) -> None:
        self._server.should_exit = True
        self._server.force_exit = True  # do not wait for requests parked in a simulated timeout
        self._thread.join(timeout=10)


@contextlib.contextmanager
def running_simulator(config: SimulatorConfig | None = None) -> Iterator[RunningSimulator]:
    """Serve a simulator on a free local port for the duration of a ``with`` block (pytest helper)."""
    sim = Simulator(config or SimulatorConfig())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(sim), log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=1
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="teacher-simulator")
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("teacher simulator did not start")
        time.sleep(0.01)
    running = RunningSimulator(sim, server, thread, port)
    try:
        yield running
    finally:
        running.stop()
        sock.close()


def build_parser() -> argparse.ArgumentParser:
    """The simulator's command line (also what the compose file's `teacher-sim` command is checked against)."""
    parser = argparse.ArgumentParser(description="Stratos TEACHER SIMULATOR (fake OpenAI-compatible teacher).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--config", help="YAML config (models, accuracies, latency, faults)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    config = load_config(args.config) if args.config else SimulatorConfig()
    serve(config, args.host, args.port)


if __name__ == "__main__":
    main()
