"""Regular expressions a user wrote (a ``regex:<pattern>`` grader, or the answers of a ``regex`` grader).

Python's ``re`` backtracks: ``(a+)+$`` against forty ``a`` and a ``!`` takes minutes, on whatever thread runs it.
User patterns therefore run in RE2 (the ``google-re2`` binding), whose matching time is linear in the text:
no pattern can stall a stage. RE2 refuses what only a backtracking engine can do (backreferences, look-arounds,
possessive quantifiers); such a pattern is refused when the task is loaded, which the selector does at
admission, so the user hears why at submission instead of from a stage that grades nothing.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import re2

from stratos_shared.tasks.errors import TaskError

MAX_PATTERN_CHARS = 1000
"""Longer patterns are refused: a grader pattern is a line, not a program."""
MAX_PROGRAM_BYTES = 1 << 20
"""RE2's memory budget for one compiled pattern (``a{1000}{1000}`` and the like are refused, not built)."""

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # the error comes back as our message; RE2 would also print it to stderr
_OPTIONS.max_mem = MAX_PROGRAM_BYTES


class PatternError(TaskError, ValueError):
    """A user pattern RE2 cannot run; the message says why in words a user can act on."""


@lru_cache(maxsize=4096)
def compile_user_pattern(pattern: str) -> Any:
    """The RE2 program for `pattern` (cached: a ``regex`` grader compiles each answer once, not per grade).

    Raises PatternError for a pattern that is too long, uses what RE2 does not support, or is too large.
    """
    if len(pattern) > MAX_PATTERN_CHARS:
        raise PatternError(f"the pattern is {len(pattern)} characters long; at most {MAX_PATTERN_CHARS} are allowed")
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        raise PatternError(
            f"{text} (patterns run in RE2, which has no backreferences or look-arounds, so matching stays linear)"
        ) from None


def full_match(pattern: str, text: str) -> bool:
    """Whether `text` matches all of `pattern` (a ``regex`` grader's answer); PatternError if it cannot run."""
    return compile_user_pattern(pattern).fullmatch(text) is not None
