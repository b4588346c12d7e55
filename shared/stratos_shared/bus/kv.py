"""Typed JetStream KV access with compare-and-set, so concurrent writers never lose an update."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

MAX_CAS_ATTEMPTS = 50
log = logging.getLogger("stratos.kv")


class TypedKV(Generic[M]):
    """A KV bucket whose values are one pydantic model."""

    def __init__(self, kv: KeyValue, model: type[M]) -> None:
        self.kv = kv
        self.model = model

    async def get(self, key: str) -> tuple[M, int] | None:
        """The value and its revision, or None when absent or deleted."""
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:
            return None
        if entry.value is None or entry.operation is not None:  # deleted or purged
            return None
        return self.model.model_validate_json(entry.value), entry.revision or 0

    async def put(self, key: str, value: M) -> int:
        return await self.kv.put(key, value.model_dump_json().encode())

    async def create(self, key: str, value: M) -> bool:
        """Write only if absent; False when someone else already wrote the key."""
        try:
            await self.kv.create(key, value.model_dump_json().encode())
        except KeyWrongLastSequenceError:
            return False
        return True

    async def update(self, key: str, change: Callable[[M | None], M | None]) -> tuple[M | None, bool]:
        """Apply `change` atomically (compare-and-set, retried on conflict).

        `change` gets the current value (None if absent) and returns the new one,
        or None to leave the key as it is. Returns (value now stored, whether we wrote).
        """
        for _ in range(MAX_CAS_ATTEMPTS):
            current = await self.get(key)
            value, revision = current if current else (None, 0)
            new = change(value)
            if new is None:
                return value, False
            try:
                if revision:
                    await self.kv.update(key, new.model_dump_json().encode(), last=revision)
                else:
                    await self.kv.create(key, new.model_dump_json().encode())
            except KeyWrongLastSequenceError:
                continue
            return new, True
        raise RuntimeError(f"KV key {key!r} is too contended: {MAX_CAS_ATTEMPTS} compare-and-set attempts lost")

    async def keys(self, prefix: str = "") -> list[str]:
        try:
            return [k for k in await self.kv.keys() if k.startswith(prefix)]
        except NoKeysError:
            return []

    async def items(self, prefix: str = "") -> dict[str, M]:
        """Every readable value under `prefix`; one record that no longer validates is skipped (and logged),
        never allowed to hide the others."""
        out: dict[str, M] = {}
        for key in await self.keys(prefix):
            try:
                got = await self.get(key)
            except ValidationError as exc:
                log.error("KV key %r does not hold a valid %s; skipped: %s", key, self.model.__name__, exc)
                continue
            if got is not None:
                out[key] = got[0]
        return out

    async def delete(self, key: str) -> None:
        await self.kv.delete(key)


Follow = Callable[[], Awaitable[None]]


async def follow(
    kv: KeyValue, apply: Callable[[KeyValue.Entry], None], on_end: Callable[[], None], keys: str = ">"
) -> Follow:
    """A local copy of the `keys` of a bucket: the current entries go to `apply` now; returned is the loop that
    keeps applying changes (run it in the background). When that loop ends, `on_end` runs: the copy is no
    longer current, so its owner goes back to reading KV."""
    watcher = await kv.watch(keys)
    async for entry in watcher:
        if entry is None:  # end of the initial values
            break
        apply(entry)

    async def changes() -> None:
        try:
            async for entry in watcher:
                if entry is not None:
                    apply(entry)
        finally:
            on_end()
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]

    return changes
