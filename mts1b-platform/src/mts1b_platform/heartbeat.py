"""A service's pulse: a :class:`~mts1b_foundation.Heartbeat` on the bus every few seconds.

Why one publisher for every service: a service that died cannot say so, so the alert router
(``mts1b-operations``) raises ``HeartbeatMissing`` for a service whose heartbeats stop, and a
deployment waits for the new release's first heartbeats before it calls the start good. Both
only work when every long-running service beats the same way: the same subject
(``mts.v1.operations.heartbeats.<service>``), the same model, a steady cadence, and a beat
that fails (NATS restarting, the operations stream not declared yet) never taking the
service down - it is logged and the next beat tries again.

Use it as an async context manager around the service's run::

    async with Heartbeater(bus, "mts1b-oms", instance="default", interval_s=10.0):
        await stop.wait()

The publish goes through JetStream (the ``operations`` stream, which the service declares):
the router reads heartbeats with a durable consumer, so one published while it restarts is
still seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from types import TracebackType
from typing import Any

from mts1b_foundation import Clock, Heartbeat, MtsError, SystemClock, parse_message

from mts1b_platform.bus import Bus
from mts1b_platform.logging import get_logger

__all__ = ["DEFAULT_HEARTBEAT_INTERVAL", "HEARTBEAT_SUBJECTS", "HeartbeatProbe", "Heartbeater",
           "heartbeat_subject"]

HEARTBEAT_SUBJECTS = "mts.v1.operations.heartbeats.*"
"""The wildcard the router consumes: one token per service."""
DEFAULT_HEARTBEAT_INTERVAL = 10.0
"""Seconds between two heartbeats unless a service is told otherwise."""
_log = get_logger("mts1b_platform.heartbeat")


def heartbeat_subject(service: str) -> str:
    """The subject ``service`` beats on: ``mts.v1.operations.heartbeats.<service>``."""
    return HEARTBEAT_SUBJECTS.replace("*", service)


class Heartbeater:
    """Publish ``Heartbeat(service, instance, interval_s, started_at, ts)`` every
    ``interval_s`` seconds from :meth:`start` until :meth:`stop`.

    The first beat goes out at once (a deployment's gate and the router learn of the service
    without waiting an interval); the next ones on a fixed cadence measured from the start, so
    a slow publish does not push the later beats back. A publish that fails is counted in
    ``failed`` and logged - once when the beats start failing and once when they get through
    again, not every interval - and the loop goes on.
    """

    def __init__(self, bus: Bus, service: str, *, instance: str = "default",
                 interval_s: float = DEFAULT_HEARTBEAT_INTERVAL, clock: Clock | None = None,
                 started_at: dt.datetime | None = None) -> None:
        if not interval_s > 0:
            raise ValueError(f"a heartbeat interval must be positive, not {interval_s!r}")
        self.bus = bus
        self.service = service
        self.instance = instance
        self.interval_s = float(interval_s)
        self.subject = heartbeat_subject(service)
        self._clock = clock or SystemClock()
        self.started_at = started_at or self._clock.now()
        self.sent = 0
        """Heartbeats the stream acknowledged."""
        self.failed = 0
        """Heartbeats that could not be published."""
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Begin beating (from inside the running event loop); a second call does nothing."""
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self._run(), name=f"heartbeat-{self.service}")

    async def stop(self) -> None:
        """Stop beating and wait for the loop to end; a publish in flight is awaited (it is
        bounded by the publish timeout), so no beat is sent after this returns."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def __aenter__(self) -> Heartbeater:
        self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    def beat_now(self) -> Heartbeat:
        """The heartbeat this instance would send at this moment."""
        return Heartbeat(service=self.service, instance=self.instance,
                         interval_s=self.interval_s, started_at=self.started_at,
                         ts=self._clock.now())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        failing = False
        while not self._stop.is_set():
            try:
                await self.bus.publish_acked(self.subject, self.beat_now(),
                                             timeout=min(5.0, self.interval_s))
            except Exception as exc:  # whatever went wrong, the service's pulse goes on
                self.failed += 1
                if not failing:
                    code = exc.code if isinstance(exc, MtsError) else type(exc).__name__
                    _log.warning("heartbeat not published; still trying every interval",
                                 service=self.service, error=code)
                failing = True
            else:
                self.sent += 1
                if failing:
                    _log.info("heartbeat published again", service=self.service,
                              failed=self.failed)
                failing = False
            due += self.interval_s
            now = loop.time()
            if due < now:  # a publish took longer than an interval: skip the missed slots
                due = now + self.interval_s - (now - due) % self.interval_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=due - now)


class HeartbeatProbe:
    """Listen to one service's heartbeats as they pass on the wire (core NATS, no consumer).

    Why: a check that a service beats while it runs and falls silent once it stopped is the
    same for every service - its tests, and a person's script against a running stack - so it
    is written once. Use it as an async context manager (or :meth:`open` and :meth:`close`),
    then :meth:`next` and :meth:`silent`.
    A heartbeat that does not decode is skipped.
    """

    def __init__(self, bus: Bus, service: str) -> None:
        self._bus = bus
        self.service = service
        self._beats: asyncio.Queue[Heartbeat] = asyncio.Queue()
        self._sub: Any = None

    async def _on_msg(self, msg: Any) -> None:
        with contextlib.suppress(MtsError, ValueError):
            await self._beats.put(parse_message(Heartbeat, msg.data))

    async def open(self) -> HeartbeatProbe:
        """Start listening (beats published before this are not seen)."""
        if self._sub is None:
            self._sub = await self._bus.nc.subscribe(
                self._bus.wire_subject(heartbeat_subject(self.service)), cb=self._on_msg)
        return self

    async def close(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    async def __aenter__(self) -> HeartbeatProbe:
        return await self.open()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def next(self, timeout: float = 10.0) -> Heartbeat:
        """The next heartbeat; ``TimeoutError`` when none comes within ``timeout`` seconds."""
        return await asyncio.wait_for(self._beats.get(), timeout)

    async def silent(self, in_flight: float = 0.5, window: float = 0.5) -> bool:
        """Whether no heartbeat arrives for ``window`` seconds, once the ones still on their
        way (published before the service stopped, for up to ``in_flight`` seconds) are
        dropped. Call it after the service stopped."""
        await asyncio.sleep(in_flight)
        while not self._beats.empty():
            self._beats.get_nowait()
        await asyncio.sleep(window)
        return self._beats.empty()
