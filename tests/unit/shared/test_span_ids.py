"""Span ids stay unique when a training library reseeds Python's global `random`."""

from __future__ import annotations

import random

from stratos_shared.telemetry import EntropyIdGenerator


def test_ids_do_not_repeat_after_reseeding_random() -> None:
    generator = EntropyIdGenerator()
    runs = []
    for _ in range(3):
        random.seed(0)  # what transformers.set_seed does at the start of every training run
        runs.append([generator.generate_span_id() for _ in range(50)])
    ids = [i for run in runs for i in run]
    assert len(set(ids)) == len(ids)
