"""Shared builders for the selector tests."""

from __future__ import annotations

from typing import Any

from stratos_shared.contracts.job import JobSpec


def make_job(
    *,
    params_b: float = 1.5,
    method: str = "lora-sft",
    latency_slo_ms: float = 1000.0,
    budget_usd: float = 100.0,
    strategy: str = "pareto",
    name: str = "job-1",
    **selection: Any,
) -> JobSpec:
    return JobSpec.model_validate(
        {
            "name": name,
            "task": {"kind": "math", "size": 1000},
            "teachers": [{"name": "t", "base_url": "http://127.0.0.1:8100/v1", "model": "m"}],
            "students": [{"name": "s", "model": "tiny:tiny-1m", "params_b": params_b}],
            "training": {"method": method},
            "constraints": {"latency_slo_ms": latency_slo_ms, "budget_usd": budget_usd},
            "selection": {"strategy": strategy, **selection},
        }
    )
