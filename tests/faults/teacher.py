"""The teacher simulator behind a gate that counts every request and can hold a stage's requests.

The fault tests need two things the simulator alone does not give: to know
which teacher calls were sent twice (the simulator counts per model, not per
request), and to pause a stage mid-way so a service can be killed while its
requests are in flight. The gate sits in front of the real simulator app: it
counts each distinct request body, and holds requests of a chosen (model,
stage) once a given number have passed, until released. Teacher-eval asks
greedily (temperature 0); data-synth samples (temperature > 0): that is how a
request is attributed to its stage.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from stratos_shared.teacher.simulator import SimulatorConfig, create_app

Scope = dict[str, Any]


def request_stage(body: dict[str, Any]) -> str:
    return "teacher-eval" if not body.get("temperature") else "data-synth"


@dataclass(eq=False)
class Hold:
    """Hold requests of `models` in `stage` once `after` of them have been answered."""

    models: frozenset[str]
    stage: str
    after: int
    passed: int = 0
    in_flight: set[str] = field(default_factory=set)
    released: threading.Event = field(default_factory=threading.Event)


class TeacherGate:
    """ASGI middleware over the simulator: per-request counts, and holds for fault injection."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.counts: Counter[str] = Counter()
        self.model_of: dict[str, str] = {}
        self._lock = threading.Lock()
        self._holds: list[Hold] = []
        self._active: Counter[tuple[str, str]] = Counter()
        self._answered: deque[tuple[float, str, str]] = deque(maxlen=10_000)

    def hold(self, models: set[str], stage: str, after: int) -> Hold:
        with self._lock:
            hold = Hold(frozenset(models), stage, after)
            self._holds.append(hold)
            return hold

    def release(self, hold: Hold) -> None:
        with self._lock:
            if hold in self._holds:
                self._holds.remove(hold)
        hold.released.set()

    def release_all(self) -> None:
        with self._lock:
            holds, self._holds = self._holds, []
        for hold in holds:
            hold.released.set()

    def held(self, hold: Hold) -> set[str]:
        """Request keys parked at this hold now (sent by the service, not yet answered)."""
        with self._lock:
            return set(hold.in_flight)

    def duplicates(self) -> dict[str, int]:
        """Request keys the simulator received more than once, with how often."""
        with self._lock:
            return {key: n for key, n in self.counts.items() if n > 1}

    def unanswered(self, stage: str, window_s: float = 2.0) -> set[str]:
        """Keys a client of `stage` may not have cached yet: in flight, or answered in the last `window_s`.

        Killing the client now may make it send exactly these again; nothing else.
        """
        since = time.monotonic() - window_s
        with self._lock:
            active = {key for (key, s), n in self._active.items() if s == stage and n > 0}
            return active | {key for at, key, s in self._answered if s == stage and at >= since}

    def _matching(self, body: dict[str, Any]) -> Hold | None:
        model, stage = str(body.get("model")), request_stage(body)
        return next((h for h in self._holds if model in h.models and h.stage == stage), None)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/chat/completions":
            await self.app(scope, receive, send)
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        key = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        stage = request_stage(body)
        with self._lock:
            self.counts[key] += 1
            self.model_of[key] = str(body.get("model"))
            self._active[(key, stage)] += 1
            hold = self._matching(body)
            if hold is not None and hold.passed < hold.after:
                hold.passed += 1
                hold = None
            if hold is not None:
                hold.in_flight.add(key)
        if hold is not None:
            await asyncio.to_thread(hold.released.wait)  # released from the test's thread
            with self._lock:
                hold.in_flight.discard(key)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": raw, "more_body": False}

        try:
            await self.app(scope, replay, send)
        finally:
            with self._lock:
                self._active[(key, stage)] -= 1
                self._answered.append((time.monotonic(), key, stage))


class GatedTeacher:
    """A served simulator behind a `TeacherGate`; ``base_url`` ends in ``/v1``."""

    def __init__(self, gate: TeacherGate, port: int) -> None:
        self.gate = gate
        self.base_url = f"http://127.0.0.1:{port}/v1"


@contextlib.contextmanager
def gated_teacher(config: SimulatorConfig) -> Iterator[GatedTeacher]:
    """Serve the gated simulator from a background thread for the duration of a ``with`` block."""
    gate = TeacherGate(create_app(config))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(gate, log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="gated-teacher")
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("gated teacher did not start")
        time.sleep(0.01)
    try:
        yield GatedTeacher(gate, port)
    finally:
        gate.release_all()  # let parked requests finish so the server can exit
        server.should_exit = True
        server.force_exit = True
        thread.join(timeout=10)
        sock.close()
