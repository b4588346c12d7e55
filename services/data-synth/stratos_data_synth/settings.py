"""Data-synth settings (environment prefix STRATOS_)."""

from __future__ import annotations

from pydantic import Field

from stratos_shared.settings import StratosSettings


class DataSynthSettings(StratosSettings):
    teacher_concurrency: int = Field(default=16, ge=1, le=1024, description="Requests in flight to the teacher.")
    teacher_timeout_s: float = Field(default=60.0, gt=0)
    teacher_max_retries: int = Field(default=4, ge=0, le=20)
    sampling_temperature: float = Field(default=0.8, ge=0, le=2, description="Temperature for the k samples.")
    progress_every: int = Field(default=25, ge=1, description="Publish DataProgress every this many questions.")
    fallback_to_injection: bool = Field(
        default=True,
        description="If alignment accepts too little data, retry once in injection mode instead of failing.",
    )
