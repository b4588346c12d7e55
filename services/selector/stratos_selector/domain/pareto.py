"""Exact non-dominated set for minimisation objectives (built for 3-D, correct for any d ≥ 1).

Phase 0 (3-D, ≥ ``GRID_MIN_POINTS`` points), **grid pre-pass** (linear, vectorised, exact-safe):
the two columns other than the fewest-valued one are cut into a ``B×B`` grid; each cell keeps the
least fewest-valued objective of its points and a 2-D prefix minimum drops every point that a point
of a strictly lower-left cell dominates (see `_grid_filter`). On catalog data it removes 95–99 % of
the points without sorting them; the exact phases below run on the survivors.

Two phases, both exact (when one objective takes few distinct values, as the hardware
score of a real catalog does, phase 1 is skipped and phase 2 runs one vectorised step
per distinct value instead of one Python step per point):

1. **Cull** (vectorised): the ``MAX_PIVOTS`` points of smallest normalised sum
   are good pivots (the smallest is always non-dominated: a dominator would
   have a smaller sum). In that order, each surviving pivot drops every
   survivor it strictly dominates in one numpy pass. On realistic catalogs a
   few pivots remove almost everything; the phase stops as soon as a pivot
   stops paying for itself (it removes fewer than ``1/64`` of the survivors).
2. **Sweep** (exact, O(m log m)) on the m survivors: sort lexicographically,
   collapse identical rows, and sweep keeping the 2-D staircase of
   (obj1, obj2) of the points seen so far (lists + bisect). A point is dominated
   iff some earlier point of the lexicographic order has obj1 ≤ and obj2 ≤ — the
   earlier order already guarantees obj0 ≤, and identical rows were collapsed,
   so "≤ everywhere" means "dominates".

Dropping a point in phase 1 never hides a dominator from phase 2: whatever a
dropped point dominates, its pivot dominates too (transitivity).

Duplicates: identical points do not dominate each other, so all copies of a
non-dominated point are kept (and all copies of a dominated one dropped).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from itertools import pairwise

import numpy as np
from numpy.typing import NDArray

MAX_PIVOTS = 128
MIN_PIVOT_YIELD = 1 / 64
SMALL = 64
PROBE = 4096
PROBE_GROUPS = 256
"""If the first PROBE rows hold at most this many distinct values of a column, sweep by groups directly."""
GRID_MIN_POINTS = 256
"""Below this many points the grid pre-pass costs more than it saves."""
GRID_MAX_BINS = 256
"""Bins per axis of the grid pre-pass (a 256×256 grid of minima: 0.5 MiB, about a millisecond)."""
GROUP_COST_POINTS = 48
"""A vectorised per-group step costs about as much as this many per-point Python steps."""
"""Below this many survivors the cull's per-pivot overhead isn't worth it."""


def pareto_mask(points: NDArray[np.floating] | NDArray[np.integer]) -> NDArray[np.bool_]:
    """Boolean mask of the non-dominated rows of ``points`` (shape (n, d)), all objectives minimised.

    q dominates p iff q ≤ p in every objective and q < p in at least one. Infinities are ordinary values
    (``inf`` is worse than any finite value, and equal to itself); NaN has no order and is refused.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2:
        raise ValueError(f"points must be 2-D (n, d), got shape {pts.shape}")
    if not np.isfinite(pts).all():
        pts = _finite_ranks(pts)
    n = pts.shape[0]
    mask = np.zeros(n, dtype=np.bool_)
    if n == 0:
        return mask
    if pts.shape[1] == 3 and n > SMALL:
        pts = _few_values_first(pts)
        kept = _grid_filter(pts)
        if kept is not None:
            mask[kept[_front_3d(pts[kept])]] = True
            return mask
        mask[_front_3d(pts)] = True
        return mask
    survivors = _cull(pts)
    front = survivors[_sweep(pts[survivors])]
    mask[front] = True
    return mask


def _finite_ranks(pts: NDArray[np.float64]) -> NDArray[np.float64]:
    """Each column replaced by its dense rank: the same order and ties, so the same dominance, all finite
    (the grid pre-pass bins by value and cannot place an infinity)."""
    if np.isnan(pts).any():
        raise ValueError("objective values must not be NaN: a NaN is neither better nor worse than anything")
    ranks = np.empty_like(pts)
    for j in range(pts.shape[1]):
        ranks[:, j] = np.unique(pts[:, j], return_inverse=True)[1].reshape(-1)
    return ranks


def _front_3d(pts: NDArray[np.float64]) -> NDArray[np.intp]:
    """Exact front (local indices) of 3-D points whose column 0 is the one with the fewest distinct values."""
    if len(pts) > SMALL and np.unique(pts[:PROBE, 0]).size <= PROBE_GROUPS:
        return _sweep(pts)  # few distinct obj0: the vectorised group sweep needs no cull
    survivors = _cull(pts)
    return survivors[_sweep(pts[survivors])]


def _grid_filter(pts: NDArray[np.float64]) -> NDArray[np.intp] | None:
    """Indices of the points that survive a linear-time, exact-safe pre-pass (a superset of the front).

    Columns 1 and 2 are cut into ``B`` equal bins each; every (bin1, bin2) cell keeps the minimum of
    column 0 over its points, and a 2-D prefix minimum gives, for each cell, the least column 0 among
    the cells strictly below-left of it. A point in such a cell with that minimum ≤ its own column 0
    is dominated: the point holding the minimum is strictly smaller in columns 1 and 2 (binning is
    monotone, so a strictly lower bin means a strictly smaller value) and no larger in column 0.
    Nothing non-dominated is dropped, and whatever a dropped point dominates, a survivor dominates
    too (dominance is transitive and the front survives), so the exact pass on the survivors is exact.
    Returns None when the pass is not worth running (few points, or non-finite spans).
    """
    n = len(pts)
    if n < GRID_MIN_POINTS:
        return None
    bins = int(min(GRID_MAX_BINS, max(16, 2 * np.sqrt(n))))
    cell = np.zeros(n, dtype=np.intp)
    for j in (1, 2):
        col = pts[:, j]
        lo, hi = float(col.min()), float(col.max())
        scale = bins / (hi - lo) if hi > lo else 0.0
        if not np.isfinite(scale) or not np.isfinite(lo):
            return None
        b = ((col - lo) * scale).astype(np.intp)
        np.minimum(b, bins - 1, out=b)
        cell = cell * bins + b
    x = pts[:, 0]
    best = np.full(bins * bins, np.inf)
    np.minimum.at(best, cell, x)
    grid = best.reshape(bins, bins)
    np.minimum.accumulate(grid, axis=0, out=grid)
    np.minimum.accumulate(grid, axis=1, out=grid)
    below_left = np.full((bins + 1, bins + 1), np.inf)
    below_left[1:, 1:] = grid
    dominated = below_left[:bins, :bins].reshape(-1)[cell] <= x
    return np.flatnonzero(~dominated)


def pareto_indices(points: NDArray[np.floating] | NDArray[np.integer]) -> NDArray[np.intp]:
    """Indices (ascending) of the non-dominated rows."""
    return np.flatnonzero(pareto_mask(points))


def _few_values_first(pts: NDArray[np.float64]) -> NDArray[np.float64]:
    """Reorder columns so the one with the fewest distinct values (in a probe) comes first.

    Dominance does not depend on the column order, and the group sweep runs one step per distinct
    value of the first column (the hardware score of a catalog takes a few dozen values).
    """
    distinct = [np.unique(pts[:PROBE, j]).size for j in range(pts.shape[1])]
    first = int(np.argmin(distinct))
    if first == 0:
        return pts
    return pts[:, [first, *[j for j in range(pts.shape[1]) if j != first]]]


def _lex_order(pts: NDArray[np.float64]) -> tuple[NDArray[np.intp], NDArray[np.bool_]]:
    """Lexicographic order by column 0, then 1, ..., and which sorted rows start a run of identical rows.

    Each column becomes its dense rank (one unstable, SIMD-fast sort each) and the ranks are packed
    into one int64 key, so a single unstable argsort gives the exact lexicographic order; equal keys
    are exactly identical rows. np.lexsort (stable, several passes) is the fallback when the packed
    key would overflow.
    """
    m, d = pts.shape
    codes, radix = [], 1
    for j in range(d):
        values, code = np.unique(pts[:, j], return_inverse=True)
        codes.append(code.reshape(-1))
        radix *= max(1, values.size)
    if radix < 2**62:
        key = codes[0].astype(np.int64)
        for j in range(1, d):
            key = key * int(codes[j].max() + 1) + codes[j]
        order = np.argsort(key)
        sorted_key = key[order]
        starts = np.ones(m, dtype=np.bool_)
        starts[1:] = sorted_key[1:] != sorted_key[:-1]
        return order, starts
    order = np.lexsort(pts.T[::-1])
    srt = pts[order]
    starts = np.ones(m, dtype=np.bool_)
    starts[1:] = np.any(srt[1:] != srt[:-1], axis=1)
    return order, starts


def _cull(pts: NDArray[np.float64]) -> NDArray[np.intp]:
    """Indices (ascending) of the points no pivot dominates: a superset of the front."""
    n = pts.shape[0]
    if n <= SMALL:
        return np.arange(n)
    lo = pts.min(axis=0)
    span = pts.max(axis=0) - lo
    span[span == 0] = 1.0
    total = ((pts - lo) / span).sum(axis=1)
    pool_size = min(n, MAX_PIVOTS)
    pool = np.argpartition(total, pool_size - 1)[:pool_size]
    pool = pool[np.argsort(total[pool], kind="stable")]  # only the pivot pool is sorted, not all n
    alive = np.arange(n)
    dead = np.zeros(n, dtype=np.bool_)
    cols = [pts[:, j].copy() for j in range(pts.shape[1])]
    for p in pool.tolist():
        if dead[p]:
            continue
        pivot = pts[p]
        weakly = cols[0] >= pivot[0]
        strictly = cols[0] > pivot[0]
        for c, v in zip(cols[1:], pivot[1:], strict=True):
            weakly &= c >= v
            strictly |= c > v
        dominated = weakly & strictly
        removed = int(np.count_nonzero(dominated))
        if removed:
            dead[alive[dominated]] = True
            keep = ~dominated
            alive = alive[keep]
            cols = [c[keep] for c in cols]
        if removed < alive.size * MIN_PIVOT_YIELD or alive.size <= SMALL:
            break
    return alive


def _sweep(pts: NDArray[np.float64]) -> NDArray[np.intp]:
    """Exact front of ``pts`` (local indices), by lexicographic sort and a 2-D staircase."""
    m, d = pts.shape
    if m == 0:
        return np.empty(0, dtype=np.intp)
    order, new_group = _lex_order(pts)
    uniq = pts[order[new_group]]
    if d == 1:
        keep_unique = np.zeros(len(uniq), dtype=np.bool_)
        keep_unique[0] = True
    elif d == 2:
        best = np.minimum.accumulate(uniq[:, 1])
        keep_unique = np.ones(len(uniq), dtype=np.bool_)
        keep_unique[1:] = uniq[1:, 1] < best[:-1]
    elif d == 3:
        group_starts = np.flatnonzero(np.diff(uniq[:, 0])) + 1
        if (group_starts.size + 1) * GROUP_COST_POINTS <= len(uniq):
            keep_unique = _group_sweep(uniq, group_starts)
        else:
            keep_unique = _staircase_sweep(uniq[:, 1].tolist(), uniq[:, 2].tolist())
    else:
        keep_unique = _brute_sweep(uniq)
    group_of = np.cumsum(new_group) - 1
    return np.sort(order[keep_unique[group_of]])


def _staircase_sweep(ys: list[float], zs: list[float]) -> NDArray[np.bool_]:
    """For lexicographically sorted distinct 3-D points given by (y, z): which no earlier point dominates."""
    stair_y: list[float] = []  # ascending
    stair_negz: list[float] = []  # ascending, i.e. z strictly descending along the staircase
    keep = np.zeros(len(ys), dtype=np.bool_)
    for i, (y, z) in enumerate(zip(ys, zs, strict=True)):
        at = bisect_right(stair_y, y)
        if at and -stair_negz[at - 1] <= z:
            continue  # an earlier point has y' ≤ y and z' ≤ z (and x' ≤ x by the order)
        keep[i] = True
        start = bisect_left(stair_y, y)
        stop = bisect_right(stair_negz, -z, lo=start)  # drop stair points with y' ≥ y and z' ≥ z
        stair_y[start:stop] = [y]
        stair_negz[start:stop] = [-z]
    return keep


def _group_sweep(uniq: NDArray[np.float64], group_starts: NDArray[np.intp]) -> NDArray[np.bool_]:
    """The staircase sweep one run of equal obj0 at a time, vectorised (few distinct obj0 values).

    Earlier groups have strictly smaller obj0, so a point is dominated by them iff the staircase
    holds (y', z') ≤ (y, z). Within a group (rows distinct, equal obj0, sorted by y then z) a point is
    dominated iff an earlier one has z' ≤ z.
    """
    ys, zs = uniq[:, 1], uniq[:, 2]
    keep = np.zeros(len(uniq), dtype=np.bool_)
    stair_y = np.empty(0)
    stair_z = np.empty(0)
    bounds = np.concatenate(([0], group_starts, [len(uniq)])).tolist()
    for a, b in pairwise(bounds):
        gy, gz = ys[a:b], zs[a:b]
        minimal = np.ones(b - a, dtype=np.bool_)
        minimal[1:] = gz[1:] < np.minimum.accumulate(gz)[:-1]
        ok = minimal
        if stair_y.size:
            at = np.searchsorted(stair_y, gy, side="right") - 1
            ok = minimal & ((at < 0) | (stair_z[np.maximum(at, 0)] > gz))
        keep[a:b] = ok
        stair_y, stair_z = _staircase(np.concatenate((stair_y, gy[minimal])), np.concatenate((stair_z, gz[minimal])))
    return keep


def _staircase(y: NDArray[np.float64], z: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """2-D minimal points of (y, z): y ascending, z strictly descending."""
    order = np.lexsort((z, y))
    y, z = y[order], z[order]
    minimal = np.ones(y.size, dtype=np.bool_)
    minimal[1:] = z[1:] < np.minimum.accumulate(z)[:-1]
    return y[minimal], z[minimal]


def _brute_sweep(uniq: NDArray[np.float64]) -> NDArray[np.bool_]:
    """d ≥ 4 fallback: each distinct point against the earlier ones in lexicographic order."""
    keep = np.ones(len(uniq), dtype=np.bool_)
    for i in range(1, len(uniq)):
        earlier = uniq[:i][keep[:i]]
        keep[i] = not bool(np.any(np.all(earlier <= uniq[i], axis=1)))
    return keep


class ShrinkingFront:
    """`pareto_mask` for a point set that only loses points from one call to the next (a batch of selections for
    one job kind, where servers fill up): the front is derived from the previous one, not from every point.

    Exact: a point of the smaller set that was not on the previous front was dominated only by removed front
    points (any other dominator would still dominate it), so the new front is the front of the previous front's
    survivors and the points the removed front points dominated. A call that is not such a shrink (other rows,
    other values) computes the front from scratch.
    """

    def __init__(self) -> None:
        self._rows: NDArray[np.intp] | None = None
        self._points = np.empty((0, 0))
        self._front = np.empty(0, dtype=np.bool_)

    def mask(self, rows: NDArray[np.intp], points: NDArray[np.float64]) -> NDArray[np.bool_]:
        """`pareto_mask(points)`, where row i of `points` is the point of id `rows[i]` (ids ascending)."""
        front = self._derived(rows, points)
        if front is None:
            front = pareto_mask(points)
        self._rows, self._points, self._front = rows, points, front
        return front

    def _derived(self, rows: NDArray[np.intp], points: NDArray[np.float64]) -> NDArray[np.bool_] | None:
        before = self._rows
        if before is None or len(rows) > len(before):
            return None
        kept = np.isin(before, rows, assume_unique=True)
        if not (np.array_equal(before[kept], rows) and np.array_equal(self._points[kept], points)):
            return None
        lost = self._points[~kept & self._front]
        if len(lost) == 0:
            return self._front[kept]  # only dominated points left: the front is the same
        kept_front = self._front[kept]
        # What the remaining front dominates stays dominated; what is left cannot dominate the remaining front
        # (a removed point dominated it, and so would dominate that front point), only one another.
        fresh = np.flatnonzero(_dominated_by_any(points, lost) & ~kept_front)
        fresh = fresh[~_dominated_by_any(points[fresh], points[kept_front])]
        front = kept_front.copy()
        front[fresh[pareto_mask(points[fresh])]] = True
        return front


def _dominated_by_any(points: NDArray[np.float64], others: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Which of `points` some row of `others` dominates (one broadcast: both are small here)."""
    if len(points) == 0 or len(others) == 0:
        return np.zeros(len(points), dtype=np.bool_)
    p, o = points[:, None, :], others[None, :, :]
    mask: NDArray[np.bool_] = (np.all(o <= p, axis=2) & np.any(o < p, axis=2)).any(axis=1)
    return mask
