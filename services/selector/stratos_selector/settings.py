"""Selector settings (environment prefix STRATOS_)."""

from __future__ import annotations

from pydantic import Field

from stratos_shared.settings import StratosSettings


class SelectorSettings(StratosSettings):
    run_ledger: bool = Field(default=True, description="Also project job events into the jobs KV bucket.")
