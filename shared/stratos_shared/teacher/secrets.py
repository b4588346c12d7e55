"""Secret references: where a key lives, not the key itself.

Job specs and configs carry strings like ``env:OPENAI_API_KEY`` or
``file:/run/secrets/teacher``; only this module turns them into values, and
only into pydantic ``SecretStr`` so a stray log line or repr shows ``**********``.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import SecretStr

from stratos_shared.teacher.errors import SecretError

SCHEMES = ("env", "file")


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

    def resolve(self) -> SecretStr:
        """Read the secret now (env var or file contents, surrounding whitespace stripped)."""
        if self.scheme == "env":
            value = os.environ.get(self.location)
            if value is None or not value.strip():
                raise SecretError(f"environment variable '{self.location}' is not set or empty")
            return SecretStr(value.strip())
        path = Path(self.location)
        try:
            value = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SecretError(f"secret file '{path}' does not exist") from None
        except OSError as exc:
            raise SecretError(f"secret file '{path}' cannot be read ({exc.strerror})") from None
        if not value.strip():
            raise SecretError(f"secret file '{path}' is empty")
        return SecretStr(value.strip())


def resolve_secret(ref: str) -> SecretStr:
    """Resolve a ``env:NAME`` / ``file:/path`` reference to its value, wrapped in ``SecretStr``."""
    return SecretRef(ref).resolve()
