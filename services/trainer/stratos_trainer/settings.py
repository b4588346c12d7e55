"""Trainer settings (environment prefix STRATOS_)."""

from __future__ import annotations

from pydantic import Field

from stratos_shared.settings import WorkerSettings


class TrainerSettings(WorkerSettings):
    max_deliver: int = Field(
        default=20,
        ge=1,
        le=100,
        description="Deliveries of one training job; a re-plan hands the job back, so this is higher than elsewhere.",
    )
    eval_samples: int = Field(default=100, ge=1, description="Held-out items for the before/after accuracy.")
    max_new_tokens: int = Field(default=192, ge=1, description="Generation budget when evaluating the student.")
    prescreen_items: int = Field(default=48, ge=1, description="Task items per candidate in pre-screening.")
    prescreen_shots: int = Field(default=3, ge=0, description="Verified teacher traces shown in context.")
    prescreen_tolerance: float = Field(default=0.05, ge=0, le=1)
