"""No function longer than 60 lines outside tests and benches: a longer one is a workflow packed into one body
(closures, flags) that no test can take apart; split it into named steps."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[2]
LIMIT = 60


def long_functions() -> dict[str, int]:
    """`path::name` of every function (nested ones included) over the limit in shared/, cli/ and services/."""
    found = {}
    for folder in ("shared", "cli", "services"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = (node.end_lineno or node.lineno) - node.lineno + 1
                    if lines > LIMIT:
                        found[f"{path.relative_to(ROOT)}::{node.name}"] = lines
    return found


def test_no_function_is_longer_than_60_lines() -> None:
    over = long_functions()
    assert not over, f"functions over {LIMIT} lines (split them into named steps): {over}"
