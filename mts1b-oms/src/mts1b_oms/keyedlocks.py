"""One asyncio lock per key, kept only while someone holds or waits for it.

The OMS serialises work per order (a lifecycle change reads the order, applies the transition
table and writes it) and per position (a fill builds on the position the previous fill left).
A plain ``defaultdict(asyncio.Lock)`` would do that but keep one lock for every order id ever
seen, which in a service that runs for weeks is a slow leak; here a key's lock is dropped as
soon as its last user leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Hashable

__all__ = ["KeyedLocks"]


class KeyedLocks:
    """``async with locks.hold(key):`` runs one holder per key at a time (FIFO per key)."""

    def __init__(self) -> None:
        self._entries: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        """Keys held or waited for right now."""
        return len(self._entries)

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        lock, users = self._entries.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._entries[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._entries[key]
            if users == 1:
                del self._entries[key]
            else:
                self._entries[key] = (lock, users - 1)
