"""Catalog generation and YAML loading."""

from __future__ import annotations

from pathlib import Path

import pytest

from stratos_selector.domain.catalog import CatalogError, generate_catalog, load_catalog_yaml

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "servers.yaml"


def test_generated_catalog_is_reproducible_and_unique() -> None:
    a, b = generate_catalog(500, seed=1), generate_catalog(500, seed=1)
    assert a == b
    assert len({s.id for s in a}) == 500
    assert any(s.gpu_count == 0 for s in a) and any(s.gpu_model.startswith("H100") for s in a)
    assert generate_catalog(50, seed=2) != generate_catalog(50, seed=3)


def test_loads_the_example_catalog() -> None:
    servers = load_catalog_yaml(EXAMPLE)
    assert servers and all(s.id for s in servers)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("servers: [", "not valid YAML"),
        ("- a\n- b\n", "top-level 'servers:'"),
        ("servers:\n  - id: x\n", "servers.0.cost_per_hour"),
        (
            "servers:\n  - {id: x, cost_per_hour: 1, latency_ms: 1}\n  - {id: x, cost_per_hour: 2, latency_ms: 1}\n",
            "duplicate server ids: x",
        ),
    ],
)
def test_errors_name_the_file_and_problem(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(CatalogError) as info:
        load_catalog_yaml(path)
    assert str(path) in str(info.value) and needle in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read catalog"):
        load_catalog_yaml(tmp_path / "nope.yaml")
