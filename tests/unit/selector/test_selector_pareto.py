"""The fast Pareto filter against a brute-force O(N²) dominance oracle."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from stratos_selector.domain.pareto import pareto_indices, pareto_mask


def brute_front(points: np.ndarray) -> np.ndarray:
    """q dominates p iff q <= p everywhere and q < p somewhere."""
    le = np.all(points[None, :, :] <= points[:, None, :], axis=2)
    lt = np.any(points[None, :, :] < points[:, None, :], axis=2)
    return np.asarray(~np.any(le & lt, axis=1))


@st.composite
def point_sets(draw: st.DrawFn) -> np.ndarray:
    n = draw(st.integers(0, 300))
    d = draw(st.sampled_from([1, 2, 3, 3, 3, 4]))
    if draw(st.booleans()):  # small integer grids force ties and duplicates
        hi = draw(st.integers(0, 5))
        pts = draw(arrays(np.int64, (n, d), elements=st.integers(0, hi))).astype(np.float64)
    else:
        pts = draw(arrays(np.float64, (n, d), elements=st.floats(-1e6, 1e6, allow_nan=False, width=32)))
    if n and draw(st.booleans()):  # explicit duplicates of random rows
        extra = draw(st.lists(st.integers(0, n - 1), max_size=50))
        pts = np.concatenate((pts, pts[extra]))
    return pts


@settings(max_examples=300, deadline=None)
@given(point_sets())
def test_matches_brute_force(points: np.ndarray) -> None:
    assert np.array_equal(pareto_mask(points), brute_front(points))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["uniform", "plane", "correlated", "grid"]))
def test_large_sets_exercise_the_cull(seed: int, shape: str) -> None:
    rng = np.random.default_rng(seed)
    n = 1500
    if shape == "uniform":
        pts = rng.random((n, 3))
    elif shape == "plane":  # every point on the front
        xy = rng.random((n, 2))
        pts = np.column_stack((xy, 1 - xy.sum(axis=1)))
    elif shape == "correlated":
        hw = rng.integers(0, 30, n).astype(float)
        pts = np.column_stack((-hw, hw * rng.uniform(0.8, 1.2, n), rng.uniform(0, 100, n)))
    else:
        pts = rng.integers(0, 8, (n, 3)).astype(float)
    assert np.array_equal(pareto_mask(pts), brute_front(pts))


def test_duplicates_of_a_front_point_are_all_kept() -> None:
    pts = np.array([[1, 1, 1], [1, 1, 1], [2, 2, 2], [2, 2, 2], [0, 3, 3]], dtype=float)
    assert pareto_indices(pts).tolist() == [0, 1, 4]


def test_empty_and_single() -> None:
    assert pareto_mask(np.empty((0, 3))).tolist() == []
    assert pareto_mask(np.array([[5.0, 1.0, 2.0]])).tolist() == [True]


def test_agrees_with_paretoset_on_catalog_like_data() -> None:
    paretoset = __import__("pytest").importorskip("paretoset").paretoset
    rng = np.random.default_rng(7)
    hw = rng.integers(0, 40, 20_000).astype(float)
    pts = np.column_stack((-hw, np.exp(hw / 10) * rng.uniform(0.8, 1.2, hw.size), rng.uniform(1, 300, hw.size)))
    assert np.array_equal(pareto_mask(pts), paretoset(pts, sense=["min"] * 3, distinct=False))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(256, 1200), st.floats(0.0, 0.3), st.booleans())
def test_infinities_are_exact_with_the_grid_pre_pass(seed: int, n: int, share: float, negative: bool) -> None:
    """About `share` of each column infinite (n >= 256 runs the grid pre-pass): the brute force still agrees.

    Before ranks replaced non-finite columns, an `inf` in column 0 made the grid drop a non-dominated point.
    """
    rng = np.random.default_rng(seed)
    pts = rng.integers(0, 50, (n, 3)).astype(float)
    pts[rng.random((n, 3)) < share] = np.inf
    if negative:
        pts[rng.random((n, 3)) < share / 4] = -np.inf
    assert np.array_equal(pareto_mask(pts), brute_front(pts))


def test_an_infinite_column_keeps_its_only_non_dominated_point() -> None:
    pts = np.column_stack((np.full(300, np.inf), np.arange(300.0), np.arange(300.0)[::-1]))
    assert np.array_equal(pareto_mask(pts), brute_front(pts))
    assert pareto_mask(pts).all()


def test_nan_is_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="NaN"):
        pareto_mask(np.array([[1.0, np.nan, 2.0]] * 300))
