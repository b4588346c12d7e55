"""Building a task from its kind and options (what a job spec's task section names)."""

from __future__ import annotations

from typing import Any

from stratos_shared.tasks.base import Task
from stratos_shared.tasks.custom_rules import CustomRulesTask
from stratos_shared.tasks.errors import TaskConfigError
from stratos_shared.tasks.mahjong import MahjongTask
from stratos_shared.tasks.math import MathTask
from stratos_shared.tasks.user import UserTask

TASK_KINDS: tuple[str, ...] = ("math", "mahjong-winning-tiles", "custom-rules", "jsonl")

_GENERATOR_KEYS: dict[str, frozenset[str]] = {
    "math": frozenset({"min_steps", "max_steps"}),
    "mahjong-winning-tiles": frozenset({"single_suit"}),
    "custom-rules": frozenset({"n_rules", "min_ops", "max_ops"}),
}
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
    ``grader`` is only meaningful for ``jsonl`` (built-in name or plug-in). ``data``, when given, is the file's
    content (the admitted snapshot): it is parsed instead of opening ``path``, which then only names it.
    """
    if kind not in TASK_KINDS:
        raise TaskConfigError(f"unknown task kind '{kind}'; known kinds: {', '.join(TASK_KINDS)}")
    if size is not None and size < 1:
        raise TaskConfigError(f"task size must be at least 1, got {size}")
    if grader is not None and kind != "jsonl":
        raise TaskConfigError(f"task kind '{kind}' has its own grader; 'grader' applies only to 'jsonl'")
    options = dict(generator or {})
    if options:
        if kind == "jsonl":
            raise TaskConfigError("task kind 'jsonl' is loaded from a file and takes no generator options")
        unknown = set(options) - _GENERATOR_KEYS[kind]
        if unknown:
            allowed = ", ".join(sorted(_GENERATOR_KEYS[kind]))
            raise TaskConfigError(
                f"unknown generator option(s) {', '.join(sorted(unknown))} for '{kind}'; allowed: {allowed}"
            )

    task: Task
    if kind == "jsonl":
        if path is None:
            raise TaskConfigError("task kind 'jsonl' needs a data file path")
        task = UserTask.from_jsonl(path, grader or "exact", data)
    elif path is not None:
        if kind == "math":
            task = MathTask.from_jsonl(path, data)
        elif kind == "mahjong-winning-tiles":
            task = MahjongTask.from_jsonl(path, data)
        else:
            n_rules = options.get("n_rules", 3)
            task = CustomRulesTask.from_jsonl(path, seed=seed, n_rules=n_rules, data=data)
    else:
        n = size if size is not None else DEFAULT_SIZE
        try:
            if kind == "math":
                task = MathTask.generate(seed=seed, size=n, **options)
            elif kind == "mahjong-winning-tiles":
                task = MahjongTask.generate(seed=seed, size=n, **options)
            else:
                task = CustomRulesTask.generate(seed=seed, size=n, **options)
        except TypeError as exc:  # wrong value types in generator options
            raise TaskConfigError(f"bad generator options for '{kind}': {exc}") from exc
    if size is not None and path is not None:
        _truncate(task, size)
    return task


def _truncate(task: Task, size: int) -> None:
    examples = list(task.examples())[:size]
    task._examples = examples  # type: ignore[attr-defined]
