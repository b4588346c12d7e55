"""Content-addressed cache of teacher completions.

Teacher calls are the expensive part of distillation; re-running a job (or a
second job over the same data) must not pay twice. A key is the sha256 of the
model, the messages and every sampling parameter including the sample index,
so two different samples of one prompt are two entries, and changing any
parameter misses. Backends follow :class:`ResponseCache`; the default stores
one JSON file per key, written atomically so a crash never leaves half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol


class ResponseCache(Protocol):
    """Where cached completions live. ``get`` returns None on a miss."""

    def get(self, key: str) -> dict[str, Any] | None: ...

    def put(self, key: str, value: dict[str, Any]) -> None: ...


def cache_key(model: str, messages: list[dict[str, str]], params: dict[str, Any], sample_index: int) -> str:
    """sha256 over a canonical JSON of everything that determines one sampled completion."""
    payload = {"model": model, "messages": messages, "params": params, "sample_index": sample_index}
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class MemoryCache:
    """In-process cache (tests, short-lived runs)."""

    def __init__(self) -> None:
        self._data: dict[str, dict[str, Any]] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        return self._data.get(key)

    def put(self, key: str, value: dict[str, Any]) -> None:
        self._data[key] = value

    def __len__(self) -> int:
        return len(self._data)


class DirectoryCache:
    """One JSON file per key under ``root/<key[:2]>/<key>.json``; unreadable entries count as misses."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if len(key) < 8 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError("cache keys are sha256 hex digests")
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(value, fh, ensure_ascii=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
