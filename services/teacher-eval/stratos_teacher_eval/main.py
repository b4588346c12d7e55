"""Wires the teacher-eval service: settings -> telemetry -> broker -> handlers (the shared stage factory)."""

from __future__ import annotations

from stratos_shared.service import ServiceRuntime, run_service
from stratos_shared.stage import build_stage
from stratos_teacher_eval.handlers import build_events
from stratos_teacher_eval.settings import TeacherEvalSettings

SERVICE = "teacher-eval"


def build(settings: TeacherEvalSettings | None = None) -> ServiceRuntime:
    return build_stage(SERVICE, settings or TeacherEvalSettings(), build_events)


def run() -> None:
    settings = TeacherEvalSettings()
    run_service(lambda: build(settings), settings, SERVICE)
