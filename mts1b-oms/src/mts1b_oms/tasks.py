"""Stopping background tasks for sure.

Why not ``task.cancel()`` then ``await task``: a cancel can be lost on the way. Python 3.11's
``asyncio.wait_for`` returns the inner result and drops a cancel that arrives as the inner
awaitable completes, and a library that turns the ``CancelledError`` into an error of its own
lands in a retry loop's ``except Exception``. The task then runs on, and whoever awaits it
waits until something else gives up (the OMS service's shutdown stalled 20-33 s that way in
about one test run in six, see :class:`~mts1b_oms.outbox.OutboxRelay`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any] | None], *,
                          patience: float = 1.0) -> None:
    """Cancel ``tasks`` and return once each has ended, cancelling again every ``patience``
    seconds those still running. Their results and errors are dropped (each error is
    retrieved, so none is reported as never retrieved); a cancel of the caller itself is not
    swallowed. The calling task itself, if among them, is left alone."""
    current = asyncio.current_task()
    every = [t for t in tasks if t is not None and t is not current]
    pending = {t for t in every if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=patience)
    for task in every:
        if not task.cancelled():
            task.exception()
