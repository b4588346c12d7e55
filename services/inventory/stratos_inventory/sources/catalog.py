"""The YAML server catalog (see examples/servers.yaml): the shared loader, as one of the inventory's sources."""

from __future__ import annotations

from stratos_shared.catalog import CatalogError, load_catalog

__all__ = ["CatalogError", "load_catalog"]
