"""Normalisation to [0, 1] minimisation objectives and the Pareto Front Grid cells.

Normalisation is min-max over the candidate set, so the grid adapts to the
servers actually available rather than to fixed units. An objective on which
every candidate is equal carries no information and maps to 0 (the best), so it
never pushes anyone into a worse cell.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def normalise(values: NDArray[np.float64], *, maximise: bool = False) -> NDArray[np.float64]:
    """Min-max to [0, 1] with 0 the best; a maximised objective is flipped (1 - norm)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return values.copy()
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros_like(values)
    norm = np.clip((values - lo) / (hi - lo), 0.0, 1.0)
    return 1.0 - norm if maximise else norm


def normalise_objectives(
    hardware: NDArray[np.float64], cost: NDArray[np.float64], latency: NDArray[np.float64]
) -> NDArray[np.float64]:
    """(n, 3) minimisation matrix in the column order (hardware, cost, latency); H is maximised."""
    return np.column_stack((normalise(hardware, maximise=True), normalise(cost), normalise(latency)))


def cells(normalised: NDArray[np.float64], k: int) -> NDArray[np.int64]:
    """Grid cell per point and axis: floor(v·k) clipped to [0, k-1], so v = 1.0 lands in cell k-1, never dropped."""
    if k < 1:
        raise ValueError("grid k must be >= 1")
    idx = np.floor(np.asarray(normalised, dtype=np.float64) * k).astype(np.int64)
    return np.clip(idx, 0, k - 1)
