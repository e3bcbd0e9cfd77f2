"""The signal service: every active strategy's signal at its rebalance times, on the bus.

``mts mts1b-research serve`` runs :func:`run_service` until SIGTERM. It reads the registry's
strategies in ``shadow``, ``paper`` or ``live`` (every minute, so a promotion or a disable is
taken without a restart), works out each one's next rebalance on the exchange calendar
(:func:`~mts1b_research.schedule.next_rebalance`: ``close-15m`` is 12:45 ET on a half day),
sleeps until the earliest, then computes the signal from the datalake
(:func:`~mts1b_research.signals.compute_signal`) and publishes it: shadow strategies on
``mts.v1.research.signals.shadow``, which the composer never reads, the others on
``mts.v1.research.signals.published``. A signal is published once per strategy version and
rebalance time (its message id), so a restarted service does not publish it twice. A strategy
whose signal cannot be computed (no data for its session, a factor that refuses its params)
raises an alert and the others go on. The registry's transitions are published on
``mts.v1.research.strategies.changed`` by :class:`BusTransitionPublisher`. Signed strategy
commands (promote, enable: :mod:`mts1b_research.commands`) are answered on
``mts.v1.research.commands.strategy``. While it serves it beats as ``mts1b-research``
(:data:`HEARTBEAT_SERVICE`) every ``heartbeat_interval`` seconds, so the alert router raises
``HeartbeatMissing`` when it dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mts1b_foundation import (
    Clock,
    ClockTick,
    MtsError,
    Signal,
    StrategySpec,
    StrategyState,
    StrategyTransition,
    SystemClock,
)
from mts1b_platform.alerts import raise_alert
from mts1b_platform.bus import Bus
from mts1b_platform.calendars import MarketCalendar
from mts1b_platform.heartbeat import DEFAULT_HEARTBEAT_INTERVAL, Heartbeater
from mts1b_platform.logging import get_logger
from mts1b_platform.replayclock import serve_ticks, start_clock
from mts1b_platform.shutdown import stop_on_signals
from mts1b_platform.signing import KeyRegistry

from mts1b_research.commands import StrategyCommandDesk
from mts1b_research.db import DEFAULT_SCHEMA
from mts1b_research.promotion import PromotionRule
from mts1b_research.registry import StrategyRegistry, TransitionRecord
from mts1b_research.schedule import next_rebalance, rebalance_times
from mts1b_research.signals import compute_signal, signal_subject

__all__ = ["ACTIVE", "HEARTBEAT_SERVICE", "BusTransitionPublisher", "ServeOptions",
           "SignalService", "run_service"]

_log = get_logger("mts1b_research.service")
ACTIVE = (StrategyState.SHADOW, StrategyState.PAPER, StrategyState.LIVE)
"""The states whose strategies publish signals."""
_REFRESH_SECONDS = 60.0
HEARTBEAT_SERVICE = "mts1b-research"
"""The name the signal service beats as: ``mts.v1.operations.heartbeats.mts1b-research``."""


class BusTransitionPublisher:
    """The registry's transitions on ``mts.v1.research.strategies.changed`` (once each)."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def transition(self, record: TransitionRecord) -> None:
        event = StrategyTransition(
            transition_id=record.transition_id, strategy=record.strategy,
            version=record.version, from_state=record.from_state, to_state=record.to_state,
            actor=record.actor, roles=list(record.roles), reason=record.reason, ts=record.ts)
        await self.bus.publish_acked("mts.v1.research.strategies.changed", event,
                                     msg_id=f"transition:{record.transition_id}")


@dataclass
class ServeOptions:
    dsn: str | None
    store: str | Path | None
    schema: str = DEFAULT_SCHEMA
    namespace: str | None = None
    calendar: str = "XNYS"
    keys: KeyRegistry | None = None
    """Public keys that may sign strategy commands; ``None``: every one is refused."""
    rule: PromotionRule | None = None
    """The promotion rule of signed promotions (default: the registry's)."""
    strategies: tuple[str, ...] = ()
    """Only these strategies (empty: every active one)."""
    replay_clock: bool = False
    """Run on a lockstep replay's clock (:mod:`mts1b_platform.replayclock`, participant
    ``research``): each replayed session's signals are published when the replay says the
    session is over, instead of at wall-clock rebalance times."""
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    """Seconds between two heartbeats (:data:`HEARTBEAT_SERVICE`)."""
    heartbeat_instance: str = "default"
    """Which copy of the signal service the heartbeats come from."""


class SignalService:
    """What the service does at a rebalance, apart from the process around it (tests call
    :meth:`publish_due` directly)."""

    def __init__(self, bus: Bus, registry: StrategyRegistry, store: Any, *,
                 calendar: str = "XNYS", only: tuple[str, ...] = ()) -> None:
        self.bus = bus
        self.registry = registry
        self.store = store
        self.calendar_name = calendar
        self.calendar = MarketCalendar(calendar)
        self.clock: Clock = SystemClock()
        self.published: list[Signal] = []
        self.only = frozenset(only)

    async def active(self) -> list[StrategySpec]:
        return [r.spec for r in await self.registry.list(include_retired=False)
                if r.state in ACTIVE and (not self.only or r.spec.name in self.only)]

    def next_time(self, spec: StrategySpec, after: dt.datetime) -> dt.datetime:
        return next_rebalance(spec.rebalance, after, self.calendar_name)

    async def publish_due(self, spec: StrategySpec, at: dt.datetime) -> Signal | None:
        """Compute and publish ``spec``'s signal for the rebalance at ``at``; ``None`` (and an
        alert) when it cannot be computed."""
        session = at.astimezone(self.calendar.tz).date()
        try:
            signal = await asyncio.to_thread(compute_signal, spec, self.store, session, at)
        except MtsError as exc:
            await self._alert(f"no signal for {spec.name} v{spec.version} at {at.isoformat()}:"
                              f" {exc.message}", strategy=spec.name)
            return None
        # once per mode, strategy version and rebalance time: a shadow strategy promoted
        # at a rebalance it already published in shadow still publishes it live
        await self.bus.publish_acked(signal_subject(spec), signal,
                                     msg_id=f"signal:{signal.mode}:{spec.name}:"
                                            f"v{spec.version}:{at.isoformat()}")
        self.published.append(signal)
        _log.info("signal published", strategy=spec.name, version=spec.version,
                  mode=signal.mode, names=len(signal.weights), at=at.isoformat())
        return signal

    async def on_tick(self, tick: ClockTick) -> None:
        """A replayed session is over: publish the signal of every active strategy that
        rebalances in it, stamped with the session's close (a daily bar is known at the
        close; it trades at the next session's open). A signal that cannot be computed raises
        an alert, as on the wall clock, and the replay goes on."""
        session = dt.date.fromisoformat(tick.session)
        for spec in await self.active():
            if rebalance_times(spec.rebalance, session, session, self.calendar_name):
                await self.publish_due(spec, tick.ts)

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``: sleep to the earliest next rebalance (re-reading the registry at
        least every minute), publish what is due. Each strategy's rebalances count from when
        the service first saw it active: a strategy promoted at noon does not publish the
        rebalances it missed before."""
        since: dict[tuple[str, int], dt.datetime] = {}
        while not stop.is_set():
            now = self.clock.now()
            specs = await self.active()
            due = {}
            for spec in specs:
                key = (spec.name, spec.version)
                due[key] = self.next_time(spec, since.setdefault(key, now))
            for spec in specs:
                key = (spec.name, spec.version)
                if due[key] <= now:
                    await self.publish_due(spec, due[key])
                    since[key] = due[key]
            upcoming = [t for t in due.values() if t > now]
            wait = min([(min(upcoming) - now).total_seconds()] if upcoming else [],
                       default=_REFRESH_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=min(max(wait, 0.0),
                                                                _REFRESH_SECONDS))

    async def _alert(self, text: str, **context: str) -> None:
        await raise_alert(self.bus, "mts1b-research", text, clock=self.clock,
                          context=context)


async def run_service(opts: ServeOptions, *, ready: asyncio.Event | None = None,
                      stop: asyncio.Event | None = None) -> SignalService:
    """Run until SIGTERM/SIGINT (or ``stop``); returns the service (what it published)."""
    from mts1b_datalake.store import Store

    overrides: dict[str, Any] = {"name": "mts1b-research"}
    if opts.namespace:
        overrides["namespace"] = opts.namespace
    bus = await Bus.connect(**overrides)
    registry = await StrategyRegistry.open(opts.dsn, schema=opts.schema, rule=opts.rule,
                                           publisher=BusTransitionPublisher(bus))
    try:
        await bus.declare_streams(["research", "operations"])
        store = Store(opts.store) if opts.store else Store.default()
        service = SignalService(bus, registry, store, calendar=opts.calendar,
                                only=opts.strategies)
        desk = StrategyCommandDesk(registry, opts.keys)
        commands = await bus.serve("mts.v1.research.commands.strategy", desk.handle,
                                   record_as="research")
        if opts.replay_clock:
            clock = await start_clock(bus)
            service.clock = clock
            await serve_ticks(bus, "research", service.on_tick, clock)
        done = stop or asyncio.Event()
        stop_on_signals(done)
        _log.info("research serving", strategies=len(await service.active()),
                  calendar=opts.calendar, namespace=opts.namespace or "")
        async with Heartbeater(bus, HEARTBEAT_SERVICE, instance=opts.heartbeat_instance,
                               interval_s=opts.heartbeat_interval):
            if ready is not None:
                ready.set()
            if opts.replay_clock:
                await done.wait()  # the replay's ticks drive it (on_tick)
            else:
                await service.run(done)
        with contextlib.suppress(Exception):
            await commands.drain()  # type: ignore[no-untyped-call]
        await bus.wait_requests()
        return service
    finally:
        await registry.close()
        await bus.drain()
