"""Import servers from a PPIO-style GPU products API (v2 product rows).

Rows carry ``id, name, region_ids, resource_spec.gpu{name, memory_gb, available},
cpu, memory_gb, pricing.postpaid.final_price`` (an integer scaled by
10^``pricing.precision``, per hour) and ``deployable``. The API has no latency
field, so latency comes from configuration per region.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import httpx

from stratos_shared.contracts.servers import ServerSpec
from stratos_shared.errors import StratosError

DEFAULT_LATENCY_MS = 100.0


class ProductsApiError(StratosError):
    """The products endpoint failed or returned something we cannot read."""


def _safe_id(raw: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", raw)[:128]


def products_to_servers(payload: Mapping[str, Any], latency_by_region: Mapping[str, float]) -> list[ServerSpec]:
    """One ServerSpec per deployable product and region; rows that are not deployable are skipped."""
    rows = payload.get("data", payload.get("products"))
    if not isinstance(rows, list):
        raise ProductsApiError("products response has no 'data' list")
    servers: list[ServerSpec] = []
    for row in rows:
        if not row.get("deployable", True):
            continue
        gpu = row.get("resource_spec", {}).get("gpu", {})
        pricing = row.get("pricing", {})
        precision = int(pricing.get("precision", 0))
        price = float(pricing.get("postpaid", {}).get("final_price", 0)) / (10**precision)
        for region in row.get("region_ids") or ["default"]:
            servers.append(
                ServerSpec(
                    id=_safe_id(f"{row['id']}@{region}"),
                    gpu_model=str(gpu.get("name", "none"))[:64],
                    gpu_count=int(gpu.get("count", 1) if gpu.get("name") else 0),
                    gpu_memory_gb=float(gpu.get("memory_gb", 0)),
                    cpu_cores=max(1, int(row.get("resource_spec", {}).get("cpu", row.get("cpu", 1)) or 1)),
                    memory_gb=float(row.get("resource_spec", {}).get("memory_gb", row.get("memory_gb", 0)) or 0),
                    cost_per_hour=price,
                    region=str(region)[:64],
                    latency_ms=float(latency_by_region.get(region, DEFAULT_LATENCY_MS)),
                    capacity=max(1, int(gpu.get("available", 1) or 1)),
                )
            )
    return servers


async def fetch_servers(
    url: str, latency_by_region: Mapping[str, float], client: httpx.AsyncClient | None = None
) -> list[ServerSpec]:
    """GET the products list and convert it; a clear error on HTTP or format problems."""
    own = client is None
    http = client or httpx.AsyncClient(timeout=10.0)
    try:
        response = await http.get(url)
        response.raise_for_status()
        payload = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ProductsApiError(f"cannot read GPU products from {url}: {exc}") from None
    finally:
        if own:
            await http.aclose()
    try:
        return products_to_servers(payload, latency_by_region)
    except (KeyError, TypeError, ValueError) as exc:
        raise ProductsApiError(f"unexpected GPU product row from {url}: {exc}") from None
