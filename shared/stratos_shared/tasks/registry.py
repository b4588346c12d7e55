"""Building a task from its kind and options (what a job spec's task section names).

The kinds are those registered in `stratos_shared.tasks.kinds`; the shipped ones register when their module is
imported, here, in the order `TASK_KINDS` lists them.
"""

from __future__ import annotations

import importlib
from typing import Any

from stratos_shared.tasks.base import Task
from stratos_shared.tasks.errors import TaskConfigError
from stratos_shared.tasks.kinds import Source, task_kind, task_kinds

SHIPPED = ("math", "mahjong", "custom_rules", "user")
"""The modules of the shipped kinds (each calls `register_kind` when imported)."""
for _module in SHIPPED:
    importlib.import_module(f"stratos_shared.tasks.{_module}")

TASK_KINDS: tuple[str, ...] = tuple(kind.name for kind in task_kinds())
DEFAULT_SIZE = 1000


def build_task(
    kind: str,
    *,
    path: str | None = None,
    generator: dict[str, Any] | None = None,
    grader: str | None = None,
    seed: int = 0,
    size: int | None = None,
    data: bytes | None = None,
) -> Task:
    """A ready task: loaded from ``path`` when given, otherwise generated from ``seed``.

    ``size`` caps the loaded examples (first ``size``) or sets how many to generate.
    ``grader`` is only meaningful for a kind that takes one (``jsonl``: built-in name or plug-in). ``data``, when
    given, is the file's content (the admitted snapshot): it is parsed instead of opening ``path``, which then only
    names it.
    """
    entry = task_kind(kind)
    if size is not None and size < 1:
        raise TaskConfigError(f"task size must be at least 1, got {size}")
    if grader is not None and not entry.takes_grader:
        graded = " or ".join(f"'{k.name}'" for k in task_kinds() if k.takes_grader)
        raise TaskConfigError(f"task kind '{kind}' has its own grader; 'grader' applies only to {graded}")
    options = dict(generator or {})
    if options:
        if entry.generate is None:
            raise TaskConfigError(f"task kind '{kind}' is loaded from a file and takes no generator options")
        unknown = set(options) - entry.generator_options
        if unknown:
            allowed = ", ".join(sorted(entry.generator_options))
            raise TaskConfigError(
                f"unknown generator option(s) {', '.join(sorted(unknown))} for '{kind}'; allowed: {allowed}"
            )
    if path is not None:
        task = entry.load(Source(path, data, seed, options, grader))
        if size is not None:
            _truncate(task, size)
        return task
    if entry.generate is None:
        raise TaskConfigError(f"task kind '{kind}' needs a data file path")
    try:
        return entry.generate(seed=seed, size=size if size is not None else DEFAULT_SIZE, **options)
    except TypeError as exc:  # wrong value types in generator options
        raise TaskConfigError(f"bad generator options for '{kind}': {exc}") from exc


def _truncate(task: Task, size: int) -> None:
    examples = list(task.examples())[:size]
    task._examples = examples  # type: ignore[attr-defined]
