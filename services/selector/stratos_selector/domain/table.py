"""Column view of a server catalog, so every step after it is vectorised numpy.

Building it is the only per-server Python loop in a selection (one pass that reads
every numeric field of a spec at once); callers that select repeatedly from the
same catalog (benches, the selector service per inventory version) build it once,
and `take` cuts a sub-table (e.g. the servers that are up) without touching the specs.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from itertools import chain
from operator import attrgetter

import numpy as np
from numpy.typing import NDArray

from stratos_selector.domain.estimates import effective_tflops, hardware_score, lookup_tflops
from stratos_shared.contracts.servers import ServerSpec

_cached_tflops = lru_cache(maxsize=1024)(lookup_tflops)

_FIELDS = (
    "gpu_count",
    "gpu_memory_gb",
    "memory_gb",
    "cpu_cores",
    "gpu_tflops",
    "cost_per_hour",
    "latency_ms",
    "capacity",
)
_read_fields = attrgetter(*_FIELDS)


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
        n = len(servers)
        flat = np.fromiter(chain.from_iterable(map(_read_fields, servers)), np.float64, count=n * len(_FIELDS))
        count, gpu_mem, host_mem, cores, declared, cost_per_hour, latency, capacity = flat.reshape(n, len(_FIELDS)).T
        tflops = declared.copy()
        for i in np.flatnonzero(declared <= 0).tolist():  # only specs without declared TFLOPS need the name lookup
            tflops[i] = _cached_tflops(servers[i].gpu_model)
        gpu_less = count == 0
        device_mem = np.where(gpu_less, host_mem, gpu_mem)
        total_tflops = np.where(gpu_less, cores * 0.05, count * tflops)
        total_mem = np.where(gpu_less, host_mem, count * gpu_mem)
        return cls(
            servers=servers,
            gpu_count=np.ascontiguousarray(count),
            gpu_memory_gib=device_mem,
            effective_tflops=effective_tflops(count, tflops, cores),
            hardware=hardware_score(total_tflops, total_mem),
            cost_per_hour=np.ascontiguousarray(cost_per_hour),
            latency_ms=np.ascontiguousarray(latency),
            capacity=np.ascontiguousarray(capacity),
        )

    def take(self, rows: NDArray[np.intp]) -> ServerTable:
        """The sub-table of ``rows`` (in that order): column slices, no spec is re-read."""
        servers = self.servers
        return ServerTable(
            servers=[servers[i] for i in rows.tolist()],
            gpu_count=self.gpu_count[rows],
            gpu_memory_gib=self.gpu_memory_gib[rows],
            effective_tflops=self.effective_tflops[rows],
            hardware=self.hardware[rows],
            cost_per_hour=self.cost_per_hour[rows],
            latency_ms=self.latency_ms[rows],
            capacity=self.capacity[rows],
        )

    @cached_property
    def index(self) -> dict[str, int] | None:
        """Row of each server id (built on first use); None if ids repeat, so callers scan instead."""
        index = {s.id: i for i, s in enumerate(self.servers)}
        return index if len(index) == len(self.servers) else None

    def excluded_array(self, exclude: Collection[str]) -> NDArray[np.bool_]:
        """True for the rows whose id is in ``exclude`` (cost ∝ len(exclude) once the index exists)."""
        mask = np.zeros(len(self), dtype=np.bool_)
        if not exclude:
            return mask
        index = self.index
        if index is None:
            return np.fromiter((s.id in exclude for s in self.servers), dtype=np.bool_, count=len(self))
        rows = [i for i in map(index.get, exclude) if i is not None]
        mask[rows] = True
        return mask

    def load_array(self, load: Mapping[str, int] | None) -> NDArray[np.float64]:
        """Jobs currently placed on each server (0 when unknown)."""
        out = np.zeros(len(self), dtype=np.float64)
        if not load:
            return out
        index = self.index
        if index is None:
            return np.fromiter((load.get(s.id, 0) for s in self.servers), dtype=np.float64, count=len(self))
        for server_id, jobs in load.items():
            i = index.get(server_id)
            if i is not None:
                out[i] = jobs
        return out
