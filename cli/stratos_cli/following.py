"""`stratos logs -f`: a job's events as they reach NATS, one line each, until the job ends.

The services' log files stay on the hosts that wrote them, but every step of a job is an event in
JetStream, so following the events works against any deployment the CLI can reach: the embedded stack,
docker compose, or servers spread over several hosts.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta

from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import ConsumerConfig, DeliverPolicy

from stratos_cli import client
from stratos_cli.logview import LogLine
from stratos_selector.workflow import apply, summarize
from stratos_shared.bus.kv import TypedKV
from stratos_shared.bus.names import EVENTS_STREAM, JOBS_BUCKET
from stratos_shared.bus.permissions import EVENT_PUBLISHERS
from stratos_shared.contracts.base import Event
from stratos_shared.contracts.events import EVENT_TYPES, JobFailed, JobRejected
from stratos_shared.contracts.parsing import parse_event
from stratos_shared.errors import InvalidEventError, StratosError
from stratos_shared.jobs import JobState

JOB_EVENTS = "stratos.evt.>"
CLOCK_SKEW = timedelta(seconds=5)
"""Events are replayed from a little before the submission: the submitter's clock need not match the server's."""


class JobNotFound(StratosError):
    """The job is not in the ledger (a wrong id, or one submitted a moment ago that is still queued)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id!r} (it may still be queued: try again in a moment)")


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcard matching: ``*`` is one token, a final ``>`` one or more."""
    want, have = pattern.split("."), subject.split(".")
    for index, token in enumerate(want):
        if token == ">":
            return len(have) > index
        if index >= len(have) or token not in ("*", have[index]):
            return False
    return len(want) == len(have)


def publisher(subject: str) -> str:
    """Which service sent an event, from the only NATS user allowed to publish on its subject.

    A subject several services may use (a job failure) is named by the server in it, or as `control`.
    """
    users = [user for user, allowed in EVENT_PUBLISHERS.items() if any(subject_matches(p, subject) for p in allowed)]
    if len(users) == 1:
        return users[0]
    _, _, server = subject.partition(".server.")
    return server or "control"


def decode(body: bytes) -> Event | None:
    """The event in a message of the events stream; None for one this CLI does not know or cannot read."""
    try:
        kind = json.loads(body).get("event_type")
    except (ValueError, AttributeError):
        return None
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        return None
    try:
        return parse_event(cls, body)
    except InvalidEventError:
        return None


def event_line(event: Event, subject: str, headers: dict[str, str] | None = None) -> LogLine:
    """An event as a log line: its time, the service that sent it, and what it did to the job."""
    traceparent = (headers or {}).get("traceparent", "")
    parts = traceparent.split("-")
    return LogLine(
        ts=event.occurred_at.isoformat(timespec="milliseconds"),
        level="ERROR" if isinstance(event, (JobFailed, JobRejected)) else "INFO",
        service=publisher(subject),
        message=summarize(event),
        job_id=event.job_id,
        trace_id=parts[1] if len(parts) == 4 else None,
    )


async def follow_job(
    url: str | None, job_id: str, on_line: Callable[[LogLine], None], timeout_s: float | None = None
) -> JobState | None:
    """Replay the job's events from its submission, then each new one as it comes, until the job ends.

    Returns the job's state folded from those events (the ledger's own fold), so the caller knows how it ended;
    a job still running after `timeout_s` returns its state so far.
    """
    loop = asyncio.get_running_loop()
    deadline = None if timeout_s is None else loop.time() + timeout_s
    async with client.connect(url) as (_, js):
        found = await TypedKV(await js.key_value(JOBS_BUCKET), JobState).get(job_id)
        if not found:
            raise JobNotFound(job_id)
        since = found[0].submitted_at or found[0].updated_at
        config = ConsumerConfig(opt_start_time=since - CLOCK_SKEW) if since else None
        sub = await js.subscribe(
            JOB_EVENTS,
            stream=EVENTS_STREAM,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.BY_START_TIME if since else DeliverPolicy.ALL,
            config=config,
        )
        state: JobState | None = None
        seen: set[str] = set()  # an ordered consumer that resets may deliver an event again
        try:
            while deadline is None or loop.time() < deadline:
                wait = 1.0 if deadline is None else max(0.01, min(1.0, deadline - loop.time()))
                try:
                    msg = await sub.next_msg(timeout=wait)
                except NatsTimeout:
                    continue
                event = decode(msg.data)
                if event is None or event.job_id != job_id or event.event_id in seen:
                    continue
                seen.add(event.event_id)
                state = apply(state, event) or state
                on_line(event_line(event, msg.subject, msg.headers))
                if state is not None and state.status != "running":
                    break
        finally:
            await sub.unsubscribe()
        return state
