"""Rebuild a piece of state from a JetStream subject's history, then keep it current.

Why replay and not a durable consumer: some services' picture is the sum of every event so far
(the composer's: each fund's allocations, its last NAV, what each sleeve holds, which strategies
are disabled, the last price of each symbol), not the events since it last acknowledged. A
durable consumer resumes where the previous process stopped and would leave the new one blind
to everything before; an ordered consumer from the first stored message (or from each
subject's last one, for prices) gives the whole picture on every start, with nothing to clean
up after a SIGKILL. :meth:`Follower.caught_up` says when the history is in, so the service
acts only on a complete picture.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import nats.js.errors
from nats.js import api

from mts1b_platform.bus import Bus, BusError
from mts1b_platform.logging import get_logger

__all__ = ["Follower", "follow", "history"]

_log = get_logger("mts1b_platform.follow")

OnMessage = Callable[[str, bytes], Awaitable[None]]
"""``(logical subject, payload)``: called in stream order, one message at a time."""


class Follower:
    """One ordered consumer feeding ``on_message``; :meth:`caught_up` once the stored history
    (as it stood when the follower started) has been handed over."""

    def __init__(self, bus: Bus, subject: str, on_message: OnMessage) -> None:
        self.bus = bus
        self.subject = subject
        self.on_message = on_message
        self._sub: Any = None
        self._stream = ""
        self._target = 0
        self._seen = 0
        self._moved = asyncio.Event()
        self._done = asyncio.Event()

    async def start(self, stream: str, *, last_per_subject: bool = False) -> None:
        """Subscribe from the first stored message (or each subject's last); :class:`BusError`
        when ``stream`` does not exist."""
        wire = self.bus.wire_subject(self.subject)
        self._stream = stream
        try:
            info = await self.bus.js.stream_info(stream, subjects_filter=wire)
        except nats.js.errors.NotFoundError:
            raise BusError(f"stream {stream} does not exist: nothing was published to "
                           f"{self.subject} here", stream=stream) from None
        # what is stored under the filter now; later messages are live, not history
        self._target = info.state.last_seq if _stored(info) else 0
        if self._target == 0:
            self._done.set()
        policy = (api.DeliverPolicy.LAST_PER_SUBJECT if last_per_subject
                  else api.DeliverPolicy.ALL)
        self._sub = await self.bus.js.subscribe(
            wire, stream=stream, ordered_consumer=True, cb=self._on_msg,
            config=api.ConsumerConfig(deliver_policy=policy))

    async def _on_msg(self, msg: Any) -> None:
        try:
            await self.on_message(self.bus.logical_subject(msg.subject), msg.data)
        except Exception as exc:  # one unreadable event must not stop the picture
            _log.error("event not applied", subject=msg.subject, error=type(exc).__name__)
        meta = msg.metadata
        self._seen = max(self._seen, meta.sequence.stream)
        self._moved.set()
        if meta.num_pending == 0 or meta.sequence.stream >= self._target:
            self._done.set()

    async def sync(self, timeout: float) -> bool:
        """Whether every message stored under the subject *now* has been handed over within
        ``timeout`` seconds: what a service on a lockstep replay checks before it acts on a
        session (the events of the services before it in the session must be in its picture).
        For a subject without wildcards."""
        try:
            last = await self.bus.js.get_last_msg(self._stream,
                                                  self.bus.wire_subject(self.subject))
        except Exception:  # nothing stored under it: nothing to wait for
            return True
        deadline = asyncio.get_running_loop().time() + timeout
        while self._seen < (last.seq or 0):
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return False
            self._moved.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._moved.wait(), left)
        return True

    async def caught_up(self, timeout: float) -> bool:
        """Whether the history was handed over within ``timeout`` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._done.wait(), timeout)
        return self._done.is_set()

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None


def _stored(info: Any) -> bool:
    """Whether the stream holds any message under the filter the server was asked with: it
    lists the matching subjects with their counts, and none (``None``) when nothing
    matches."""
    return any(count for count in (info.state.subjects or {}).values())


async def follow(bus: Bus, domain: str, subject: str, on_message: OnMessage, *,
                 last_per_subject: bool = False) -> Follower:
    """Start a :class:`Follower` of ``subject`` in ``domain``'s stream."""
    follower = Follower(bus, subject, on_message)
    await follower.start(bus.stream_for(domain), last_per_subject=last_per_subject)
    return follower


async def history(bus: Bus, domain: str, subject: str, *, timeout: float = 60.0,
                  last_per_subject: bool = False) -> list[tuple[str, bytes]]:
    """Every message stored under ``subject`` in ``domain``'s stream when called (or each
    subject's last, with ``last_per_subject``), in stream order, as ``(logical subject,
    payload)``: what a report or a one-shot command reads, where a service would
    :func:`follow`. :class:`BusError` when the stream does not exist or the history is not in
    within ``timeout`` seconds (a partial history must never pass for the whole one)."""
    got: list[tuple[str, bytes]] = []

    async def keep(logical: str, data: bytes) -> None:
        got.append((logical, data))

    follower = await follow(bus, domain, subject, keep, last_per_subject=last_per_subject)
    try:
        if not await follower.caught_up(timeout):
            raise BusError(f"the history of {subject} was not read within {timeout:g} s "
                           f"({len(got)} messages so far)", stream=bus.stream_for(domain))
    finally:
        await follower.stop()
    return got
