"""A worker's membership of its server: heartbeats out, and self-fencing when cut off.

Every trainer and deployer process runs on one server (``STRATOS_SERVER_ID``). Its agent publishes a
`ServerHeartbeat` on ``stratos.hb.<server>`` every few seconds, naming the jobs it works on; the inventory
turns the silence of all of a server's workers into `ServerDown` (`heartbeat-timeout`).

A worker that could not get a heartbeat through for longer than `fence_after_s` (a partition, or the
process paused with SIGSTOP) must assume its server was declared down and its jobs moved: it is *fenced*.
`fenced()` says so from the first moment (it compares the clock with the last heartbeat that went through,
so a thread resumed after a pause sees it before the event loop has run), and `generation` counts the
gaps, so work started before a gap knows it must re-validate even after the connection came back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from nats.aio.client import Client

from stratos_shared.bus.names import heartbeat_subject
from stratos_shared.contracts.events import ServerHeartbeat

log = logging.getLogger("stratos.agent")

OnFenced = Callable[[], Awaitable[None]]


class ServerAgent:
    """Heartbeats for one worker process and the fence that stops its work when it was cut off."""

    def __init__(
        self,
        server_id: str,
        worker: str,
        service: str,
        jobs: Callable[[], list[str]],
        every_s: float = 2.0,
        fence_after_s: float = 8.0,
    ) -> None:
        self.server_id = server_id
        self.worker = worker
        self.service = service
        self.jobs = jobs
        self.every_s = every_s
        self.fence_after_s = fence_after_s
        self.last_ok = time.time()
        self.generation = 0
        """Incremented once per gap longer than `fence_after_s`: work started in an earlier generation is stale."""
        self.on_fenced: list[OnFenced] = []
        """Run (as tasks, so beating goes on) when a gap starts: stop the work."""
        self.on_rejoin: list[OnFenced] = []
        """Run when a heartbeat goes through again after a gap: re-validate what was stopped."""
        self._in_gap = False
        self._hooks: set[asyncio.Task[None]] = set()

    def _run_hooks(self, hooks: list[OnFenced]) -> None:
        for hook in hooks:
            task = asyncio.ensure_future(hook())
            self._hooks.add(task)
            task.add_done_callback(self._hook_done)

    def _hook_done(self, task: asyncio.Task[None]) -> None:
        self._hooks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("fence hook failed: %s", task.exception())

    def fenced(self) -> bool:
        """True while (or as soon as) no heartbeat has gone through for longer than the fence timeout."""
        return time.time() - self.last_ok > self.fence_after_s

    def stale(self, generation: int) -> bool:
        """Work started at `generation` must stop: a gap happened since, or one is happening now."""
        return self.fenced() or self.generation != generation

    async def _gap(self, silent_s: float) -> None:
        if self._in_gap:
            return
        self._in_gap = True
        self.generation += 1
        log.warning(
            "%s on %s: no heartbeat went through for %.1f s (over %.1f s): fencing myself, stopping my work",
            self.worker,
            self.server_id,
            silent_s,
            self.fence_after_s,
        )
        self._run_hooks(self.on_fenced)

    async def beat_once(self, nc: Client) -> bool:
        beat = ServerHeartbeat(
            server_id=self.server_id,
            worker=self.worker,
            service=self.service,
            jobs=sorted(self.jobs()),
            interval_s=self.every_s,
        )
        try:
            await nc.publish(heartbeat_subject(self.server_id), beat.to_bytes())
            await nc.flush(timeout=max(1, int(self.every_s)))
        except Exception:  # disconnected or slow: the fence watch decides what that means
            return False
        now = time.time()
        if now - self.last_ok > self.fence_after_s:
            await self._gap(now - self.last_ok)  # a pause ended before the watch could see it
        self.last_ok = now
        if self._in_gap:
            self._in_gap = False
            log.info("%s on %s: heartbeats go through again", self.worker, self.server_id)
            self._run_hooks(self.on_rejoin)
        return True

    async def run(self, nc: Client) -> None:
        """Beat every `every_s` and watch for gaps, for the process's lifetime."""
        beating = asyncio.ensure_future(self._beat_forever(nc))
        try:
            while True:
                await asyncio.sleep(min(0.5, self.fence_after_s / 4))
                silent = time.time() - self.last_ok
                if silent > self.fence_after_s:
                    await self._gap(silent)
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating

    async def _beat_forever(self, nc: Client) -> None:
        while True:
            await self.beat_once(nc)
            await asyncio.sleep(self.every_s)
