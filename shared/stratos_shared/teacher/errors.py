"""Teacher errors. Messages never contain the API key or request headers."""

from __future__ import annotations

from stratos_shared.errors import StratosError


class TeacherError(StratosError):
    """Base class for every teacher-side failure."""


class SecretError(TeacherError):
    """A secret reference could not be resolved (unknown scheme, missing variable or file)."""


class TeacherUnavailable(TeacherError):
    """The teacher did not answer successfully within the retry budget (429/5xx/timeouts/network)."""


class TeacherBadResponse(TeacherError):
    """The teacher answered, but not with a usable chat completion (bad JSON, no choices)."""


class TeacherAddressRefused(TeacherError):
    """The teacher's host resolves to an address the operator's policy refuses (link-local, metadata, ...)."""


class TeacherRequestRejected(TeacherError):
    """The teacher refused the request itself (4xx other than 429); retrying would not help."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)
