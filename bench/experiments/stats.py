"""Small statistics the experiments report: rank correlation and accuracy intervals."""

from __future__ import annotations

import math
from collections.abc import Sequence

from stratos_teacher_eval.domain import wilson_interval


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing their average rank (what Spearman's rho needs for tied scores)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            out[order[k]] = (start + end) / 2 + 1
        start = end + 1
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho (Pearson correlation of tie-averaged ranks); None when either side is constant.

    A constant side has no ranking to agree with, so a number would be meaningless, not zero.
    """
    if len(x) != len(y):
        raise ValueError(f"spearman needs equal lengths, got {len(x)} and {len(y)}")
    if len(x) < 2:
        return None
    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def interval(accuracy: float, n: int) -> tuple[float, float]:
    """95% Wilson interval of an accuracy measured on ``n`` items (the same one teacher-eval reports)."""
    return wilson_interval(round(accuracy * n), n)


def pct(value: float) -> str:
    return f"{value:.1%}"


def pct_ci(accuracy: float, n: int) -> str:
    """``38.1% [29.0, 48.2]``: the accuracy with its 95% interval, for tables."""
    low, high = interval(accuracy, n)
    return f"{accuracy:.1%} [{low:.1%}, {high:.1%}]"
