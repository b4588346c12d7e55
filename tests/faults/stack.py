"""A stack whose pieces the fault tests break: service processes over one nats-server (or a cluster).

Services run exactly as `stratos up` runs them: the four control services once
(`launch_service`), a trainer and a deployer on each of three servers
(`launch_server`, named ``trainer@<server>``); `kill` is SIGKILL (no handler
runs, nothing is flushed or acked), `restart` launches a fresh process with the
same environment. What happened is read back from the
JetStream stream itself, the truth after de-duplication, and from a core
subscription that also sees re-publishes JetStream dropped (redone work).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

from stratos_cli.stack import (
    CONTROL,
    advertise_host,
    choose_servers,
    launch_server,
    launch_service,
    service_env,
    signal_server,
    stop_pids,
)
from stratos_inventory.sources.catalog import load_catalog
from stratos_shared.bus.infra import ensure_infrastructure
from stratos_shared.bus.names import DLQ_STREAM, EVENTS_STREAM

ROOT = Path(__file__).parents[2]
SERVING_MODULE = "stratos_deployer.serving"
CATALOG = ROOT / "examples" / "servers.yaml"
SERVERS = choose_servers(
    [s.id for s in load_catalog(CATALOG)], 6 if os.environ.get("STRATOS_FAULTS_FULL") == "1" else 3
)
"""Servers with workers: three (six for the full matrix, whose rounds run up to six jobs at once), so a job
whose server is lost has room elsewhere with the other jobs placed."""


@dataclass
class ServiceSet:
    """The services as processes (workers named ``<service>@<server>``); each can be SIGKILLed and relaunched."""

    home: Path
    env: dict[str, str]
    pids: dict[str, int] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)

    def start(self) -> None:
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        for service in CONTROL:
            self.pids[service] = launch_service(service, self.home, self.env)
        for index, server in enumerate(SERVERS):
            self.pids |= launch_server(server, index, self.home, self.env)

    def kill(self, service: str) -> None:
        """SIGKILL, then reap: the process gets no chance to ack, flush or clean up."""
        pid = self.pids[service]
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)

    def kill_server(self, server: str) -> None:
        """SIGKILL every process of the server (its workers and their model servers), then reap the workers."""
        signal_server(self.home, server)
        for name, pid in self.pids.items():
            if name.partition("@")[2] == server:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)

    def revive_server(self, server: str) -> None:
        """Start the dead server's workers again (the same names, fresh processes)."""
        for name in [n for n in self.pids if n.partition("@")[2] == server]:
            self.restart(name)

    def restart(self, service: str) -> None:
        self.restarts[service] = self.restarts.get(service, 0) + 1
        name, _, server = service.partition("@")
        env = self.env
        if server:
            index = SERVERS.index(server)
            env = self.env | {"STRATOS_SERVER_ID": server, "STRATOS_ADVERTISE_HOST": advertise_host(index)}
        self.pids[service] = launch_service(name, self.home, env, replica=self.restarts[service], tag=server)

    def stop(self) -> None:
        stop_pids(self.pids)
        for pid in self.pids.values():
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


@contextlib.contextmanager
def services(nats_url: str, home: Path, extra_env: dict[str, str], replicas: int = 1) -> Iterator[ServiceSet]:
    env = service_env(home, nats_url, replicas, {"STRATOS_CATALOG": str(CATALOG)})
    env.update(extra_env)
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    stack = ServiceSet(home, env)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
        stop_serving(home)


def serving_pids(home: Path, job_id: str | None = None) -> list[int]:
    """Model servers (the deployer's CPU backend) started by this stack, optionally for one job only."""
    found: list[int] = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if SERVING_MODULE.encode() not in argv or f"STRATOS_HOME={home}".encode() not in environ.split(b"\0"):
            continue
        if job_id is None or job_id.encode() in argv:
            found.append(int(proc.name))
    return found


def stop_serving(home: Path) -> None:
    """Kill model servers left by this stack (a SIGKILLed deployer cannot stop its own)."""
    for pid in serving_pids(home):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@dataclass
class Published:
    """Every event as published (core subscription): includes re-publishes that JetStream de-duplicated."""

    bodies: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    async def on_message(self, msg: Msg) -> None:
        with contextlib.suppress(ValueError):
            body = json.loads(msg.data)
            if isinstance(body, dict):
                self.bodies.append({**body, "_seen_s": round(time.monotonic() - self.started, 1)})

    def timeline(self, job_id: str) -> str:
        """When each of the job's events was first seen (seconds since the watch began), for reports."""
        first: dict[str, float] = {}
        for body in self.bodies:
            if body.get("job_id") == job_id:
                revision = f"#{body['revision']}" if "revision" in body else ""
                first.setdefault(f"{body.get('event_type')}{revision}", body["_seen_s"])
        return ", ".join(f"{t} {s:.0f}s" for t, s in first.items())

    def of(self, event_type: str, job_id: str) -> list[dict[str, Any]]:
        return [b for b in self.bodies if b.get("event_type") == event_type and b.get("job_id") == job_id]


async def watch_published(nc: Client) -> Published:
    published = Published()
    await nc.subscribe("stratos.evt.>", cb=published.on_message)
    await nc.flush()
    return published


async def stream_events(nc: Client) -> list[dict[str, Any]]:
    """Every event the stream holds, in order: what was stored after de-duplication, and survived."""
    js = nc.jetstream(timeout=10)
    if not (await js.stream_info(EVENTS_STREAM)).state.messages:
        return []
    sub = await js.subscribe("stratos.evt.>", stream=EVENTS_STREAM, ordered_consumer=True)
    out: list[dict[str, Any]] = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=1.0)
            except TimeoutError:
                break
            with contextlib.suppress(ValueError):
                body = json.loads(msg.data)
                out.append(body if isinstance(body, dict) else {"_raw": True})
    finally:
        await sub.unsubscribe()
    return out


async def dead_letters(nc: Client) -> int:
    return int((await nc.jetstream(timeout=10).stream_info(DLQ_STREAM)).state.messages)


async def connect(urls: str) -> Client:
    """A test client that rides out broker restarts (as the services do)."""

    async def quiet(error: Exception) -> None:
        """Broken connections are the point of these tests; the client reconnects by itself."""

    return await nats.connect(
        servers=urls.split(","),
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.2,
        connect_timeout=2,
        error_cb=quiet,
    )


async def replicated_infrastructure(urls: str, replicas: int) -> None:
    """Create the streams and buckets before the services start: a new cluster elects its JetStream
    meta leader first, and a service whose start-up finds none exits."""
    nc = await connect(urls)
    try:
        for _ in range(100):
            try:
                await ensure_infrastructure(nc.jetstream(timeout=2), replicas=replicas)
                return
            except Exception:
                await asyncio.sleep(0.3)
        raise TimeoutError("the broker never accepted the streams and buckets")
    finally:
        await nc.close()


async def poll(condition: Any, timeout_s: float, every_s: float = 0.2, what: str = "condition") -> None:
    """Await an async predicate until true; fail with `what` when it never becomes true."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{what} not met within {timeout_s:.0f} s")
        await asyncio.sleep(every_s)
