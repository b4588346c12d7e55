"""Wires the data-synth service: settings -> telemetry -> broker -> handlers."""

from __future__ import annotations

from stratos_data_synth.handlers import build_events
from stratos_data_synth.settings import DataSynthSettings
from stratos_shared.jobcontext import StageResources
from stratos_shared.service import ServiceRuntime, run_service

SERVICE = "data-synth"


def build(settings: DataSynthSettings | None = None) -> ServiceRuntime:
    settings = settings or DataSynthSettings()
    resources = StageResources()
    return ServiceRuntime(SERVICE, settings, [build_events(settings, resources)], on_start=[resources.bind])


def run() -> None:
    settings = DataSynthSettings()
    run_service(lambda: build(settings), settings, SERVICE)
