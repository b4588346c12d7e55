"""One factory wires every service: settings -> telemetry -> broker -> routers.

`ServiceRuntime` connects to NATS, makes sure the streams, buckets and object
store exist, starts the routers' consumers, and runs until SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from faststream.nats import NatsBroker, NatsSecurity, NatsUserPassword
from faststream.nats.opentelemetry import NatsTelemetryMiddleware
from nats.aio.client import Client
from nats.js import JetStreamContext

from stratos_shared.bus.handler import EventRouter
from stratos_shared.bus.infra import await_infrastructure, ensure_infrastructure
from stratos_shared.bus.names import EVENTS_STREAM, inbox_prefix
from stratos_shared.logs import setup_logging
from stratos_shared.metrics import record_consumer_lag, setup_metrics
from stratos_shared.settings import StratosSettings
from stratos_shared.telemetry import setup_tracing

log = logging.getLogger("stratos.service")

Hook = Callable[["ServiceRuntime"], Awaitable[None]]


class ServiceRuntime:
    """A running service: its broker, raw NATS client and JetStream context."""

    def __init__(
        self,
        name: str,
        settings: StratosSettings,
        routers: Sequence[EventRouter],
        *,
        on_start: Sequence[Hook] = (),
        on_stop: Sequence[Hook] = (),
        tracing: bool = True,
        creates_infrastructure: bool = True,
        server_id: str | None = None,
    ) -> None:
        """`creates_infrastructure`: a control service creates the streams and buckets at start; a server's worker
        (False) only waits for them, and for its server's (`server_id`) object stores, since its credential may not
        create or change them."""
        self.name = name
        self.creates_infrastructure = creates_infrastructure
        self.server_id = server_id
        self.settings = settings
        self.routers = list(routers)
        self.on_start = list(on_start)
        self.on_stop = list(on_stop)
        self.tracer_provider = setup_tracing(name, settings.resolved_trace_dir()) if tracing else None
        self.meter_provider = setup_metrics(name, settings.metrics_port)
        middlewares: list[Any] = []
        if self.tracer_provider is not None:
            middlewares.append(
                NatsTelemetryMiddleware(tracer_provider=self.tracer_provider, meter_provider=self.meter_provider)
            )
        auth: dict[str, Any] = {}
        tls = settings.nats_tls()
        if settings.nats_user:
            auth = {"security": NatsUserPassword(settings.nats_user, settings.nats_password or "", ssl_context=tls)}
        elif tls is not None:
            auth = {"security": NatsSecurity(ssl_context=tls)}
        self.broker = NatsBroker(
            settings.servers,
            name=f"stratos-{name}",
            middlewares=middlewares,
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            graceful_timeout=10.0,
            # Replies under the user's own prefix: a server's credential may subscribe to nothing else's.
            inbox_prefix=inbox_prefix(settings.nats_user),
            log_level=logging.DEBUG,  # per-message "Received/Processed" lines only at debug level
            **auth,
        )
        for router in self.routers:
            router.attach(self.broker)
        self._background: list[asyncio.Task[None]] = []

    @property
    def nc(self) -> Client:
        connection = self.broker.connection
        if connection is None:
            raise RuntimeError("not connected")
        return connection

    @property
    def js(self) -> JetStreamContext:
        return self.nc.jetstream()

    def spawn(self, coro: Awaitable[None]) -> None:
        """Run a background loop (a heartbeat checker, a KV watcher) for the service's lifetime."""
        self._background.append(asyncio.ensure_future(coro))

    async def start(self) -> None:
        await self.broker.connect()
        if self.creates_infrastructure:
            await ensure_infrastructure(self.js, replicas=self.settings.replicas)
        else:
            await await_infrastructure(self.js, self.server_id)
        for hook in self.on_start:
            await hook(self)
        for router in self.routers:  # after the hooks: a signal may need what they bind (the inventory's records)
            await router.start_signals(self.nc)
        await self.broker.start()
        if self.meter_provider is not None:
            self.spawn(self._watch_lag())
        log.info("%s started (%s)", self.name, self.settings.nats_url)

    async def _watch_lag(self, every_s: float = 5.0) -> None:
        """Consumer lag for the metrics endpoint: pending and in-flight messages per durable consumer."""
        durables = {spec.durable for router in self.routers for spec in router.specs}
        while True:
            for durable in durables:
                with contextlib.suppress(Exception):
                    info = await self.js.consumer_info(EVENTS_STREAM, durable)
                    record_consumer_lag(self.name, durable, info.num_pending or 0, info.num_ack_pending or 0)
            await asyncio.sleep(every_s)

    async def stop(self) -> None:
        for task in self._background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for hook in self.on_stop:
            with contextlib.suppress(Exception):
                await hook(self)
        await self.broker.stop()
        if self.tracer_provider is not None:
            self.tracer_provider.force_flush()

    async def serve_forever(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()


def run_service(build: Callable[[], ServiceRuntime], settings: StratosSettings, name: str) -> None:
    """Entry point used by every service's `main.run`: logging first, so start-up failures are logged too."""
    setup_logging(name, settings.log_level, settings.log_format)
    runtime = build()
    asyncio.run(runtime.serve_forever())
