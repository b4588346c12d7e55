"""The objective space shown by `stratos servers --pareto` marks exactly the non-dominated feasible servers."""

from __future__ import annotations

from pathlib import Path

from stratos_selector.domain.catalog import generate_catalog
from stratos_selector.domain.view import objective_space
from stratos_shared.contracts.job import JobSpec

ROOT = Path(__file__).parents[3]


def test_front_is_the_non_dominated_feasible_set() -> None:
    job = JobSpec.from_yaml(ROOT / "examples" / "math-alignment.yaml")
    points = objective_space(generate_catalog(300, seed=3), job)
    feasible = [p for p in points if p.feasible]
    assert feasible and not any(p.on_front for p in points if not p.feasible)

    def dominates(a, b) -> bool:  # minimise (-H, C, L)
        x, y = (-a.hardware, a.cost_usd, a.latency_ms), (-b.hardware, b.cost_usd, b.latency_ms)
        return all(i <= j for i, j in zip(x, y, strict=True)) and x != y

    for p in feasible:
        assert p.on_front == (not any(dominates(q, p) for q in feasible)), p.server.id
