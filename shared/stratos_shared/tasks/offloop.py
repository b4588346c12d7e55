"""Grading off the event loop, with a bound.

A stage's event loop also extends message leases and publishes progress; a grader that runs long on it (a
plug-in grader, or any CPU-heavy check of a long output) stalls all of that, and the broker re-delivers work
that is still being done. Stages therefore grade in a worker thread and stop waiting after `GRADE_TIMEOUT_S`:
the output is then counted as not graded (`GradingTimeout`), and the stage goes on. User patterns already run
in linear time (`stratos_shared.tasks.patterns`); the bound is for what the operator plugged in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from stratos_shared.tasks.errors import GradingTimeout

GRADE_TIMEOUT_S = 10.0
"""How long one output's grading may take before the stage gives up on it."""

T = TypeVar("T")


async def off_loop(fn: Callable[..., T], *args: Any, timeout_s: float = GRADE_TIMEOUT_S) -> T:
    """`fn(*args)` in a worker thread; GradingTimeout after `timeout_s` (the thread is left to end on its own:
    Python cannot stop it, but the loop no longer waits on it)."""
    try:
        async with asyncio.timeout(timeout_s):
            return await asyncio.to_thread(fn, *args)
    except TimeoutError:
        name = getattr(fn, "__qualname__", repr(fn))
        raise GradingTimeout(f"grading took longer than {timeout_s:g} s ({name})") from None
