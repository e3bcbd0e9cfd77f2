"""Group commit: the writes of concurrent requests go to PostgreSQL as one statement per batch.

Each durable write costs a network round trip, a statement to parse and plan, and a commit that
waits for the write-ahead log to reach the disk. Under load those costs, not the rows, are most
of the work. :class:`GroupCommit` collects the writes that arrive while a batch is in flight and
sends them together as the next batch, so they share the round trip, the plan and the commit.

No write waits for a timer: when nothing is in flight a write goes out at once (the latency of a
lone order is unchanged); batches grow only when writes arrive faster than a statement
completes, which is exactly when sharing pays.

Two items that must not be in the same statement (PostgreSQL refuses to upsert one row twice in
a statement) declare a common key through ``keys``; the later one waits for the next batch. If a
batch fails, each of its items is retried alone, so one bad item fails only its own request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from typing import Generic, TypeVar

__all__ = ["GroupCommit"]

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """Batches calls of ``write(items) -> results`` (one result per item, in order).

    ``keys(item)``: what an item's write touches that another item of the same batch must not
    (e.g. an upserted row's key). ``max_batch`` caps the rows of one statement.
    """

    def __init__(self, write: Callable[[Sequence[T]], Awaitable[Sequence[R]]], *,
                 keys: Callable[[T], Iterable[Hashable]] = lambda _item: (),
                 max_batch: int = 256) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._write = write
        self._keys = keys
        self.max_batch = max_batch
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0
        self.items = 0

    async def run(self, item: T) -> R:
        """Write ``item`` with whatever else is waiting; return its result or raise its error.

        Cancelling the caller does not cancel the write it joined (it may already be in a
        statement on its way to the server); the caller just stops waiting for it.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append((item, future))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        return await future

    def _next_batch(self) -> list[tuple[T, asyncio.Future[R]]]:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        taken: set[Hashable] = set()
        rest: list[tuple[T, asyncio.Future[R]]] = []
        for entry in self._queue:
            keys = set(self._keys(entry[0]))
            if len(batch) < self.max_batch and not keys & taken:
                batch.append(entry)
                taken |= keys
            else:
                rest.append(entry)
        self._queue = rest
        return batch

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch = self._next_batch()
                self.batches += 1
                self.items += len(batch)
                try:
                    results = list(await self._write([item for item, _ in batch]))
                except Exception as exc:
                    if len(batch) == 1:
                        _settle(batch[0][1], exc)
                        continue
                    for item, future in batch:  # isolate the item that broke the statement
                        try:
                            _settle(future, (await self._write([item]))[0])
                        except Exception as one:
                            _settle(future, one)
                    continue
                if len(results) != len(batch):  # pragma: no cover - a write function's bug
                    error = RuntimeError(f"write returned {len(results)} results for "
                                         f"{len(batch)} items")
                    for _item, future in batch:
                        _settle(future, error)
                    continue
                for (_item, future), result in zip(batch, results, strict=True):
                    _settle(future, result)
        finally:
            self._flusher = None
            if self._queue:  # cancelled mid-way (shutdown): nobody may wait forever
                for _item, future in self._queue:
                    if not future.done():
                        future.cancel()
                self._queue = []


def _settle(future: asyncio.Future[R], outcome: R | Exception) -> None:
    if future.done():  # the caller gave up waiting
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
