"""The YAML server catalog (see examples/servers.yaml): one loader for the inventory, the selector's benches and
the CLI."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from stratos_shared.contracts.servers import ServerCatalog, ServerSpec
from stratos_shared.errors import StratosError


class CatalogError(StratosError, ValueError):
    """A catalog file that can't be read or doesn't validate; the message names the file and the problem."""


def load_catalog(path: str | Path) -> list[ServerSpec]:
    """Read a YAML file with a top-level ``servers:`` list, validated as a `ServerCatalog` (ids unique)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read catalog: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or "servers" not in data:
        raise CatalogError(f"{path}: expected a mapping with a top-level 'servers:' list")
    try:
        catalog = ServerCatalog.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:5])
        raise CatalogError(f"{path}: invalid catalog: {problems}") from exc
    ids = [s.id for s in catalog.servers]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise CatalogError(f"{path}: duplicate server ids: {', '.join(dup[:5])}")
    return list(catalog.servers)
