"""Column view of a server catalog, so every step after it is vectorised numpy.

Building it is the only per-server Python loop in a selection; callers that
select repeatedly from the same catalog (benches, re-planning) build it once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from operator import attrgetter

import numpy as np
from numpy.typing import NDArray
from stratos_shared.contracts.servers import ServerSpec

from stratos_selector.domain.estimates import effective_tflops, hardware_score, lookup_tflops

_cached_tflops = lru_cache(maxsize=1024)(lookup_tflops)


def _column(servers: Sequence[ServerSpec], name: str) -> NDArray[np.float64]:
    return np.fromiter(map(attrgetter(name), servers), dtype=np.float64, count=len(servers))


@dataclass(frozen=True)
class ServerTable:
    """Per-server columns derived once from the specs (index i is ``servers[i]``)."""

    servers: Sequence[ServerSpec]
    gpu_count: NDArray[np.float64]
    gpu_memory_gib: NDArray[np.float64]
    """Memory of one device: a GPU's, or the host's for CPU-only servers."""
    effective_tflops: NDArray[np.float64]
    hardware: NDArray[np.float64]
    cost_per_hour: NDArray[np.float64]
    latency_ms: NDArray[np.float64]
    capacity: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.servers)

    @classmethod
    def from_servers(cls, servers: Sequence[ServerSpec]) -> ServerTable:
        count = _column(servers, "gpu_count")
        gpu_mem = _column(servers, "gpu_memory_gb")
        host_mem = _column(servers, "memory_gb")
        cores = _column(servers, "cpu_cores")
        declared = _column(servers, "gpu_tflops")
        looked_up = np.fromiter(map(_cached_tflops, map(attrgetter("gpu_model"), servers)), np.float64, len(servers))
        tflops = np.where(declared > 0, declared, looked_up)
        gpu_less = count == 0
        device_mem = np.where(gpu_less, host_mem, gpu_mem)
        total_tflops = np.where(gpu_less, cores * 0.05, count * tflops)
        total_mem = np.where(gpu_less, host_mem, count * gpu_mem)
        return cls(
            servers=servers,
            gpu_count=count,
            gpu_memory_gib=device_mem,
            effective_tflops=effective_tflops(count, tflops, cores),
            hardware=hardware_score(total_tflops, total_mem),
            cost_per_hour=_column(servers, "cost_per_hour"),
            latency_ms=_column(servers, "latency_ms"),
            capacity=_column(servers, "capacity"),
        )

    def load_array(self, load: Mapping[str, int] | None) -> NDArray[np.float64]:
        """Jobs currently placed on each server (0 when unknown)."""
        if not load:
            return np.zeros(len(self), dtype=np.float64)
        return np.fromiter((load.get(s.id, 0) for s in self.servers), dtype=np.float64, count=len(self))
