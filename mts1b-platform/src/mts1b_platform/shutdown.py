"""Stopping a service on SIGTERM or SIGINT.

Why one function: every service (the OMS, the treasury, the research signal service) runs until
an event is set and drains then; the signal handlers that set it are the same for all, and must
be skipped where the event loop cannot take them (Windows, a loop outside the main thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Sequence

__all__ = ["stop_on_signals"]


def stop_on_signals(stop: asyncio.Event,
                    signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT)) -> None:
    """Set ``stop`` when the process receives one of ``signals`` (from the running loop)."""
    loop = asyncio.get_running_loop()
    for sig in signals:
        # NotImplementedError: no signal handlers on this platform's loop; RuntimeError: not
        # the main thread (a test running the service in a worker thread)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
