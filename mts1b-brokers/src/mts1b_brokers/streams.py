"""One subscriber's queue of what a broker emits: execution reports, corrected fills.

Registered at construction (not at first iteration) so that nothing emitted between
``broker.execution_reports()`` (or ``corrections()``) and the first ``async for`` step is lost;
every adapter (paper, IBKR, Coinbase, the NATS client) hands these out.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

__all__ = ["Subscription"]

T = TypeVar("T")


class Subscription(Generic[T]):
    """An async iterator over the items put after it was made, until :meth:`aclose`."""

    def __init__(self, owner: set[Subscription[T]]) -> None:
        self._queue: asyncio.Queue[T] = asyncio.Queue()
        self._owner = owner
        owner.add(self)

    def put(self, item: T) -> None:
        self._queue.put_nowait(item)

    def __aiter__(self) -> Subscription[T]:
        return self

    async def __anext__(self) -> T:
        return await self._queue.get()

    def __len__(self) -> int:
        """How many items wait to be taken: a service on a replay's clock answers a tick only
        once its report stream is empty (:class:`~mts1b_brokers.service.BrokerService`)."""
        return self._queue.qsize()

    def get_nowait(self) -> T | None:
        """The next queued item, or ``None`` when none is waiting."""
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    async def aclose(self) -> None:
        self._owner.discard(self)
