"""Data-synth settings (environment prefix STRATOS_)."""

from __future__ import annotations

from pydantic import Field

from stratos_shared.settings import TeacherClientSettings


class DataSynthSettings(TeacherClientSettings):
    """The shared teacher client settings, and how data-synth samples and reports."""

    sampling_temperature: float = Field(default=0.8, ge=0, le=2, description="Temperature for the k samples.")
    progress_every: int = Field(default=25, ge=1, description="Publish DataProgress every this many questions.")
    fallback_to_injection: bool = Field(
        default=True,
        description="If alignment accepts too little data, retry once in injection mode instead of failing.",
    )
