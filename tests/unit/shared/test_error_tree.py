"""One error tree: every exception class Stratos defines is a `StratosError`, so a caller can catch what Stratos
raises on purpose in one clause (and the CLI prints it as one line instead of a traceback)."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

from stratos_shared.errors import StratosError

ROOT = Path(__file__).parents[3]
PACKAGE_ROOTS = [ROOT / "shared", ROOT / "cli", *sorted(p for p in (ROOT / "services").iterdir() if p.is_dir())]


def module_names() -> list[str]:
    """Every importable module of the shared package, the CLI and the services (``__main__`` runs, so it is left
    out; it defines nothing)."""
    names = []
    for base in PACKAGE_ROOTS:
        for path in sorted(base.glob("stratos_*/**/*.py")):
            parts = path.relative_to(base).with_suffix("").parts
            if parts[-1] == "__main__":
                continue
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def defined_exceptions() -> list[type[BaseException]]:
    """The exception classes each module defines itself (not the ones it imports)."""
    found = []
    for name in module_names():
        module = importlib.import_module(name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if obj.__module__ == name and issubclass(obj, BaseException):
                found.append(obj)
    return found


def test_the_walk_sees_every_package_and_the_known_errors() -> None:
    """Guards the walk itself: a glob that found nothing would make the tree test pass vacuously."""
    names = {f"{cls.__module__}.{cls.__qualname__}" for cls in defined_exceptions()}
    for expected in (
        "stratos_shared.errors.InvalidEventError",
        "stratos_cli.membership.MembershipError",
        "stratos_inventory.sources.ppio.ProductsApiError",
        "stratos_trainer.domain.masks.ChatTemplateError",
        "stratos_deployer.serving.process.ServingError",
    ):
        assert expected in names, expected


def test_every_exception_class_is_a_stratos_error() -> None:
    outside = sorted(
        f"{cls.__module__}.{cls.__qualname__}" for cls in defined_exceptions() if not issubclass(cls, StratosError)
    )
    assert not outside, f"exception classes outside the StratosError tree: {outside}"
