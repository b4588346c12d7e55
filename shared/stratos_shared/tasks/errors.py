"""Task errors: one small hierarchy so callers can catch every task problem at once."""

from __future__ import annotations

from pathlib import Path

from stratos_shared.errors import StratosError


class TaskError(StratosError):
    """Base class for everything a task refuses."""


class TaskConfigError(TaskError):
    """A task was asked for with options that make no sense (unknown kind, grader, generator key)."""


class TaskDataError(TaskError):
    """A task data file is malformed; the message names the file, the line and the reason.

    Bad data is refused outright rather than skipped, because a silently dropped
    line would change accuracy numbers without anyone noticing.
    """

    def __init__(self, path: str | Path, line: int, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}, line {line}" if line > 0 else self.path
        super().__init__(f"{where}: {reason}")


class SnapshotError(TaskError):
    """A job's admitted task data is missing from its spec or does not hash to what admission recorded.

    Never retried into success: the snapshot is written once, before the spec, so a mismatch means it was
    changed or corrupted in the store, and training on it would silently change the job.
    """


class GradingTimeout(TaskError):
    """Grading one output took longer than its bound (a slow plug-in grader); the output counts as ungraded."""
