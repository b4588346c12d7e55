"""Delivery guarantees of the bus layer, on a real nats-server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from nats.aio.client import Client

from stratos_shared.bus.handler import EventRouter, HandlerContext, publish_event
from stratos_shared.contracts.events import JobCancelRequested
from stratos_shared.embedded import NatsServerProcess
from stratos_shared.service import ServiceRuntime
from stratos_shared.settings import StratosSettings

pytestmark = pytest.mark.nats


async def wait_until(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


def settings_for(server: NatsServerProcess, tmp_path: Path, **overrides: object) -> StratosSettings:
    return StratosSettings(nats_url=server.url, home=tmp_path / "home", **overrides)  # type: ignore[arg-type]


async def test_event_published_twice_with_same_id_is_delivered_once(nats_server, tmp_path, nc: Client) -> None:
    received: list[str] = []
    router = EventRouter("test", ack_wait_s=5)

    @router.handler(consumes=JobCancelRequested, publishes=[], durable="dedup-test")
    async def handle(event: JobCancelRequested, ctx: HandlerContext) -> None:
        received.append(event.event_id)

    runtime = ServiceRuntime("test", settings_for(nats_server, tmp_path), [router], tracing=False)
    await runtime.start()
    try:
        event = JobCancelRequested(job_id="job-1")
        await publish_event(runtime.broker, event)
        await publish_event(runtime.broker, event)
        await publish_event(runtime.broker, JobCancelRequested(job_id="job-2"))
        for _ in range(100):
            if len(received) >= 2:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # time for a duplicate to show up, were it delivered
    finally:
        await runtime.stop()
    assert received.count(event.event_id) == 1
    assert len(received) == 2


async def test_handler_that_fails_before_acking_gets_redelivered(nats_server, tmp_path) -> None:
    deliveries: list[int] = []
    router = EventRouter("test", ack_wait_s=5)

    @router.handler(consumes=JobCancelRequested, publishes=[], durable="redeliver-test")
    async def handle(event: JobCancelRequested, ctx: HandlerContext) -> None:
        deliveries.append(ctx.delivery)
        if ctx.delivery == 1:
            raise RuntimeError("crash before ack")

    runtime = ServiceRuntime("test", settings_for(nats_server, tmp_path), [router], tracing=False)
    await runtime.start()
    try:
        await publish_event(runtime.broker, JobCancelRequested(job_id="job-1"))
        for _ in range(200):
            if len(deliveries) >= 2:
                break
            await asyncio.sleep(0.05)
    finally:
        await runtime.stop()
    assert deliveries == [1, 2]


async def test_process_killed_mid_handler_has_its_message_redelivered(nats_server, tmp_path, nc: Client) -> None:
    """SIGKILL a worker mid-handler: no ack, no lease extension, so JetStream redelivers to the next worker."""
    log = tmp_path / "deliveries.txt"
    env = {**os.environ, "NATS_URL": nats_server.url, "STRATOS_HOME": str(tmp_path / "home")}
    command = [sys.executable, str(Path(__file__).with_name("hanging_worker.py")), str(log)]
    first = subprocess.Popen(command, env=env)
    try:
        await nc.jetstream().publish(
            JobCancelRequested.SUBJECT, JobCancelRequested(job_id="job-1").to_bytes(), stream="STRATOS_EVENTS"
        )
        await wait_until(lambda: log.exists() and log.read_text().count("started") == 1)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        second = subprocess.Popen(command, env=env)
        try:
            await wait_until(lambda: "started 2" in log.read_text(), timeout_s=30)
        finally:
            second.kill()
            second.wait(10)
    finally:
        first.kill()
    assert log.read_text().split("\n")[:2] == ["started 1", "started 2"]


async def test_message_failing_max_deliver_times_lands_on_dead_letter_subject(nats_server, tmp_path, collect) -> None:
    dead = await collect("stratos.dlq.>")
    attempts: list[int] = []
    router = EventRouter("test", max_deliver=3, ack_wait_s=5)

    @router.handler(consumes=JobCancelRequested, publishes=[], durable="dlq-test")
    async def always_fails(event: JobCancelRequested, ctx: HandlerContext) -> None:
        attempts.append(ctx.delivery)
        raise ValueError("poison")

    runtime = ServiceRuntime("test", settings_for(nats_server, tmp_path), [router], tracing=False)
    await runtime.start()
    try:
        await publish_event(runtime.broker, JobCancelRequested(job_id="job-poison"))
        await dead.wait_for(lambda c: len(c.messages) >= 1, timeout_s=20)
        await asyncio.sleep(0.5)
    finally:
        await runtime.stop()
    assert attempts == [1, 2, 3]
    assert len(dead.messages) == 1
    message = dead.messages[0]
    assert message.subject == "stratos.dlq.stratos.evt.job.cancel"
    assert message.headers is not None
    assert "ValueError: poison" in message.headers["Stratos-Dead-Reason"]
    assert message.headers["Stratos-Original-Subject"] == "stratos.evt.job.cancel"
    assert dead.bodies()[0]["job_id"] == "job-poison"


async def test_workers_of_one_handler_never_take_the_same_message_twice(nats_server, tmp_path) -> None:
    """A backlog behind busy workers: each message is handled once even when handling outlasts `ack_wait`.

    Fetching ahead of a free worker (FastStream's `max_workers`) leaves a waiting message's lease to run
    out, and JetStream hands it out again while the first copy is still queued.
    """
    handled: list[str] = []
    running = 0
    most_at_once = 0
    router = EventRouter("test", ack_wait_s=1.0)

    @router.handler(consumes=JobCancelRequested, publishes=[], durable="workers-test", max_workers=2)
    async def handle(event: JobCancelRequested, ctx: HandlerContext) -> None:
        nonlocal running, most_at_once
        running += 1
        most_at_once = max(most_at_once, running)
        await asyncio.sleep(2.5)  # longer than ack_wait: only the lease extension keeps the message ours
        handled.append(event.job_id)
        running -= 1

    runtime = ServiceRuntime("test", settings_for(nats_server, tmp_path), [router], tracing=False)
    await runtime.start()
    try:
        for n in range(6):
            await publish_event(runtime.broker, JobCancelRequested(job_id=f"job-{n}"))
        await wait_until(lambda: len(handled) >= 6, timeout_s=30)
        await asyncio.sleep(2.0)  # time for a duplicate to finish, were one handed out
    finally:
        await runtime.stop()
    assert sorted(handled) == [f"job-{n}" for n in range(6)], handled
    assert most_at_once == 2
