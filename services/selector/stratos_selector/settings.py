"""Selector settings (environment prefix STRATOS_)."""

from __future__ import annotations

from pydantic import Field

from stratos_shared.settings import StratosSettings


class SelectorSettings(StratosSettings):
    run_ledger: bool = Field(
        default=True,
        description="Also project job events into the jobs KV bucket and assign work to the placed server's workers.",
    )
    require_workers: bool = Field(
        default=True,
        description="Place jobs only on servers whose workers heartbeat (catalog servers without workers cannot "
        "train or serve anything); false places on any server that is up (capacity tests with stand-in workers).",
    )
