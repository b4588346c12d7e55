"""Pure selection domain: estimates, constraints, Pareto front, grid, strategies, catalogs, scoring."""

from stratos_selector.domain.catalog import CatalogError, generate_catalog, load_catalog_yaml
from stratos_selector.domain.strategies import STRATEGIES, Infeasible, Selection, select
from stratos_selector.domain.table import ServerTable

__all__ = [
    "STRATEGIES",
    "CatalogError",
    "Infeasible",
    "Selection",
    "ServerTable",
    "generate_catalog",
    "load_catalog_yaml",
    "select",
]
