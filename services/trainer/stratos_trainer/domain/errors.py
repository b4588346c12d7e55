"""The trainer's root of the error tree: what it raises when a job cannot be trained as asked."""

from __future__ import annotations

from stratos_shared.errors import StratosError


class TrainingError(StratosError):
    """The job's training data or its student cannot be trained as asked; the message says which and why."""
