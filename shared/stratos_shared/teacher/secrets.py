"""Secret references: where a key lives, not the key itself.

Job specs and configs carry strings like ``env:TEACHER_KEY_OPENAI`` or
``file:/run/secrets/teacher``; only this module turns them into values, only
for references the operator's `InputPolicy` allows (never a service's own
credentials), and only into pydantic ``SecretStr`` so a stray log line or repr
shows ``**********``.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import SecretStr

from stratos_shared.errors import PolicyError
from stratos_shared.policy import InputPolicy, read_regular_file
from stratos_shared.teacher.errors import SecretError

SCHEMES = ("env", "file")
MAX_SECRET_BYTES = 64 * 1024


class SecretRef:
    """A parsed ``scheme:location`` reference; resolving it reads the secret."""

    def __init__(self, ref: str) -> None:
        scheme, sep, location = ref.partition(":")
        if not sep or not location.strip():
            raise SecretError(f"secret reference {ref!r} must look like 'env:NAME' or 'file:/path'")
        if scheme not in SCHEMES:
            raise SecretError(f"unknown secret scheme '{scheme}' in {ref!r}; use one of: {', '.join(SCHEMES)}")
        self.scheme = scheme
        self.location = location.strip()

    def __repr__(self) -> str:
        return f"SecretRef('{self.scheme}:{self.location}')"

    def resolve(self, policy: InputPolicy) -> SecretStr:
        """Read the secret now (env var or file contents, surrounding whitespace stripped), if `policy` allows."""
        ref = f"{self.scheme}:{self.location}"
        try:
            policy.check_secret_ref(ref)
        except PolicyError as exc:
            raise SecretError(str(exc)) from None
        if self.scheme == "env":
            value = os.environ.get(self.location)
            if value is None or not value.strip():
                raise SecretError(f"environment variable '{self.location}' is not set or empty")
        else:
            path = Path(self.location)
            try:
                value = read_regular_file(path, MAX_SECRET_BYTES, "secret file").decode("utf-8", errors="replace")
            except FileNotFoundError:
                raise SecretError(f"secret file '{path}' does not exist") from None
            except PolicyError as exc:
                raise SecretError(str(exc)) from None
            if not value.strip():
                raise SecretError(f"secret file '{path}' is empty")
        if value.strip() in policy.protected_values:
            raise SecretError(f"secret reference {ref!r} holds a service credential; it can never be a teacher key")
        return SecretStr(value.strip())


def resolve_secret(ref: str, policy: InputPolicy) -> SecretStr:
    """Resolve an allowed ``env:NAME`` / ``file:/path`` reference to its value, wrapped in ``SecretStr``."""
    return SecretRef(ref).resolve(policy)
