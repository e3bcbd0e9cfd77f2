"""A service's life from its command: saying it serves, and stopping on SIGTERM or SIGINT.

Why here: every service (the OMS, the treasury, the research signal service, the audit
recorder, the alert router) runs until an event is set and drains then; the signal handlers
that set it are the same for all, and must be skipped where the event loop cannot take them
(Windows, a loop outside the main thread). And every ``serve`` command prints one line once its
service is ready (a person, or a script waiting for it, knows it came up), which
:func:`run_announced` does for all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

__all__ = ["run_announced", "stop_on_signals"]

T = TypeVar("T")


def stop_on_signals(stop: asyncio.Event,
                    signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT)) -> None:
    """Set ``stop`` when the process receives one of ``signals`` (from the running loop)."""
    loop = asyncio.get_running_loop()
    for sig in signals:
        # NotImplementedError: no signal handlers on this platform's loop; RuntimeError: not
        # the main thread (a test running the service in a worker thread)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


async def run_announced(service: Coroutine[Any, Any, T], ready: asyncio.Event,
                        announce: Callable[[bool], None]) -> T:
    """Run ``service``, which sets ``ready`` once it serves; call ``announce(ready)`` once,
    as soon as it is ready or has ended without being ready, then wait for it to end. Its
    result is returned and its exception raised (a service that failed to start ends the
    command with that error)."""
    task = asyncio.get_running_loop().create_task(service)
    waiter = asyncio.get_running_loop().create_task(ready.wait())
    await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    announce(ready.is_set())
    return await task
