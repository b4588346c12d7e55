"""The task kinds Stratos knows, each registered by the module that implements it.

A kind is its name, how to build it from a data file (`load`) and, when it can make its own examples, how to
generate them (`generate`) with which options; and whether a spec may name its grader. A job spec's `task.kind`,
`build_task` and the admission checks all read this one table, so a new kind is its own module calling
`register_kind` (and listed in `registry.SHIPPED` so it is imported).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stratos_shared.tasks.base import Task
from stratos_shared.tasks.errors import TaskConfigError


@dataclass(frozen=True)
class Source:
    """What a spec says about a task read from a data file."""

    path: str
    """Names the file in messages; the bytes are `data` when given (the admitted snapshot)."""
    data: bytes | None
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    """The spec's generator options (a kind that loads may use some of them, e.g. custom-rules' ``n_rules``)."""
    grader: str | None = None


@dataclass(frozen=True)
class TaskKind:
    """One task kind, as specs name it."""

    name: str
    load: Callable[[Source], Task]
    """The task from a data file."""
    generate: Callable[..., Task] | None = None
    """``generate(seed=..., size=..., **options)``: the task generated offline; None: it needs a data file."""
    generator_options: frozenset[str] = frozenset()
    """The options `generate` accepts; any other is refused before anything is built."""
    takes_grader: bool = False
    """Whether a spec names the grader (the user's own data); the other kinds grade as they define."""


_KINDS: dict[str, TaskKind] = {}


def register_kind(kind: TaskKind) -> TaskKind:
    """Make `kind` known to specs and `build_task`; a second kind under one name is a bug, refused."""
    if kind.name in _KINDS:
        raise TaskConfigError(f"task kind '{kind.name}' is registered twice")
    _KINDS[kind.name] = kind
    return kind


def task_kinds() -> tuple[TaskKind, ...]:
    """Every registered kind, in the order they registered."""
    return tuple(_KINDS.values())


def task_kind(name: str) -> TaskKind:
    """The kind named `name`; TaskConfigError naming the known ones when there is none."""
    found = _KINDS.get(name)
    if found is None:
        raise TaskConfigError(f"unknown task kind '{name}'; known kinds: {', '.join(_KINDS)}")
    return found
