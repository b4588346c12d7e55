"""Teacher-eval settings (environment prefix STRATOS_)."""

from __future__ import annotations

from pydantic import Field

from stratos_shared.settings import StratosSettings


class TeacherEvalSettings(StratosSettings):
    teacher_concurrency: int = Field(default=16, ge=1, le=1024, description="Requests in flight per teacher.")
    teacher_timeout_s: float = Field(default=60.0, gt=0, description="Per-request timeout.")
    teacher_max_retries: int = Field(default=3, ge=0, le=20)
