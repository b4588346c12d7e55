"""The YAML server catalog (see examples/servers.yaml)."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from stratos_shared.contracts.parsing import describe_validation_error
from stratos_shared.contracts.servers import ServerCatalog, ServerSpec
from stratos_shared.errors import StratosError


class CatalogError(StratosError):
    """The server catalog cannot be read or is invalid."""


def load_catalog(path: Path) -> list[ServerSpec]:
    """Servers from a YAML file with a top-level `servers:` list; errors name the file and the field."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError(f"cannot read server catalog {path}: {exc}") from None
    try:
        catalog = ServerCatalog.model_validate(data)
    except ValidationError as exc:
        raise CatalogError(f"{path}: " + "; ".join(describe_validation_error(exc))) from None
    ids = [s.id for s in catalog.servers]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise CatalogError(f"{path}: duplicate server ids {duplicates}")
    return list(catalog.servers)
