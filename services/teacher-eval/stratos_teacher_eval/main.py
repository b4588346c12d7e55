"""Wires the teacher-eval service: settings -> telemetry -> broker -> handlers."""

from __future__ import annotations

from stratos_shared.bus.kv import TypedKV
from stratos_shared.bus.names import SPECS_BUCKET
from stratos_shared.contracts.job import JobSpec
from stratos_shared.service import ServiceRuntime, run_service
from stratos_shared.jobcontext import SpecReader
from stratos_teacher_eval.handlers import build_events
from stratos_teacher_eval.settings import TeacherEvalSettings

SERVICE = "teacher-eval"


def build(settings: TeacherEvalSettings | None = None) -> ServiceRuntime:
    settings = settings or TeacherEvalSettings()
    specs = SpecReader()

    async def start(runtime: ServiceRuntime) -> None:
        specs.kv = TypedKV(await runtime.js.key_value(SPECS_BUCKET), JobSpec)

    return ServiceRuntime(SERVICE, settings, [build_events(settings, specs)], on_start=[start])


def run() -> None:
    settings = TeacherEvalSettings()
    run_service(lambda: build(settings), settings.log_level, SERVICE)
