"""Full garbage collections on the service's schedule, not the allocator's.

CPython's collector runs a full pass whenever enough objects have survived into the oldest
generation. A full pass walks every tracked object the process holds - for the OMS, the whole
book of open orders - and stops the event loop meanwhile: on the 2-core benchmark machine each
pass took 15-20 ms, and every order in hand at that moment waited for it: they made more than
half of the slowest 1.5 % of orders in the end-to-end benchmark.

:class:`ScheduledFullCollections` freezes what the process built before it started serving (it
lives as long as the process), leaves the young generations to the allocator as usual (cheap:
they hold only recent objects), and runs the full pass itself every ``interval`` seconds. The
work is the same; what changes is that the stall comes once a minute instead of every few
thousand orders. Memory held by reference cycles that die in the old generation is reclaimed at
the next scheduled pass instead of sooner; objects without cycles (nearly all of the OMS's) are
freed at once by reference counting as always.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc

__all__ = ["ScheduledFullCollections"]

_NEVER = 2**31 - 1  # the oldest generation's threshold: no automatic full pass


class ScheduledFullCollections:
    """Use as ``policy.start()`` once serving starts, ``await policy.stop()`` when done."""

    def __init__(self, interval: float = 60.0) -> None:
        if not interval > 0:
            raise ValueError(f"full-collection interval must be > 0 seconds, got {interval!r}")
        self.interval = interval
        self.collections = 0
        self._thresholds: tuple[int, int, int] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        gc.freeze()  # start-up objects: never garbage, never walked again
        self._thresholds = gc.get_threshold()
        young, middle, _old = self._thresholds
        gc.set_threshold(young, middle, _NEVER)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            gc.collect()
            self.collections += 1

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None
