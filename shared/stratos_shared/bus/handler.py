"""Thin, declarative event handlers over FastStream's JetStream pull consumers.

A service declares what each handler consumes and publishes::

    events = EventRouter("selector")

    @events.handler(consumes=JobSubmitted, publishes=[ServerChosen, JobRejected], durable="selector-jobs")
    async def on_job_submitted(event: JobSubmitted, ctx: HandlerContext) -> list[Event]: ...

The wrapper owns delivery semantics so every handler behaves the same:

- the payload is validated; an invalid one is answered by ``on_invalid`` (for
  example a ``JobRejected`` with the reason), copied to the dead-letter stream,
  and acked, so a bad message never wedges the consumer;
- while the handler runs, the message lease is extended (long stages such as
  training keep their message without a tight ``ack_wait``); a process killed
  mid-work stops extending it and JetStream redelivers to another replica;
- returned events are published with their ``event_id`` as NATS message id
  (de-duplicated), and only then is the input acked;
- an exception naks with backoff; at ``max_deliver`` the message goes to the
  dead-letter subject instead of looping forever.

Everything else a service hears or says is declared on the same router, so its declarations are the
complete wiring map (the permission test reads them): `signal` for a core-NATS subscription every process
hears (re-plans and cancels for a running trainer, heartbeats for the inventory), `publisher` for events
published by a background loop rather than in answer to a consumed event (the heartbeat monitor). Publishing
an event that was not declared raises `UndeclaredEventError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, cast

import nats.errors
from faststream import AckPolicy
from faststream.nats import ConsumerConfig, JStream, NatsBroker, NatsMessage, NatsRouter, PullSub
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from stratos_shared.bus.names import DLQ_STREAM, EVENTS_STREAM, dlq_subject
from stratos_shared.contracts.advisories import MaxDeliveries, max_deliveries_subject
from stratos_shared.contracts.base import Event, stable_id
from stratos_shared.contracts.events import (
    JobCancelRequested,
    JobFailed,
    listen_subject,
    origin_problem,
    stamped,
)
from stratos_shared.contracts.parsing import load_json, parse_event
from stratos_shared.errors import InvalidEventError, UndeclaredEventError
from stratos_shared.errors import Redeliver as Redeliver  # where handlers (training.py) have imported it from
from stratos_shared.hosts import CREDENTIAL_NAME_PARTS
from stratos_shared.logs import job_context
from stratos_shared.metrics import events_handled, handling_seconds

log = logging.getLogger("stratos.bus")

E = TypeVar("E", bound=Event)
D = TypeVar("D")
P = ParamSpec("P")
R = TypeVar("R")
HandlerResult = Event | Sequence[Event] | None
InvalidCallback = Callable[[InvalidEventError, str], Sequence[Event]]

EVENTS = JStream(EVENTS_STREAM, declare=False)
CONNECTION_INBOX = cast(bytes, None)
"""Pull consumers deliver to the connection's inbox prefix (`ServiceRuntime` sets it per user): FastStream types the
argument as bytes, but passes it on to nats-py, where None means the connection's prefix."""


def retry_delay_s(delivery: int) -> float:
    """Exponential backoff for a failed delivery: 1, 2, 4, ... capped at 30 s."""
    return float(min(30, 2 ** max(0, delivery - 1)))


PUBLISH_ACK_TIMEOUT_S = 10.0
"""How long a JetStream publish waits for the stream's ack. FastStream's default, 0.5 s, is shorter than a loaded
two-core machine takes to store a message: seen in `make demo`, a data-synth progress event timed out five times
running and failed the job."""


BATCH_WINDOW_S = 0.05
"""How long a batch pull (`max_batch` > 1) that found nothing waiting lingers for its batch: the delay of a lone
message. A pull that finds messages waiting returns them at once. (On a starved event loop nats-py can spend the
whole window before lingering and raise a bare TimeoutError that FastStream does not expect: it logs it once and
restarts the pull loop at once; nothing is lost.)"""


def subject_of(event: Event) -> str:
    """The subject `event` travels on: its class's, or for work and worker results the one naming their server."""
    routed = getattr(event, "routed_subject", None)
    return routed() if callable(routed) else event.SUBJECT


async def publish_event(broker: NatsBroker, event: Event) -> None:
    """Publish to JetStream with the event id as message id, so a re-publish is dropped as a duplicate."""
    await broker.publish(
        event.to_bytes(),
        subject=subject_of(event),
        headers={"Nats-Msg-Id": event.event_id, "Stratos-Event-Type": event.event_type},
        stream=EVENTS_STREAM,
        timeout=PUBLISH_ACK_TIMEOUT_S,
    )


SECRET_FIELD = re.compile(
    rb'("(?:api_key_ref|api_key|apikey|authorization|password|passwd|secret|token|access_token)"\s*:\s*")'
    rb'((?:[^"\\]|\\.)*)"',
    re.IGNORECASE,
)
URL_CREDENTIALS = re.compile(rb"(https?://)[^/@\s\"]*@", re.IGNORECASE)
_NAME = rb"[^=&;,#/\"\s]*"
QUERY_CREDENTIALS = re.compile(
    rb"([?&;,]" + _NAME + rb"(?:" + b"|".join(p.encode() for p in CREDENTIAL_NAME_PARTS) + rb")" + _NAME + rb"=)"
    rb"[^&;,#\"\s]*",
    re.IGNORECASE,
)
"""Query and path parameters whose name looks like a credential (the rule `TeacherSpec` refuses them by)."""
REDACTED = b"**redacted**"
HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


def redact(payload: bytes) -> bytes:
    """The payload with anything that may be a secret masked: key-like fields that are not references
    (``env:``/``file:``), and credentials inside URLs. Dead letters are kept for operators, not for keys."""

    def field(match: re.Match[bytes]) -> bytes:
        value = match.group(2)
        kept = value if value.startswith((b"env:", b"file:")) and b"@" not in value else REDACTED
        return match.group(1) + kept + b'"'

    payload = SECRET_FIELD.sub(field, payload)
    return QUERY_CREDENTIALS.sub(rb"\1" + REDACTED, URL_CREDENTIALS.sub(rb"\1" + REDACTED + b"@", payload))


async def dead_letter(broker: NatsBroker, raw: Msg, service: str, reason: str) -> None:
    """Copy a message we give up on to ``stratos.dlq.<subject>`` with why (secrets masked), for an operator."""
    headers = {
        "Stratos-Dead-Reason": HEADER_UNSAFE.sub(" ", reason)[:1000],
        "Stratos-Dead-Service": service,
        "Stratos-Original-Subject": raw.subject,
        "Stratos-Deliveries": str(raw.metadata.num_delivered if raw.reply else 0),
    }
    await broker.publish(redact(raw.data), subject=dlq_subject(raw.subject), headers=headers, stream=DLQ_STREAM)


def check_declared(event: Event, declared: tuple[type[Event], ...], who: str) -> None:
    """Refuse to publish what `who` did not declare: the declarations are the wiring map permissions follow."""
    if not isinstance(event, declared):
        names = ", ".join(cls.__name__ for cls in declared) or "nothing"
        raise UndeclaredEventError(f"{who} may publish only what it declares ({names}), not {event.event_type}")


@dataclass
class HandlerContext:
    """What a handler may use besides its event: publishing mid-work, delivery count, the broker."""

    broker: NatsBroker
    service: str
    delivery: int
    subject: str
    published: list[Event] = field(default_factory=list)
    declared: tuple[type[Event], ...] = (Event,)
    """What the handler declared it publishes; `publish` refuses anything else."""
    handler: str = "handler"
    work: Event | None = None
    """The event being handled: a worker's assignment lends its server and revision to what the worker publishes."""

    def stamp(self, event: Event) -> Event:
        return stamped(event, self.work) if self.work is not None else event

    async def publish(self, event: Event) -> None:
        """Publish now (progress events); final results are better returned."""
        check_declared(event, self.declared, f"{self.service} {self.handler}")
        event = self.stamp(event)
        await publish_event(self.broker, event)
        self.published.append(event)

    async def report(self, event: Event) -> None:
        """Publish a progress report, best effort: one that cannot be stored is superseded by the next, and
        must not fail the work it reports on."""
        check_declared(event, self.declared, f"{self.service} {self.handler}")
        event = self.stamp(event)
        try:
            await publish_event(self.broker, event)
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("%s: %s not published (%s); the next report supersedes it", self.service, event.event_type, exc)


Handler = Callable[[E, HandlerContext], Awaitable[HandlerResult]]
Signal = Callable[[E, str], Awaitable[None]]
"""A signal handler: the event and the subject it came on."""


def bind(fn: Callable[Concatenate[D, P], Awaitable[R]], deps: D) -> Callable[P, Awaitable[R]]:
    """The module-level handler (or signal) `fn(deps, event, ...)` with its dependencies bound, named and documented
    as `fn`: what the router registers, while `fn` itself stays importable and callable without a broker."""

    async def bound(*args: P.args, **kwargs: P.kwargs) -> R:
        return await fn(deps, *args, **kwargs)

    return functools.update_wrapper(bound, fn)


@dataclass(frozen=True)
class HandlerSpec(Generic[E]):
    """The declaration of one handler, kept for docs and tests."""

    name: str
    consumes: type[E]
    publishes: tuple[type[Event], ...]
    durable: str
    subject: str = ""
    """What the durable consumer filters on (``consumes``' subject, or a wildcard such as ``stratos.evt.>``)."""


def fails_its_job(consumes: type[Event]) -> bool:
    """Whether a handler of `consumes` that gives up fails a job (`EventRouter._fail_job`): its events belong to a
    job, and are not the job's end already."""
    return consumes.model_fields["job_id"].is_required() and not issubclass(consumes, (JobFailed, JobCancelRequested))


@dataclass(frozen=True)
class SignalSpec(Generic[E]):
    """A core-NATS subscription (no durable, no ack): every process hears it; a lost one costs nothing."""

    name: str
    consumes: type[E]
    subject: str
    fn: Signal[E]


Advisory = Callable[[MaxDeliveries, JetStreamContext], Awaitable[None]]
"""An advisory handler: what JetStream said, and the JetStream context to look the message up in."""


@dataclass(frozen=True)
class AdvisorySpec:
    """A core-NATS subscription to what JetStream itself announces (a message that exhausted its deliveries)."""

    name: str
    subject: str
    fn: Advisory


@dataclass(frozen=True)
class Publisher:
    """Events published outside a handler (a background loop, a start-up load), declared like a handler's."""

    router: EventRouter
    name: str
    publishes: tuple[type[Event], ...]

    async def publish(self, event: Event) -> None:
        check_declared(event, self.publishes, f"{self.router.service} {self.name}")
        await publish_event(self.router._broker(), event)


class EventRouter:
    """A FastStream router whose handlers declare the events they consume and publish."""

    def __init__(
        self, service: str, *, max_deliver: int = 5, ack_wait_s: float = 30.0, on_servers: bool = False
    ) -> None:
        self.service = service
        self.on_servers = on_servers
        """A server's worker (runs on every server, takes that server's work) rather than a control service."""
        self.router = NatsRouter()
        self.max_deliver = max_deliver
        self.ack_wait_s = ack_wait_s
        self.specs: list[HandlerSpec[Any]] = []
        self.signals: list[SignalSpec[Any]] = []
        self.publishers: list[Publisher] = []
        self.advisories: list[AdvisorySpec] = []
        self.broker: NatsBroker | None = None

    @property
    def publishes(self) -> set[type[Event]]:
        """Every event this router's service may publish: its handlers' and its publishers' declarations, and the
        JobFailed a handler of a job's events publishes when it gives up."""
        declared = {cls for spec in self.specs for cls in spec.publishes}
        gives_up: set[type[Event]] = {JobFailed} if any(fails_its_job(spec.consumes) for spec in self.specs) else set()
        return declared | gives_up | {cls for publisher in self.publishers for cls in publisher.publishes}

    def publisher(self, name: str, publishes: Sequence[type[Event]]) -> Publisher:
        """Declare events `name` (a background loop) publishes; publish them through the returned object."""
        for out in publishes:
            self.router.publisher(out.SUBJECT, schema=out, title=f"{self.service}:{out.__name__}")
        declared = Publisher(self, name, tuple(publishes))
        self.publishers.append(declared)
        return declared

    def signal(self, *, consumes: type[E], subject: str | None = None) -> Callable[[Signal[E]], Signal[E]]:
        """Register `fn(event, subject)` as a core-NATS subscription to `subject` (default `consumes.SUBJECT`).

        For what every process of a service must hear at once and may miss (a running trainer's re-plan and
        cancel signals, heartbeats): an invalid payload is ignored (the durable consumers dead-letter it) and an
        error is logged, never redelivered.
        """

        def decorate(fn: Signal[E]) -> Signal[E]:
            self.signals.append(SignalSpec(fn.__name__, consumes, subject or consumes.SUBJECT, fn))
            return fn

        return decorate

    def on_max_deliveries(self, fn: Advisory) -> Advisory:
        """Register `fn(advisory, js)` for every message of the events stream that reached its consumer's
        ``max_deliver`` unacknowledged: its worker died on every delivery, so no handler could fail the job."""
        self.advisories.append(AdvisorySpec(fn.__name__, max_deliveries_subject(EVENTS_STREAM), fn))
        return fn

    async def start_signals(self, nc: Client) -> None:
        """Subscribe the declared signals and advisories (the service runtime calls this once connected)."""
        for spec in self.signals:
            await nc.subscribe(spec.subject, cb=functools.partial(self._signal, spec))
        for advisory in self.advisories:
            await nc.subscribe(advisory.subject, cb=functools.partial(self._advisory, advisory, nc.jetstream()))

    async def _advisory(self, spec: AdvisorySpec, js: JetStreamContext, msg: Msg) -> None:
        try:
            advisory = MaxDeliveries.model_validate_json(msg.data)
        except ValueError:
            return
        try:
            await spec.fn(advisory, js)
        except Exception:  # best effort, as a signal: logged, never raised into the client's callback
            log.warning("%s advisory %s failed on %s", self.service, spec.name, msg.subject, exc_info=True)

    async def _signal(self, spec: SignalSpec[Any], msg: Msg) -> None:
        try:
            event = parse_event(spec.consumes, msg.data)
        except InvalidEventError:
            return
        try:
            await spec.fn(event, msg.subject)
        except Exception:  # a signal is best effort: the next one (or the durable path) catches up
            log.debug("%s signal %s failed on %s", self.service, spec.name, msg.subject, exc_info=True)

    def handler(
        self,
        *,
        consumes: type[E],
        publishes: Sequence[type[Event]],
        durable: str,
        on_invalid: InvalidCallback | None = None,
        max_workers: int = 1,
        max_batch: int = 1,
        subject: str | None = None,
        projection: bool = False,
    ) -> Callable[[Handler[E]], Handler[E]]:
        """Register `fn` as the durable pull consumer `durable` of `consumes.SUBJECT`.

        `max_batch` > 1 pulls up to that many messages at once and handles them concurrently (each acked on its
        own once its handler returns, each lease extended from the start), for a handler that coalesces a burst
        (the selector's ServerDowns). The price: a pull that finds nothing waiting lingers `BATCH_WINDOW_S` for
        its batch, so a lone message waits up to that long, and an idle consumer pulls once per window.

        With `subject` (a wildcard such as ``stratos.evt.>``) and `consumes=Event`,
        the handler receives every event type on it, parsed by its ``event_type``.
        A `projection` (the job ledger) reads what other consumers own: it does not dead-letter an invalid
        message (the owning consumer does, once).
        """
        listen = subject or listen_subject(consumes)
        for out in publishes:
            self.router.publisher(out.SUBJECT, schema=out, title=f"{self.service}:{out.__name__}")

        def decorate(fn: Handler[E]) -> Handler[E]:
            self.specs.append(HandlerSpec(fn.__name__, consumes, tuple(publishes), durable, listen))
            allowed = tuple(publishes)

            async def consume(msg: NatsMessage) -> None:
                await self._deliver(fn, consumes, allowed, on_invalid, msg, projection)

            # `max_workers` pull loops on the one durable consumer, each fetching only when it is free (as N
            # processes do). FastStream's own `max_workers` fetches ahead of a free worker and does not extend
            # the lease of a message waiting for one: after `ack_wait` it is redelivered and handled twice.
            description = (fn.__doc__ or "").strip() or None
            for worker in range(max_workers):
                title = f"{self.service}:{consumes.__name__}" + (f"#{worker}" if worker else "")
                self._pull_loop(listen, durable, max_batch, title, description, documented=worker == 0)(consume)

            return fn

        return decorate

    def _pull_loop(
        self, listen: str, durable: str, max_batch: int, title: str, description: str | None, *, documented: bool
    ) -> Any:
        """One pull loop on the durable consumer `durable`: the subscriber FastStream runs."""
        return self.router.subscriber(
            listen,
            stream=EVENTS,
            durable=durable,
            pull_sub=PullSub(batch_size=max_batch, timeout=1.0 if max_batch == 1 else BATCH_WINDOW_S),
            # None: the connection's own inbox prefix (nats-py reads it when none is given), not
            # FastStream's fixed "_INBOX.", which a server's credential may not subscribe to.
            inbox_prefix=CONNECTION_INBOX,
            config=ConsumerConfig(
                durable_name=durable,
                max_deliver=self.max_deliver,
                ack_wait=self.ack_wait_s,
                deliver_policy=DeliverPolicy.ALL,
                filter_subject=listen,
            ),
            ack_policy=AckPolicy.MANUAL,
            title=title,
            description=description,
            include_in_schema=documented,
        )

    async def _deliver(
        self,
        fn: Handler[E],
        consumes: type[E],
        allowed: tuple[type[Event], ...],
        on_invalid: InvalidCallback | None,
        msg: NatsMessage,
        projection: bool,
    ) -> None:
        raw: Msg = msg.raw_message
        started = time.perf_counter()
        labels = {"service": self.service, "event_type": consumes.__name__}
        try:
            event = parse_event(_event_class(consumes, msg.body, raw.subject), msg.body)
            if (problem := origin_problem(event, raw.subject)) is not None:
                raise InvalidEventError(problem, job_id=getattr(event, "job_id", None))
        except InvalidEventError as invalid:
            await self._refuse(invalid, raw, msg, on_invalid, projection, labels)
            return
        except Exception as exc:  # anything else that reading a payload can raise must not escape either
            unreadable = InvalidEventError(f"message cannot be read: {type(exc).__name__}: {exc}"[:500])
            await self._refuse(unreadable, raw, msg, on_invalid, projection, labels)
            return

        with job_context(getattr(event, "job_id", None)):
            await self._handle(fn, event, allowed, msg, labels, started)

    async def _refuse(
        self,
        invalid: InvalidEventError,
        raw: Msg,
        msg: NatsMessage,
        on_invalid: InvalidCallback | None,
        projection: bool,
        labels: dict[str, str],
    ) -> None:
        """An unreadable or invalid message: answered, dead-lettered once, acked at once (never redelivered)."""
        events_handled.add(1, {**labels, "outcome": "invalid"})
        if projection:
            log.debug("%s skipped a message on %s: %s", self.service, raw.subject, invalid.reason)
        else:
            log.warning("%s refused a message on %s: %s", self.service, raw.subject, invalid.reason)
            for answer in on_invalid(invalid, raw.subject) if on_invalid else ():
                await publish_event(self._broker(), answer)
            await dead_letter(self._broker(), raw, self.service, invalid.reason)
        await msg.ack()

    async def _handle(
        self,
        fn: Handler[E],
        event: E,
        allowed: tuple[type[Event], ...],
        msg: NatsMessage,
        labels: dict[str, str],
        started: float,
    ) -> None:
        """Run the handler under a lease, publish what it returns, then ack (or nak / dead-letter on failure)."""
        raw: Msg = msg.raw_message
        broker = self._broker()
        delivery = raw.metadata.num_delivered
        ctx = HandlerContext(
            broker=broker,
            service=self.service,
            delivery=delivery,
            subject=raw.subject,
            declared=allowed,
            handler=fn.__name__,
            work=event,
        )
        keep_alive = asyncio.create_task(self._extend_lease(raw))
        try:
            result = [ctx.stamp(out) for out in _as_list(await fn(event, ctx))]
            for out in result:
                check_declared(out, allowed, f"{self.service} {fn.__name__}")
                await publish_event(broker, out)
            # one line per handled event: with the job id and trace id attached, a job's path reads from the logs
            # (at INFO when it moved the job on; the ledger folding progress events stays at DEBUG)
            outcome = ", ".join(type(out).__name__ for out in result) or "nothing"
            level = logging.INFO if result else logging.DEBUG
            log.log(level, "%s handled %s -> %s", self.service, type(event).__name__, outcome)
        except asyncio.CancelledError:
            raise
        except Redeliver as again:
            log.info("%s hands %s back to the queue: %s", self.service, raw.subject, again)
            await raw.nak(delay=again.delay_s)
            return
        except Exception as exc:
            await self._failed(event, msg, exc)
            return
        finally:
            keep_alive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keep_alive
        await msg.ack()
        events_handled.add(1, {**labels, "outcome": "ok"})
        handling_seconds.record(time.perf_counter() - started, labels)

    async def _failed(self, event: Event, msg: NatsMessage, exc: Exception) -> None:
        """The handler raised: nak with backoff, or, on the last delivery, dead-letter the message and fail its job."""
        raw: Msg = msg.raw_message
        delivery = raw.metadata.num_delivered
        reason = f"{type(exc).__name__}: {exc}"
        if delivery >= self.max_deliver:
            log.error("%s gives up on %s after %d deliveries: %s", self.service, raw.subject, delivery, reason)
            await dead_letter(self._broker(), raw, self.service, reason)
            await self._fail_job(event, raw, delivery, reason)
            await msg.ack()
        else:
            # With the traceback: "TimeoutError: nats: timeout" alone does not say which call timed out.
            log.warning(
                "%s failed on %s (delivery %d), will retry: %s",
                self.service,
                raw.subject,
                delivery,
                reason,
                exc_info=exc,
            )
            await raw.nak(delay=retry_delay_s(delivery))

    async def _fail_job(self, event: Event, raw: Msg, delivery: int, reason: str) -> None:
        """A stage that gives up on a job's event fails the job, so it is never left "running" for ever."""
        if event.job_id is None or isinstance(event, (JobFailed, JobCancelRequested)):
            return
        failed = JobFailed(
            event_id=stable_id(event.job_id, "failed", "gave-up", self.service, event.event_id),
            job_id=event.job_id,
            stage=self.service,
            reason=f"{self.service} gave up on {event.event_type} after {delivery} attempts: {reason}"[:2000],
        )
        failed = stamped(failed, event)  # a worker's failure carries its assignment's fencing token
        with contextlib.suppress(Exception):  # the dead letter already holds the event; never lose the ack
            await publish_event(self._broker(), failed)

    async def _extend_lease(self, raw: Msg) -> None:
        while True:
            await asyncio.sleep(self.ack_wait_s / 3)
            with contextlib.suppress(Exception):
                await raw.in_progress()

    def _broker(self) -> NatsBroker:
        if self.broker is None:
            raise RuntimeError(f"router of {self.service} is not attached to a broker (call attach())")
        return self.broker

    def attach(self, broker: NatsBroker) -> None:
        """Include the router in `broker`; handlers publish through it."""
        self.broker = broker
        broker.include_router(self.router)


def parse_stored(body: bytes, subject: str) -> Event:
    """A stored message of the events stream as the event its type names (`InvalidEventError` if it is none)."""
    event = parse_event(_event_class(Event, body, subject), body)
    if (problem := origin_problem(event, subject)) is not None:
        raise InvalidEventError(problem)
    return event


def _event_class(consumes: type[E], body: bytes, subject: str) -> type[E]:
    """The class to validate against: `consumes` itself, or for the generic `Event` the class its type names,
    which must be the one that travels on `subject` (a JobSubmitted published on the cancel subject is no event)."""
    if consumes is not Event:
        return consumes
    from stratos_shared.contracts.events import EVENT_TYPES

    data = load_json(body)
    name = data.get("event_type") if isinstance(data, dict) else None
    found = EVENT_TYPES.get(name) if isinstance(name, str) else None
    if found is None:
        raise InvalidEventError(f"unknown event_type {str(name)[:64]!r}")
    routed = hasattr(found, "routed_subject")  # a worker's result, or work for one server: <SUBJECT>.<...>
    travels = subject.startswith(f"{found.SUBJECT}.") if routed else subject == found.SUBJECT
    if not travels:
        raise InvalidEventError(f"{found.__name__} events travel on {listen_subject(found)}, not on {subject}")
    return found  # type: ignore[return-value]


def _as_list(result: HandlerResult) -> list[Event]:
    if result is None:
        return []
    if isinstance(result, Event):
        return [result]
    return list(result)
