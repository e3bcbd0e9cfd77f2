"""Token buckets: how the dispatcher stays under a receiver's limits instead of hitting them.

Why buckets and not retries: Telegram answers a bot that exceeds its limits (about one message
a second per chat, 20 a minute per group, 30 a second in all) with 429 and a wait, and bots
that keep ignoring it get banned; grammY and python-telegram-bot both advise a throttling queue.
A bucket holds ``burst`` tokens and refills ``rate`` per second; :meth:`TokenBucket.acquire`
waits until a token is there. :meth:`TokenBucket.hold` empties it for a given time, which is
how a 429's ``retry_after`` is honoured by every later message to that chat, not only the one
refused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["TokenBucket"]


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: float = 1.0, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate!r}")
        if not burst >= 1:
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._stamp = clock()
        self._held_until = 0.0
        self._lock = asyncio.Lock()

    def _refill(self, now: float) -> None:
        if now > self._stamp:  # the stamp lies ahead while a hold lasts
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now

    def wait_time(self) -> float:
        """Seconds until a token is free (0: now)."""
        now = self._clock()
        self._refill(now)
        held = max(0.0, self._held_until - now)
        missing = max(0.0, 1 - self._tokens) / self.rate
        return max(held, missing)

    async def acquire(self) -> None:
        async with self._lock:
            while (wait := self.wait_time()) > 0:
                await asyncio.sleep(wait)
            self._tokens -= 1

    def hold(self, seconds: float) -> None:
        """No token for ``seconds`` (a receiver said to wait), then one, and the rate after."""
        now = self._clock()
        self._refill(now)
        self._held_until = max(self._held_until, now + seconds)
        self._tokens = 1.0
        self._stamp = max(self._stamp, self._held_until)
