"""Inventory settings (environment prefix STRATOS_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from stratos_shared.settings import StratosSettings


class InventorySettings(StratosSettings):
    catalog: Path | None = Field(default=None, description="YAML server catalog loaded at start-up.")
    ppio_url: str | None = Field(default=None, description="PPIO-style GPU products endpoint to import servers from.")
    ppio_latency_ms: dict[str, float] = Field(
        default_factory=dict, description="Latency per region for PPIO products (the API has no latency field)."
    )
    heartbeat_timeout_s: float = Field(
        default=8.0,
        gt=0,
        description="A server whose workers have all been silent this long is down (with the 1 s check and 2 s "
        "beats: noticed within 10 s of its death).",
    )
    heartbeat_check_s: float = Field(default=1.0, gt=0, description="How often silent servers are looked for.")
