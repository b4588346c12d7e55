"""The knobs `bench/robustness.py` turns to show a test does not hang on one numeric path of training.

A learning test trains with ``SEED`` (data order, sampled items, initialisation of adapters) and its worker
processes with ``THREADS`` torch threads; CPU kernels are chosen by ``ATEN_CPU_CAPABILITY``, which torch reads
itself. The defaults are what `make test` runs.
"""

from __future__ import annotations

import json
import os

SEED = int(os.environ.get("STRATOS_TEST_SEED", "0"))
"""Added to every seed a learning test uses (0: the suite's own seeds)."""

THREADS = os.environ.get("OMP_NUM_THREADS", "1")
"""Torch threads for each training worker process a test starts (one per process on two cores by default)."""


def record(name: str, value: object) -> None:
    """Note a measurement for `bench/robustness.py` (a no-op unless ``STRATOS_TEST_METRICS`` names a file)."""
    path = os.environ.get("STRATOS_TEST_METRICS")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"name": name, "value": value}) + "\n")
