"""Stratos' exception hierarchy: one base, each message in plain words."""

from __future__ import annotations


class StratosError(Exception):
    """Base of every error Stratos raises on purpose."""


class InvalidEventError(StratosError):
    """A message on the bus is not a valid event of the expected type and version."""

    def __init__(self, reason: str, errors: list[str] | None = None, job_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.errors = errors or []
        self.job_id = job_id


class InvalidJobSpecError(StratosError):
    """A job spec failed validation; `errors` lists 'field: problem' lines."""

    def __init__(self, source: str, errors: list[str]) -> None:
        super().__init__(f"{source} is not a valid job spec:\n  " + "\n  ".join(errors))
        self.errors = errors


class ArtifactError(StratosError):
    """An artifact could not be stored or read, or its name/URI is not allowed."""


class JobStateError(StratosError):
    """A job's state or spec is missing or inconsistent."""


class StageFailure(StratosError):
    """A stage cannot succeed for this job (not a transient fault): the job fails with this reason."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason


class PolicyError(StratosError):
    """A job spec references something the operator's input policy refuses (a path, a secret, a network)."""
