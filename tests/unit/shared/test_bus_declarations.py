"""A service's EventRouter declarations are its whole wiring map: publishing outside them is an error, and no
service subscribes or publishes around them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from stratos_shared.bus.handler import EventRouter, HandlerContext, bind
from stratos_shared.contracts.events import DataProgress, DataReady, JobCancelRequested, JobFailed
from stratos_shared.errors import Redeliver, StratosError, UndeclaredEventError
from stratos_shared.tasks.errors import TaskError
from stratos_shared.teacher.errors import TeacherError

ROOT = Path(__file__).parents[3]


class Broker:
    """Stands in for the broker: what `publish_event` would send."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def publish(self, data: bytes, *, subject: str, headers: dict[str, str], stream: str, **options: Any) -> None:
        self.sent.append(subject)


def context(broker: Broker, declared: tuple[type, ...]) -> HandlerContext:
    return HandlerContext(
        broker=broker,  # type: ignore[arg-type]
        service="data-synth",
        delivery=1,
        subject="stratos.evt.teacher.chosen",
        declared=declared,
        handler="on_teacher_chosen",
    )


async def test_publishing_an_undeclared_event_raises_and_sends_nothing() -> None:
    broker = Broker()
    ctx = context(broker, (DataReady, JobFailed))
    with pytest.raises(UndeclaredEventError, match=r"may publish only what it declares.*not DataProgress"):
        await ctx.publish(DataProgress(job_id="j", done=1, total=2, accepted=1))
    assert broker.sent == []
    await ctx.publish(JobFailed(job_id="j", stage="data-synth", reason="too little data"))
    assert broker.sent == [f"{JobFailed.SUBJECT}.control"]


async def test_a_declared_publisher_refuses_other_events() -> None:
    events = EventRouter("inventory")
    events.broker = Broker()  # type: ignore[assignment]
    monitor = events.publisher("monitor", [JobFailed])
    assert events.publishes == {JobFailed}
    with pytest.raises(UndeclaredEventError):
        await monitor.publish(JobCancelRequested(job_id="j"))
    await monitor.publish(JobFailed(job_id="j", stage="x", reason="y"))


async def test_bind_keeps_the_handler_name_and_passes_its_dependencies() -> None:
    async def on_cancel(deps: list[str], event: JobCancelRequested, ctx: HandlerContext) -> None:
        """Doc."""
        deps.append(event.job_id)

    seen: list[str] = []
    handler = bind(on_cancel, seen)
    assert (handler.__name__, handler.__doc__) == ("on_cancel", "Doc.")
    await handler(JobCancelRequested(job_id="j"), context(Broker(), ()))
    assert seen == ["j"]


def test_every_error_stratos_raises_on_purpose_is_a_stratos_error() -> None:
    for error in (TeacherError, TaskError, Redeliver, UndeclaredEventError):
        assert issubclass(error, StratosError), error


AROUND = re.compile(r"publish_event\(|\.subscribe\(|broker\.publish\(|\bnc\.publish\(")


def test_services_publish_and_subscribe_only_through_their_declarations() -> None:
    """Handlers (`publishes`), signals and publishers on the EventRouter are how a service talks: the permission
    test reads them, so a raw subscribe or publish in a service would be a hole in what it checks."""
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted((ROOT / "services").glob("*/stratos_*/**/*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if AROUND.search(line)
    ]
    assert not found, found
