"""Teacher evaluation rules, free of messaging: sampling, intervals, choice of teacher and mode.

Choice rule: the highest accuracy wins; ties (within 1e-9) go to the lower
evaluation cost, then the lower median latency, then the name. A teacher that
could not be scored at all (unreachable, every request failed) is never chosen.
Mode: knowledge *alignment* when the chosen teacher's accuracy is at least
tau (default 0.5), *injection* otherwise.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Sequence

from stratos_shared.contracts.events import DistillationMode, TeacherScore
from stratos_shared.tasks import Example


def stratified_sample(examples: Sequence[Example], size: int, seed: int) -> list[Example]:
    """`size` examples spread over strata in proportion to their sizes (at least one per stratum when possible)."""
    if size >= len(examples):
        return list(examples)
    rng = random.Random(seed)
    strata: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        strata[example.stratum].append(example)
    quotas = {name: max(1, round(size * len(items) / len(examples))) for name, items in strata.items()}
    while sum(quotas.values()) > size:
        largest = max(quotas, key=lambda name: quotas[name])
        quotas[largest] -= 1
    chosen: list[Example] = []
    for name in sorted(strata):
        chosen += rng.sample(strata[name], min(quotas[name], len(strata[name])))
    remaining = [e for e in examples if e not in chosen]
    chosen += rng.sample(remaining, size - len(chosen)) if len(chosen) < size else []
    return sorted(chosen, key=lambda e: e.id)


def wilson_interval(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a proportion (well behaved at 0% and 100%)."""
    if total == 0:
        return 0.0, 1.0
    p = correct / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    margin = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - margin), min(1.0, centre + margin)


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[index]


def choose_teacher(scores: Sequence[TeacherScore]) -> TeacherScore | None:
    usable = [s for s in scores if s.graded > 0 and s.error is None]
    if not usable:
        return None
    return min(
        usable,
        key=lambda s: (
            -round(s.accuracy, 9),
            s.cost_usd,
            s.latency_p50_ms if s.latency_p50_ms is not None else 1e18,
            s.name,
        ),
    )


def choose_mode(accuracy: float, tau: float) -> DistillationMode:
    return "alignment" if accuracy >= tau else "injection"
