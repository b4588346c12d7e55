"""Wires the data-synth service: settings -> telemetry -> broker -> handlers (the shared stage factory)."""

from __future__ import annotations

from stratos_data_synth.handlers import build_events
from stratos_data_synth.settings import DataSynthSettings
from stratos_shared.service import ServiceRuntime, run_service
from stratos_shared.stage import build_stage

SERVICE = "data-synth"


def build(settings: DataSynthSettings | None = None) -> ServiceRuntime:
    return build_stage(SERVICE, settings or DataSynthSettings(), build_events)


def run() -> None:
    settings = DataSynthSettings()
    run_service(lambda: build(settings), settings, SERVICE)
