"""OpenTelemetry metrics, exported for Prometheus on ``STRATOS_METRICS_PORT``.

Every service gets the same instruments from the bus layer (events handled,
by outcome; handling time per event type, i.e. stage durations; consumer
lag), plus a few domain ones (re-plans, teacher requests, training speed).
Instruments are created once at import on the global meter; they record
nothing until `setup_metrics` installs a provider.
"""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource

meter = metrics.get_meter("stratos")

events_handled = meter.create_counter(
    "stratos_events_handled",
    description="Events handled, by service, event type and outcome.",
)
handling_seconds = meter.create_histogram(
    "stratos_handling_seconds", unit="s", description="Time to handle one event: the duration of each stage's work."
)
jobs_finished = meter.create_counter("stratos_jobs_finished", description="Jobs that ended, by outcome.")
replans = meter.create_counter("stratos_replans", description="Jobs re-planned after a server went down.")
replan_seconds = meter.create_histogram(
    "stratos_replan_seconds", unit="s", description="From ServerDown received to the job's new ServerChosen published."
)
teacher_requests = meter.create_counter("stratos_teacher_requests", description="Teacher completions, by outcome.")
teacher_seconds = meter.create_histogram("stratos_teacher_seconds", unit="s", description="Teacher request latency.")
training_tokens_per_s = meter.create_histogram(
    "stratos_training_tokens_per_second", description="Training throughput reported with each progress event."
)

_consumer_lag: dict[tuple[str, str], tuple[int, int]] = {}


def record_consumer_lag(service: str, consumer: str, pending: int, ack_pending: int) -> None:
    _consumer_lag[(service, consumer)] = (pending, ack_pending)


def _observe_lag(options: CallbackOptions) -> Iterable[Observation]:
    for (service, consumer), (pending, ack_pending) in list(_consumer_lag.items()):
        yield Observation(pending, {"service": service, "consumer": consumer, "kind": "pending"})
        yield Observation(ack_pending, {"service": service, "consumer": consumer, "kind": "ack_pending"})


meter.create_observable_gauge(
    "stratos_consumer_lag",
    callbacks=[_observe_lag],
    description="Messages pending and in flight per consumer.",
)


def setup_metrics(service: str, port: int | None) -> MeterProvider | None:
    """Serve this process's metrics at http://0.0.0.0:<port>/metrics; None (no-op) when no port is set."""
    if not port:
        return None
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import start_http_server

    start_http_server(port)
    provider = MeterProvider(
        resource=Resource.create({"service.name": service}), metric_readers=[PrometheusMetricReader()]
    )
    metrics.set_meter_provider(provider)
    return provider
