"""``mts mts1b-portfolio serve``: the composer as a NATS service, one target per fund.

What it does:

- takes every published strategy signal (``mts.v1.research.signals.published``; it never
  reads ``...signals.shadow``) and, for each fund the strategy has a sleeve in, composes the
  fund's target from the latest signal of each of its sleeves
  (:meth:`~mts1b_portfolio.picture.FundPicture.compose`) and sends it to the OMS on
  ``mts.v1.oms.commands.rebalance``, stamped with the signal's rebalance time: the OMS
  identifies a rebalance by fund and time, so a repeat is a duplicate and a new time trades;
- takes every strategy transition (``mts.v1.research.strategies.changed``): a strategy leaving
  ``paper``/``live`` (disabled, retired) has its sleeve dropped at once - each fund it is in is
  composed again without it, stamped with the transition's time.

Several strategies of one fund usually rebalance at the same time: a fund is composed once all
its traded sleeves have a signal of that time, or ``settle_seconds`` after the first arrived,
whichever is first.

Nothing is lost to a crash: a signal or transition is acknowledged only after the fund it
touches is marked *pending* in the KV bucket ``portfolio_pending`` (and the signal kept in
``portfolio_signals``); a pending fund stays pending until the OMS has answered its target.
A restarted composer composes every fund still pending; the repeat of a target the OMS had
already taken is answered as a duplicate and trades nothing. The rest of the picture (funds,
allocations, NAVs, sleeve positions, strategy states, prices) is rebuilt from the streams on
every start (:mod:`~mts1b_platform.follow`).

A target the OMS refuses in part (a halted strategy's symbol, a gate) and a fund that cannot be
composed (a symbol with no price) raise an alert on ``mts.v1.operations.alerts.raised`` and the
service goes on; an OMS that does not answer is asked again with a growing delay.

While it serves it beats as ``mts1b-portfolio`` (:data:`HEARTBEAT_SERVICE`) on
``mts.v1.operations.heartbeats.mts1b-portfolio`` every ``heartbeat_interval`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from mts1b_foundation import (
    TREASURY_FUNDS_BUCKET,
    Allocation,
    Bar,
    Clock,
    ClockTick,
    CommandReply,
    CorporateAction,
    Equity,
    FundConfig,
    FundNav,
    Instrument,
    MtsError,
    Position,
    RebalanceReport,
    Severity,
    Signal,
    StrategyTransition,
    SystemClock,
    WireModel,
    parse_message,
)
from mts1b_platform.alerts import raise_alert
from mts1b_platform.bus import Bus, BusError, Delivery, KeyValue
from mts1b_platform.follow import Follower, follow
from mts1b_platform.heartbeat import DEFAULT_HEARTBEAT_INTERVAL, Heartbeater
from mts1b_platform.logging import get_logger
from mts1b_platform.replayclock import (
    ReplayStalled,
    serve_ticks,
    start_clock,
    stored_actions,
    wait_consumed,
)
from mts1b_platform.shutdown import stop_on_signals

from mts1b_portfolio.atopen import CloseSnapshot, capital_at_open
from mts1b_portfolio.errors import ComposeInputError
from mts1b_portfolio.picture import TRADED, ComposerLimits, FundPicture, NothingToCompose

__all__ = ["HEARTBEAT_SERVICE", "PENDING_BUCKET", "SIGNALS_BUCKET", "ComposerService", "Pending",
           "ServeOptions", "run_service"]

_log = get_logger("mts1b_portfolio.service")
SOURCE = "mts1b-portfolio"
HEARTBEAT_SERVICE = SOURCE
"""The name the composer beats as: ``mts.v1.operations.heartbeats.mts1b-portfolio``."""
PENDING_BUCKET = "portfolio_pending"
"""KV bucket: fund id -> the rebalance the composer owes that fund (JSON)."""
SIGNALS_BUCKET = "portfolio_signals"
"""KV bucket: strategy id -> its latest published signal, as the composer took it."""
_RETRY = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


@dataclass
class Pending:
    """A rebalance owed to one fund: its time, why, and when it may be composed."""

    as_of: dt.datetime
    reason: str
    due: float
    """``time.time()`` after which it is composed even if not every sleeve has reported."""
    tries: int = 0
    snapshot: CloseSnapshot | None = None
    """Sizing at the open: the fund at the close the rebalance was decided (taken at that
    session's close tick, kept here so that a restarted composer still has it)."""

    def to_json(self) -> str:
        raw: dict[str, Any] = {"as_of": self.as_of.isoformat(), "reason": self.reason,
                               "due": self.due, "tries": self.tries}
        if self.snapshot is not None:
            raw["snapshot"] = self.snapshot.to_json()
        return json.dumps(raw)

    @classmethod
    def from_json(cls, data: bytes) -> Pending:
        raw = json.loads(data)
        snap = raw.get("snapshot")
        return cls(dt.datetime.fromisoformat(raw["as_of"]), str(raw["reason"]),
                   float(raw["due"]), int(raw.get("tries", 0)),
                   CloseSnapshot.from_json(snap) if snap is not None else None)


@dataclass
class ServeOptions:
    namespace: str | None = None
    limits: ComposerLimits = field(default_factory=ComposerLimits)
    settle_seconds: float = 5.0
    """How long a fund waits for its other sleeves' signals of the same time."""
    reply_timeout: float = 30.0
    """How long the OMS may take to answer a target."""
    catch_up_seconds: float = 60.0
    """How long the history of the streams may take to read at start."""
    durable_prefix: str = "portfolio"
    replay_clock: bool = False
    """Run on a lockstep replay's clock (:mod:`mts1b_platform.replayclock`): funds are composed
    when the replay says a session is over (every signal of it is in), not after
    ``settle_seconds``; the service answers the session once the OMS has answered every
    fund's target."""
    size_at_open: bool = False
    """With ``replay_clock``: compose at the next session's open tick (``portfolio@open`` in
    the replay's lockstep, after ``oms@open``), at the open prices and the NAV at the open net
    of the rebalance's commissions (:mod:`~mts1b_portfolio.atopen`), as a backtest filled
    at the next open sizes; a session's close tick only records what the fund held."""
    commission_bps: Decimal = Decimal(0)
    """``size_at_open``: the venue's commission, proportional to notional, in basis points."""
    lot: Decimal | None = None
    """The lot the composer rounds each trade to (default: whole shares); the OMS rounds each
    order to its instrument's lot as well."""
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    """Seconds between two heartbeats (:data:`HEARTBEAT_SERVICE`)."""
    heartbeat_instance: str = "default"
    """Which copy of the composer the heartbeats come from."""

    @property
    def signals_durable(self) -> str:
        return f"{self.durable_prefix}-signals"

    @property
    def transitions_durable(self) -> str:
        return f"{self.durable_prefix}-transitions"


class ComposerService:
    """The service's decisions, apart from the process around it (tests drive it directly)."""

    def __init__(self, bus: Bus, picture: FundPicture, pending_kv: KeyValue,
                 signals_kv: KeyValue, opts: ServeOptions) -> None:
        self.bus = bus
        self.picture = picture
        self.pending_kv = pending_kv
        self.signals_kv = signals_kv
        self.opts = opts
        self.pending: dict[str, Pending] = {}
        self.clock: Clock = SystemClock()
        self.sent: list[tuple[str, CommandReply]] = []
        """Each fund's target the OMS answered, with its reply, in order (for tests and
        status)."""
        self._wake = asyncio.Event()
        self._settling = asyncio.Lock()
        self.followers: list[Follower] = []
        """What rebuilds the picture (set by :func:`run_service`)."""
        self.actions: list[CorporateAction] = []
        """The corporate actions of the session being opened (sizing at the open)."""

    async def load(self) -> None:
        """The signals and pending rebalances a previous process left in the buckets."""
        for key in await self.signals_kv.keys():
            data = await self.signals_kv.get(key)
            if data is not None:
                with contextlib.suppress(MtsError):
                    self.picture.apply_signal(parse_message(Signal, data))
        for key in await self.pending_kv.keys():
            data = await self.pending_kv.get(key)
            if data is None:
                continue
            try:
                self.pending[key] = Pending.from_json(data)
            except (ValueError, KeyError, TypeError):
                _log.error("unreadable pending rebalance dropped", fund_id=key)
                await self.pending_kv.delete(key)

    # --- triggers (durable consumers: acknowledged once the fund is marked pending) -----------
    async def on_signal(self, delivery: Delivery[Signal]) -> None:
        signal = delivery.message
        if not self.picture.apply_signal(signal):
            return
        await self.signals_kv.put(signal.strategy_id, signal)
        funds = self.picture.funds_of(signal.strategy_id)
        if not funds:
            _log.warning("a signal of a strategy with no sleeve in any fund",
                         strategy=signal.strategy_id)
        # on a replay's clock the session's tick settles it, when every signal of it is in
        settle = math.inf if self.opts.replay_clock else self.opts.settle_seconds
        for fund_id in funds:
            await self._owe(fund_id, signal.as_of, f"signal of {signal.strategy_id}",
                            due=time.time() + settle)

    async def on_transition(self, delivery: Delivery[StrategyTransition]) -> None:
        change = delivery.message
        self.picture.apply_transition(change)
        if change.to_state in TRADED:
            return  # its next signal brings it back
        # stamped with the time the change reached the fund: the replay's on its clock
        at = self.clock.now() if self.opts.replay_clock else change.ts
        for fund_id in self.picture.funds_of(change.strategy):
            await self._owe(fund_id, at, f"{change.strategy} {change.to_state.value}",
                            due=time.time())

    async def _owe(self, fund_id: str, as_of: dt.datetime, reason: str, *, due: float) -> None:
        held = self.pending.get(fund_id)
        if held is not None:
            as_of = max(as_of, held.as_of)
            due = min(due, held.due)
            reason = f"{held.reason}; {reason}" if reason not in held.reason else held.reason
        owed = Pending(as_of, reason[:500], due)
        if self._complete(fund_id, as_of):
            owed.due = min(owed.due, time.time())
        await self.pending_kv.put(fund_id, owed.to_json())
        self.pending[fund_id] = owed
        self._wake.set()

    def _complete(self, fund_id: str, as_of: dt.datetime) -> bool:
        """Every sleeve the fund trades has a signal of ``as_of`` or later."""
        away = set(self.picture.composed_away(fund_id))
        sleeves = [s for s in self.picture.shares(fund_id) if s not in away]
        return all(s in self.picture.signals and self.picture.signals[s].as_of >= as_of
                   for s in sleeves)

    # --- composing ----------------------------------------------------------------------------
    async def run_due(self, *, everything: bool = False) -> None:
        """Compose and send every pending fund whose time has come (``everything``: every
        pending fund)."""
        async with self._settling:
            now = time.time()
            for fund_id, owed in sorted(self.pending.items()):
                if everything or owed.due <= now:
                    await self.settle(fund_id, owed)

    async def on_tick(self, tick: ClockTick) -> None:
        """A replay session is over: take every signal and transition of it, have the OMS
        rebalance every fund that owes one, and return once it answered them all. Sizing at
        the open, the close only records each owing fund's holdings and cash, and the open
        tick of the next session composes (:meth:`on_open`)."""
        if tick.phase == "open":
            if self.opts.size_at_open:
                await self.on_open(tick)
            return
        for durable in (self.opts.signals_durable, self.opts.transitions_durable):
            await wait_consumed(self.bus, "research", durable)
        await self._sync(tick)
        if self.opts.size_at_open:
            await self._snapshot(tick)
            return
        await self._settle_all(tick)

    async def _sync(self, tick: ClockTick) -> None:
        for follower in self.followers:  # the session's fills, NAV, allocations are in
            if "*" not in follower.subject and not await follower.sync(60):
                raise ReplayStalled(f"session {tick.session}: {follower.subject} is not read "
                                    "up to date after 60s", session=tick.session)

    async def _snapshot(self, tick: ClockTick) -> None:
        """Record, with each rebalance owed, the fund's cash struck at this close and what it
        holds: the open tick sizes from them."""
        for fund_id, owed in sorted(self.pending.items()):
            nav = self.picture.navs.get(fund_id)
            if nav is None or nav.session != tick.session:
                raise ReplayStalled(f"session {tick.session}: no NAV of fund {fund_id} struck "
                                    "for it (the treasury ticks before the composer)",
                                    session=tick.session, fund_id=fund_id)
            owed.snapshot = CloseSnapshot(tick.session, nav.cash,
                                          self.picture.fund_holdings(fund_id))
            await self.pending_kv.put(fund_id, owed.to_json())

    async def on_open(self, tick: ClockTick) -> None:
        """A session opens: once its bars and the OMS's positions after its corporate actions
        are in, compose every owing fund at the open and have the OMS rebalance it."""
        deadline = time.monotonic() + 60
        while self.picture.session_bars.get(tick.session, 0) < tick.bars:
            if time.monotonic() >= deadline:
                raise ReplayStalled(f"session {tick.session}: {tick.bars} bars published, "
                                    f"{self.picture.session_bars.get(tick.session, 0)} read "
                                    "after 60s", session=tick.session)
            await asyncio.sleep(0.005)
        await self._sync(tick)
        self.actions = await stored_actions(self.bus, tick.session, timeout=30)
        await self._settle_all(tick)

    async def _settle_all(self, tick: ClockTick) -> None:
        for attempt in range(len(_RETRY) + 1):
            await self.run_due(everything=True)
            if not self.pending:
                return
            await asyncio.sleep(_RETRY[min(attempt, len(_RETRY) - 1)])
        raise ReplayStalled(f"session {tick.session}: the OMS did not take the target of "
                            f"{', '.join(sorted(self.pending))}", session=tick.session)

    async def settle(self, fund_id: str, owed: Pending) -> CommandReply | None:
        """Compose ``fund_id`` at ``owed.as_of`` and have the OMS rebalance it; the pending
        mark is cleared once the OMS answered (or nothing can be composed), kept with a later
        ``due`` when it did not."""
        try:
            composition = self.picture.compose(fund_id, owed.as_of, self.opts.limits,
                                               **self._sizing(fund_id, owed))
        except NothingToCompose as exc:
            _log.info("nothing to compose", fund_id=fund_id, reason=exc.reason)
            await self._clear(fund_id)
            return None
        except ComposeInputError as exc:
            await raise_alert(self.bus, SOURCE, f"fund {fund_id} not composed at "
                              f"{owed.as_of.isoformat()}: {exc.message}",
                              context={"fund_id": fund_id})
            await self._clear(fund_id)
            return None
        try:
            reply = await self.bus.request("mts.v1.oms.commands.rebalance", composition.target,
                                           timeout=self.opts.reply_timeout,
                                           reply_model=CommandReply)
        except BusError as exc:
            owed.tries += 1
            owed.due = time.time() + _RETRY[min(owed.tries, len(_RETRY)) - 1]
            await self.pending_kv.put(fund_id, owed.to_json())
            if owed.tries == 3:
                await raise_alert(self.bus, SOURCE, f"the OMS does not take fund {fund_id}'s "
                                  f"target ({exc.message}); still trying",
                                  severity=Severity.WARNING, context={"fund_id": fund_id})
            _log.warning("rebalance not answered", fund_id=fund_id, tries=owed.tries)
            return None
        if not isinstance(reply, CommandReply):  # reply_model makes it one; for the type checker
            raise TypeError("the OMS's reply did not decode as a CommandReply")
        self.sent.append((fund_id, reply))
        await self._clear(fund_id)
        self._report(fund_id, owed, composition.report.excluded, reply)
        if not reply.ok:
            await raise_alert(self.bus, SOURCE, f"the OMS refused part of fund {fund_id}'s "
                              f"target at {owed.as_of.isoformat()}: {reply.message}",
                              severity=Severity.WARNING,
                              context={"fund_id": fund_id,
                                       "code": reply.code.value if reply.code else ""})
        return reply

    def _sizing(self, fund_id: str, owed: Pending) -> dict[str, Any]:
        """The capital, prices and lots to compose ``fund_id`` with: by default the last NAV
        and closes (``{}``); sizing at the open, those of :func:`capital_at_open`."""
        sizing: dict[str, Any] = {}
        if self.opts.lot is not None:
            sizing["instruments"] = self._instruments(fund_id)
        if not self.opts.size_at_open or owed.snapshot is None:
            return sizing
        session = self.clock.now().date().isoformat()
        try:
            opened = capital_at_open(
                owed.snapshot, self.picture.fund_holdings(fund_id),
                self.picture.opens_of(session), self.picture.closes_before(session),
                self.actions, self.picture.netted_weights(fund_id), self.opts.commission_bps)
        except KeyError as exc:
            raise ComposeInputError(f"prices[{exc.args[0]!r}]", None,
                                    "no open and no earlier close to size at") from None
        return {**sizing, "capital": opened.capital, "prices": opened.prices}

    def _instruments(self, fund_id: str) -> dict[str, Instrument]:
        """An equity of :attr:`ServeOptions.lot` for every symbol the fund's sleeves or
        holdings name."""
        lot = self.opts.lot or Decimal(1)
        symbols = set(self.picture.fund_holdings(fund_id))
        for signal in self.picture.signals.values():
            symbols |= set(signal.weights)
        return {s: Equity(symbol=s, lot_size=lot, min_quantity=lot) for s in sorted(symbols)}

    def _report(self, fund_id: str, owed: Pending, excluded: tuple[str, ...],
                reply: CommandReply) -> None:
        orders = 0
        if reply.payload:
            with contextlib.suppress(MtsError):
                orders = len(parse_message(RebalanceReport, reply.payload).orders)
        _log.info("fund rebalanced", fund_id=fund_id, as_of=owed.as_of.isoformat(),
                  reason=owed.reason, ok=reply.ok, code=reply.code.value if reply.code else "",
                  message=reply.message or "", orders=orders,
                  composed_away=",".join(excluded))

    async def _clear(self, fund_id: str) -> None:
        await self.pending_kv.delete(fund_id)
        self.pending.pop(fund_id, None)

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``: settle what is due, sleeping until the next due time or a new
        trigger."""
        while not stop.is_set():
            if not self.opts.size_at_open:  # else only a session's open tick composes
                await self.run_due()
            dues = [p.due for p in self.pending.values()]
            wait = max(min(dues) - time.time(), 0.05) if dues else 1.0
            self._wake.clear()
            waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
            _, rest = await asyncio.wait(waits, timeout=min(wait, 1.0),
                                         return_when=asyncio.FIRST_COMPLETED)
            for task in rest:
                task.cancel()


def _applying(model: type[WireModel], apply: Callable[[Any], None]
              ) -> Callable[[str, bytes], Awaitable[None]]:
    async def on_message(_subject: str, data: bytes) -> None:
        apply(parse_message(model, data))
    return on_message


async def _follow_picture(bus: Bus, picture: FundPicture) -> list[Follower]:
    """The followers that rebuild ``picture`` from the streams."""
    return [
        await follow(bus, "treasury", "mts.v1.treasury.allocations.published",
                     _applying(Allocation, picture.apply_allocation)),
        await follow(bus, "treasury", "mts.v1.treasury.nav.struck",
                     _applying(FundNav, picture.apply_nav)),
        await follow(bus, "oms", "mts.v1.oms.positions.updated",
                     _applying(Position, picture.apply_position)),
        await follow(bus, "research", "mts.v1.research.strategies.changed",
                     _applying(StrategyTransition, picture.apply_transition)),
        await follow(bus, "datalake", "mts.v1.datalake.bars.*",
                     _applying(Bar, picture.apply_bar), last_per_subject=True),
    ]


async def _follow_funds(picture: FundPicture, kv: KeyValue) -> None:
    async for key, value in kv.watch():
        try:
            picture.apply_fund(key, parse_message(FundConfig, value) if value else None)
        except MtsError as exc:
            _log.error("unreadable fund in the treasury's bucket", key=key, error=exc.code)


async def run_service(opts: ServeOptions, *, ready: asyncio.Event | None = None,
                      stop: asyncio.Event | None = None) -> ComposerService:
    """Run until SIGTERM/SIGINT (or ``stop``); returns the service (what it sent)."""
    overrides: dict[str, Any] = {"name": SOURCE}
    if opts.namespace:
        overrides["namespace"] = opts.namespace
    bus = await Bus.connect(**overrides)
    followers: list[Follower] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        await bus.declare_streams(["treasury", "oms", "research", "datalake", "operations", "dlq"])
        picture = FundPicture()
        funds_kv = await bus.kv(TREASURY_FUNDS_BUCKET, history=5)
        for key in await funds_kv.keys():
            data = await funds_kv.get(key)
            if data is not None:
                with contextlib.suppress(MtsError):
                    picture.apply_fund(key, parse_message(FundConfig, data))
        tasks.append(asyncio.get_running_loop().create_task(_follow_funds(picture, funds_kv)))
        followers = await _follow_picture(bus, picture)
        for follower in followers:
            if not await follower.caught_up(opts.catch_up_seconds):
                raise BusError(f"the history of {follower.subject} was not read within "
                               f"{opts.catch_up_seconds}s", subject=follower.subject)
        service = ComposerService(bus, picture, await bus.kv(PENDING_BUCKET, history=1),
                                  await bus.kv(SIGNALS_BUCKET, history=1), opts)
        service.followers = followers
        await service.load()
        consumers = [
            await bus.consume("mts.v1.research.signals.published", service.on_signal,
                              durable=opts.signals_durable),
            await bus.consume("mts.v1.research.strategies.changed", service.on_transition,
                              durable=opts.transitions_durable),
        ]
        if opts.replay_clock:
            clock = await start_clock(bus)
            service.clock = clock
            await serve_ticks(bus, "portfolio", service.on_tick, clock)
        done = stop or asyncio.Event()
        stop_on_signals(done)
        _log.info("portfolio composer serving", funds=len(picture.funds),
                  pending=len(service.pending), namespace=opts.namespace or "")
        async with Heartbeater(bus, HEARTBEAT_SERVICE, instance=opts.heartbeat_instance,
                               interval_s=opts.heartbeat_interval):
            if ready is not None:
                ready.set()
            await service.run(done)
        for consumer in consumers:
            await consumer.stop()
        return service
    finally:
        for task in tasks:
            task.cancel()
        for follower in followers:
            await follower.stop()
        await bus.drain()
