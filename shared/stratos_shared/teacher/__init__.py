"""Teacher access: secret resolution, the OpenAI-compatible client, response cache, and a simulator.

The simulator (:mod:`stratos_shared.teacher.simulator`) is imported on demand
only, since it pulls in starlette and uvicorn.
"""

from stratos_shared.teacher.cache import DirectoryCache, MemoryCache, ResponseCache, cache_key
from stratos_shared.teacher.client import Completion, Pricing, TeacherClient, UsageTotals
from stratos_shared.teacher.errors import (
    SecretError,
    TeacherAddressRefused,
    TeacherBadResponse,
    TeacherError,
    TeacherRequestRejected,
    TeacherUnavailable,
)
from stratos_shared.teacher.secrets import SecretRef, resolve_secret

__all__ = [
    "Completion",
    "DirectoryCache",
    "MemoryCache",
    "Pricing",
    "ResponseCache",
    "SecretError",
    "SecretRef",
    "TeacherAddressRefused",
    "TeacherBadResponse",
    "TeacherClient",
    "TeacherError",
    "TeacherRequestRejected",
    "TeacherUnavailable",
    "UsageTotals",
    "cache_key",
    "resolve_secret",
]
