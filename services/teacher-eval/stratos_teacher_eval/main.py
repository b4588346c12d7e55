"""Wires the teacher-eval service: settings -> telemetry -> broker -> handlers."""

from __future__ import annotations

from stratos_shared.jobcontext import StageResources
from stratos_shared.service import ServiceRuntime, run_service
from stratos_teacher_eval.handlers import build_events
from stratos_teacher_eval.settings import TeacherEvalSettings

SERVICE = "teacher-eval"


def build(settings: TeacherEvalSettings | None = None) -> ServiceRuntime:
    settings = settings or TeacherEvalSettings()
    resources = StageResources()
    return ServiceRuntime(SERVICE, settings, [build_events(settings, resources)], on_start=[resources.bind])


def run() -> None:
    settings = TeacherEvalSettings()
    run_service(lambda: build(settings), settings, SERVICE)
