"""A replay's clock, shared by every service that trades on it, moved in lockstep.

Why lockstep: a replay that publishes bars at a fixed rate races the services behind it - a
signal computed late is traded on a later bar than it would be live, and a slow machine gives
other trades than a fast one. In lockstep the replay publishes a session's bars, then hands the
session's :class:`~mts1b_foundation.ClockTick` to each service on its clock *in turn*
(:func:`hand_out`; the order is the pipeline's: the venue fills on the bars, the OMS takes the
fills, the treasury books them, research publishes the signals of the close, the composer has
the OMS rebalance), each one answering only when it is done with the session
(:func:`serve_ticks`), and moves to the next session only when all have answered. ``--speed``
is then a maximum.

Each service runs on a :class:`ReplayClock`: ``now()`` is the current tick's time, so its
duplicate, rate and idempotency windows run on replay time. A service that restarts mid-replay
reads the replay's current tick from the KV bucket
(:data:`~mts1b_foundation.REPLAY_CLOCK_BUCKET`) with :func:`load_tick`; the replay, which keeps
asking until every service answered, hands it the tick again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from mts1b_foundation import (
    REPLAY_CLOCK_BUCKET,
    Clock,
    ClockTick,
    CommandReply,
    CorporateAction,
    MtsError,
    ReplyCode,
    SystemClock,
    parse_message,
)
from nats.aio.subscription import Subscription

from mts1b_platform.bus import Bus, BusError
from mts1b_platform.logging import get_logger

__all__ = ["ACTIONS_SUBJECT", "ReplayClock", "ReplayStalled", "hand_out", "load_tick",
           "serve_ticks", "start_clock", "stored_actions", "tick_subject", "wait_consumed"]

_log = get_logger("mts1b_platform.replayclock")
_KEY = "tick"
ACTIONS_SUBJECT = "mts.v1.datalake.actions.*"
"""Where a lockstep replay publishes each session's corporate actions, before its bars."""

OnTick = Callable[[ClockTick], Awaitable[None]]
"""What a service does with a finished session; it returns when the session is done."""


def tick_subject(participant: str) -> str:
    """``mts.v1.clock.tick.<participant>``: where ``participant`` takes its ticks."""
    return f"mts.v1.clock.tick.{participant}"


class ReplayStalled(MtsError):
    """A service on the replay's clock refused a tick, or did not answer in time."""

    code = "PLATFORM.REPLAY_STALLED"


class ReplayClock:
    """A :class:`~mts1b_foundation.Clock` at the current tick's time; before the first tick,
    ``before`` (the wall clock by default). It never moves backwards: a repeated tick leaves it
    where it is."""

    def __init__(self, before: Clock | None = None) -> None:
        self._before = before or SystemClock()
        self._tick: ClockTick | None = None

    @property
    def tick(self) -> ClockTick | None:
        return self._tick

    def now(self) -> dt.datetime:
        return self._tick.ts if self._tick is not None else self._before.now()

    def set(self, tick: ClockTick) -> None:
        held = self._tick
        if held is None or held.replay_id != tick.replay_id or tick.ts >= held.ts:
            self._tick = tick


async def load_tick(bus: Bus) -> ClockTick | None:
    """The replay's current tick (``None`` when no replay runs in this namespace)."""
    kv = await bus.kv(REPLAY_CLOCK_BUCKET, history=1)
    return await kv.get_model(_KEY, ClockTick)


async def start_clock(bus: Bus) -> ReplayClock:
    """A service's clock on the replay: at the replay's current tick when one runs (a service
    restarted mid-replay), else waiting for the first."""
    clock = ReplayClock()
    tick = await load_tick(bus)
    if tick is not None:
        clock.set(tick)
    return clock


async def stored_actions(bus: Bus, session: str, *, timeout: float) -> list[CorporateAction]:
    """The corporate actions of ``session`` (``YYYY-MM-DD``) the datalake stream holds: what a
    service that missed some on core NATS (a restart, a slow subscription) reads back at the
    session's tick. Every stored action is read, not each subject's last: a symbol may have a
    split and a dividend on one day; actions are few. ``[]`` without a datalake stream."""
    from mts1b_platform.follow import follow

    found: list[CorporateAction] = []

    async def on_message(_subject: str, data: bytes) -> None:
        action = parse_message(CorporateAction, data)
        if action.ex_date == session:
            found.append(action)

    try:
        follower = await follow(bus, "datalake", ACTIONS_SUBJECT, on_message)
    except BusError:
        _log.warning("corporate actions not readable: no datalake stream", session=session)
        return []
    try:
        await follower.caught_up(timeout)
    finally:
        await follower.stop()
    return found


async def serve_ticks(bus: Bus, participant: str, on_tick: OnTick, clock: ReplayClock
                      ) -> Subscription:
    """Answer ``participant``'s ticks: set ``clock``, await ``on_tick``, reply ``ok``. A tick
    this process finished already is answered at once; one ``on_tick`` fails on is answered
    ``ok=False`` with the error's code and message (never an internal exception's text), and
    the replay stops there."""
    done: dict[str, int] = {}

    async def handle(tick: ClockTick) -> CommandReply:
        if done.get(tick.replay_id, 0) >= tick.seq:
            return CommandReply(ok=True, message=f"session {tick.session} done already")
        clock.set(tick)
        try:
            await on_tick(tick)
        except MtsError as exc:
            _log.error("tick failed", participant=participant, session=tick.session,
                       error=exc.code)
            return CommandReply(ok=False, code=ReplyCode.INTERNAL_ERROR,
                                message=f"{participant}: {exc.message}"[:2000])
        except Exception as exc:
            _log.error("tick failed", participant=participant, session=tick.session,
                       error=type(exc).__name__)
            return CommandReply(ok=False, code=ReplyCode.INTERNAL_ERROR,
                                message=f"{participant} could not finish session "
                                        f"{tick.session} (see its log)")
        done[tick.replay_id] = tick.seq
        return CommandReply(ok=True)

    return await bus.serve(tick_subject(participant), handle)


async def hand_out(bus: Bus, tick: ClockTick, participants: Sequence[str], *,
                   timeout: float = 120.0, attempt_timeout: float = 30.0,
                   on_wait: Callable[[str, float], Any] | None = None) -> None:
    """Record ``tick`` as the replay's time, then have each participant finish it, in order.

    A participant that nobody serves yet (starting, restarting after a crash) or that does not
    answer within ``attempt_timeout`` is asked again until ``timeout`` seconds have passed;
    then, or when it answers ``ok=False``, :class:`ReplayStalled` is raised naming it.
    ``on_wait(participant, waited_seconds)`` is called before each new attempt.
    """
    kv = await bus.kv(REPLAY_CLOCK_BUCKET, history=1)
    await kv.put(_KEY, tick)
    for participant in participants:
        started = time.monotonic()
        while True:
            try:
                reply = await bus.request(tick_subject(participant), tick,
                                          timeout=attempt_timeout, reply_model=CommandReply)
            except BusError as exc:
                waited = time.monotonic() - started
                if waited >= timeout:
                    raise ReplayStalled(
                        f"{participant} did not finish session {tick.session} within "
                        f"{timeout:.0f}s ({exc.message})", participant=participant,
                        session=tick.session) from None
                if on_wait is not None:
                    on_wait(participant, waited)
                await asyncio.sleep(min(1.0, max(timeout - waited, 0.0)))
                continue
            if not isinstance(reply, CommandReply) or not reply.ok:
                message = reply.message if isinstance(reply, CommandReply) else "no reply"
                raise ReplayStalled(f"{participant} refused session {tick.session}: {message}",
                                    participant=participant, session=tick.session)
            break


async def wait_consumed(bus: Bus, domain: str, durable: str, *, timeout: float = 60.0) -> None:
    """Return once the durable consumer ``durable`` of ``domain``'s stream has every message
    stored so far delivered and acknowledged: what a service checks before it says a session
    is done. Raises :class:`ReplayStalled` after ``timeout`` seconds."""
    stream = bus.stream_for(domain)
    deadline = time.monotonic() + timeout
    while True:
        info = await bus.js.consumer_info(stream, durable)
        if info.num_pending == 0 and info.num_ack_pending == 0:
            return
        if time.monotonic() >= deadline:
            raise ReplayStalled(f"consumer {durable} still has {info.num_pending} message(s) "
                                f"to take and {info.num_ack_pending} to finish after "
                                f"{timeout:.0f}s", durable=durable)
        await asyncio.sleep(0.02)
