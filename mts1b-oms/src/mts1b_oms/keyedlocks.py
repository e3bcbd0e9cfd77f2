"""One asyncio lock per key, kept only while someone holds or waits for it.

The OMS serialises work per order (a lifecycle change reads the order, applies the transition
table and writes it) and per position (a fill builds on the position the previous fill left).
A plain ``defaultdict(asyncio.Lock)`` would do that but keep one lock for every order id ever
seen, which in a service that runs for weeks is a slow leak; here a key's lock is dropped as
soon as its last user leaves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from types import TracebackType

__all__ = ["KeyedLocks"]


class KeyedLocks:
    """``async with locks.hold(key):`` runs one holder per key at a time (FIFO per key)."""

    def __init__(self) -> None:
        self._entries: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        """Keys held or waited for right now."""
        return len(self._entries)

    def hold(self, key: Hashable) -> _Hold:
        return _Hold(self._entries, key)


class _Hold:
    """One use of :meth:`KeyedLocks.hold`. A class rather than an ``asynccontextmanager``
    generator: the OMS takes an order's lock for every change of every order, and the
    generator's machinery cost more than the lock itself."""

    __slots__ = ("_entries", "_key", "_lock")

    def __init__(self, entries: dict[Hashable, tuple[asyncio.Lock, int]], key: Hashable) -> None:
        self._entries = entries
        self._key = key
        self._lock: asyncio.Lock | None = None

    async def __aenter__(self) -> None:
        lock, users = self._entries.get(self._key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._entries[self._key] = (lock, users + 1)
        self._lock = lock
        try:
            await lock.acquire()
        except BaseException:  # cancelled while waiting: no longer a user
            self._leave()
            raise

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._lock is not None:  # always: entered before it can exit
            self._lock.release()
        self._leave()

    def _leave(self) -> None:
        lock, users = self._entries[self._key]
        if users == 1:
            del self._entries[self._key]
        else:
            self._entries[self._key] = (lock, users - 1)
