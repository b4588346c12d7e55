"""What the control-plane stages (teacher-eval, data-synth) share: the one factory that wires them and the event
that fails a job in their name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from stratos_shared.bus.handler import EventRouter
from stratos_shared.contracts.base import stable_id
from stratos_shared.contracts.events import JobFailed
from stratos_shared.jobcontext import StageResources
from stratos_shared.service import ServiceRuntime
from stratos_shared.settings import StratosSettings

S = TypeVar("S", bound=StratosSettings)


@dataclass(frozen=True)
class Stage(Generic[S]):
    """What a stage's handlers use besides their event: its settings, and the specs and artifacts it reads."""

    settings: S
    resources: StageResources


def failed(job_id: str, stage: str, reason: str) -> JobFailed:
    """The stage cannot succeed for this job: it fails, saying why in words its user can act on (one per stage)."""
    return JobFailed(event_id=stable_id(job_id, "failed", stage), job_id=job_id, stage=stage, reason=reason)


def build_stage(name: str, settings: S, build_events: Callable[[S, StageResources], EventRouter]) -> ServiceRuntime:
    """A stage service: settings -> telemetry -> broker -> its handlers, reading specs and artifacts once bound."""
    resources = StageResources()
    return ServiceRuntime(name, settings, [build_events(settings, resources)], on_start=[resources.bind])
