"""Server catalogs: a realistic generator (benches, tests, demo); the YAML loader is `stratos_shared.catalog`.

The generator draws from real GPU models (memory, dense bf16 TFLOPS, typical
2024-25 cloud price ranges per GPU-hour) and regions with typical user
latencies, so the objectives conflict the way they do in practice: strong
hardware costs more, cheap regions are farther away.
"""

from __future__ import annotations

import numpy as np

from stratos_shared.catalog import CatalogError
from stratos_shared.catalog import load_catalog as load_catalog_yaml
from stratos_shared.contracts.servers import ServerSpec

__all__ = ["CatalogError", "generate_catalog", "load_catalog_yaml"]

# model, GiB per GPU, TFLOPS per GPU, USD per GPU-hour (low, high), GPU counts offered
GPU_MODELS: tuple[tuple[str, float, float, tuple[float, float], tuple[int, ...]], ...] = (
    ("T4-16G", 16, 65, (0.35, 0.60), (1, 2, 4)),
    ("L4-24G", 24, 121, (0.70, 1.00), (1, 2, 4, 8)),
    ("A10G-24G", 24, 70, (1.00, 1.50), (1, 4, 8)),
    ("RTX4090-24G", 24, 165, (0.40, 0.80), (1, 2, 4, 8)),
    ("V100-32G", 32, 125, (2.00, 3.00), (1, 4, 8)),
    ("L40S-48G", 48, 362, (1.00, 2.00), (1, 2, 4, 8)),
    ("A100-40G", 40, 312, (1.10, 2.50), (1, 2, 4, 8)),
    ("A100-80G", 80, 312, (1.50, 3.50), (1, 2, 4, 8)),
    ("H100-80G", 80, 989, (2.00, 4.50), (1, 2, 4, 8)),
    ("H200-141G", 141, 989, (3.00, 6.00), (1, 8)),
    ("MI300X-192G", 192, 1307, (2.50, 5.00), (1, 8)),
    ("B200-180G", 180, 2250, (5.00, 8.00), (8,)),
)
# region, latency to users in ms (low, high), price multiplier
REGIONS: tuple[tuple[str, tuple[float, float], float], ...] = (
    ("local", (1, 5), 1.00),
    ("us-east", (10, 40), 1.00),
    ("us-west", (30, 80), 0.95),
    ("eu-west", (70, 120), 1.05),
    ("eu-north", (80, 140), 0.85),
    ("ap-south", (150, 250), 0.80),
    ("ap-east", (180, 300), 0.90),
)
CPU_ONLY_SHARE = 0.05


def generate_catalog(n: int, seed: int = 0) -> list[ServerSpec]:
    """``n`` servers drawn reproducibly from ``seed``; ids are unique and sortable."""
    rng = np.random.default_rng(seed)
    models = rng.integers(0, len(GPU_MODELS), n)
    regions = rng.integers(0, len(REGIONS), n)
    u_price, u_lat, u_count, u_cpu = rng.random(n), rng.random(n), rng.random(n), rng.random(n)
    capacity = rng.choice([1, 1, 1, 2, 4], n)
    servers = []
    for i in range(n):
        region, (lat_lo, lat_hi), mult = REGIONS[regions[i]]
        latency = round(lat_lo + (lat_hi - lat_lo) * float(u_lat[i]), 1)
        if u_cpu[i] < CPU_ONLY_SHARE:
            cores = int(2 ** (3 + int(u_count[i] * 4)))
            servers.append(
                ServerSpec(
                    id=f"cpu{cores}-{region}-{i:07d}",
                    cpu_cores=cores,
                    memory_gb=4.0 * cores,
                    cost_per_hour=round(0.04 * cores * mult * (0.8 + 0.4 * float(u_price[i])), 4),
                    region=region,
                    latency_ms=latency,
                    capacity=int(capacity[i]),
                )
            )
            continue
        model, mem, tflops, (lo, hi), counts = GPU_MODELS[models[i]]
        count = counts[int(u_count[i] * len(counts))]
        price = count * mult * (lo + (hi - lo) * float(u_price[i]))
        servers.append(
            ServerSpec(
                id=f"{model.split('-')[0].lower()}x{count}-{region}-{i:07d}",
                gpu_model=model,
                gpu_count=count,
                gpu_memory_gb=mem,
                gpu_tflops=tflops,
                cpu_cores=min(4096, 16 * count),
                memory_gb=float(128 * count),
                cost_per_hour=round(price, 4),
                region=region,
                latency_ms=latency,
                capacity=int(capacity[i]),
            )
        )
    return servers
