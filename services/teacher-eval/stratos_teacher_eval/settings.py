"""Teacher-eval settings (environment prefix STRATOS_): the shared teacher client settings, nothing of its own."""

from __future__ import annotations

from stratos_shared.settings import TeacherClientSettings


class TeacherEvalSettings(TeacherClientSettings):
    """Teacher concurrency, timeout and retries, as data-synth has them (`TeacherClientSettings`)."""
