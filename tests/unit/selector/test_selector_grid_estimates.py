"""Grid normalisation/clipping and the resource estimates."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from selector_helpers import make_job

from stratos_selector.domain.estimates import lookup_tflops, workload_for
from stratos_selector.domain.grid import cells, normalise, normalise_objectives

finite = st.floats(-1e9, 1e9, allow_nan=False)


@given(arrays(np.float64, st.integers(0, 200), elements=finite), st.integers(1, 50), st.booleans())
def test_every_point_lands_in_the_grid(values: np.ndarray, k: int, maximise: bool) -> None:
    norm = normalise(values, maximise=maximise)
    assert norm.shape == values.shape
    assert np.all((norm >= 0) & (norm <= 1))
    idx = cells(norm, k)
    assert idx.shape == values.shape and np.all((idx >= 0) & (idx < k))


def test_boundary_and_degenerate() -> None:
    assert cells(np.array([0.0, 0.5, 1.0]), 10).tolist() == [0, 5, 9]
    assert normalise(np.array([3.0, 3.0])).tolist() == [0.0, 0.0]
    assert normalise(np.array([1.0, 3.0]), maximise=True).tolist() == [1.0, 0.0]
    m = normalise_objectives(np.array([1.0, 2.0]), np.array([5.0, 5.0]), np.array([0.0, 10.0]))
    assert m.tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    with pytest.raises(ValueError):
        cells(np.array([0.5]), 0)


def test_tflops_table() -> None:
    assert lookup_tflops("A100-80G") == 312
    assert lookup_tflops("nvidia h100 sxm") == 989
    assert lookup_tflops("A10G") == 70
    assert lookup_tflops("none") == 0
    assert lookup_tflops("Mystery-9000") > 0


@given(st.floats(0.001, 70), st.floats(1.01, 3))
def test_memory_and_time_grow_with_the_student(params: float, factor: float) -> None:
    small = workload_for(make_job(params_b=params))
    big = workload_for(make_job(params_b=params * factor))
    assert big.memory_gib > small.memory_gib and big.flops > small.flops


def test_full_sft_needs_more_than_lora_and_sharding_helps() -> None:
    lora, full = workload_for(make_job(params_b=7)), workload_for(make_job(params_b=7, method="sft"))
    assert full.memory_gib > 4 * lora.memory_gib > 0
    one, eight = full.memory_per_gpu_gib(np.array([1.0, 8.0]))
    assert eight < one
    # 7B full SFT: ~104 GiB of states alone
    assert 100 < full.states_gib < 110
