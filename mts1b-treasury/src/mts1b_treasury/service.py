"""The treasury service: the OMS's order events into the ledger, signed fund configurations,
broker account snapshots kept for reconciliation, the funds published.

``mts mts1b-treasury serve`` runs :func:`run_service` until SIGTERM. At start it publishes
every fund again (a change committed while the bus was away reaches the OMS now) and opens the
ledger accounts of every open fund. While it serves it beats as ``mts1b-treasury``
(:data:`HEARTBEAT_SERVICE`) on ``mts.v1.operations.heartbeats.mts1b-treasury`` every
``heartbeat_interval`` seconds. Then:

* a durable JetStream consumer (``treasury-orders``) takes ``mts.v1.oms.orders.>`` in order
  and applies each event (:class:`~mts1b_treasury.orderflow.OrderFlow`): a fill is posted once
  (a redelivery is a duplicate), a bust or correction reversed. An event the books refuse for
  good - a fill whose trade id holds other terms, a fill of an order never announced, a fund
  the treasury does not know - is dead-lettered with the reason and raised as an
  :class:`~mts1b_foundation.Alert`, then acknowledged: it does not block the events behind it.
  A failure that may pass (PostgreSQL away) is retried by the consumer with backoff.
* ``mts.v1.treasury.commands.configure`` takes signed :class:`~mts1b_foundation.ConfigureFund`
  commands (:mod:`mts1b_platform.signing`): a configuration that loosens a limit needs a key
  with the ``risk`` role, any other change ``operations``.
* a durable consumer (``treasury-accounts``) keeps the latest broker
  :class:`~mts1b_foundation.AccountSnapshot` per broker account;
* it follows ``mts.v1.datalake.bars.*`` (live) for closing marks (:class:`MarkBook`), and a
  grace period after each session's close on the calendar strikes every open fund's NAV
  (:func:`~mts1b_treasury.strike.strike_fund`), stores it, publishes it on
  ``mts.v1.treasury.nav.struck``, and reconciles it with the fund's broker snapshot taken
  since the close. A fund that holds a symbol with no mark is not struck: an alert names the
  symbols (``nav strike --marks`` strikes it by hand).

**On a lockstep replay's clock** (``serve --replay-clock``, :mod:`mts1b_platform.replayclock`,
participant ``treasury``) there is no scheduled strike: the replay says when a session is
over. The service runs on a :class:`~mts1b_platform.replayclock.ReplayClock` (the replay's
current tick at start, from its KV bucket) and, on each tick (:meth:`TreasuryService.on_tick`),
books every order event and account snapshot stored so far, books the session's corporate
actions (:class:`~mts1b_foundation.CorporateAction`, from ``mts.v1.datalake.actions.*``: splits
and cash dividends effective at the session's open, :mod:`mts1b_treasury.corporate`), makes sure
it holds the session's bars, strikes every open fund at that session's close, publishes each
NAV, then answers. Signed
configurations are still checked against the wall clock: their signer stamps them with the
wall time, and a replayed session's time would put every fresh command outside its window.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from mts1b_foundation import (
    AccountSnapshot,
    Bar,
    Clock,
    ClockTick,
    CommandReply,
    ConfigureFund,
    CorporateAction,
    FundNav,
    MtsError,
    OrderEvent,
    ReplyCode,
    SystemClock,
    parse_message,
    symbol_subject,
)
from mts1b_platform.alerts import raise_alert
from mts1b_platform.bus import Bus, Delivery
from mts1b_platform.calendars import MarketCalendar
from mts1b_platform.heartbeat import DEFAULT_HEARTBEAT_INTERVAL, Heartbeater
from mts1b_platform.logging import get_logger
from mts1b_platform.replayclock import (
    ACTIONS_SUBJECT,
    ReplayClock,
    serve_ticks,
    start_clock,
    stored_actions,
    wait_consumed,
)
from mts1b_platform.shutdown import stop_on_signals
from mts1b_platform.signing import (
    DEFAULT_COMMAND_WINDOW,
    KeyRegistry,
    Role,
    SignedCommandVerifier,
    claim_nonce_in,
)

from mts1b_treasury.corporate import book_actions
from mts1b_treasury.db import DEFAULT_SCHEMA, TreasuryDb
from mts1b_treasury.errors import TreasuryError, TreasuryInputError
from mts1b_treasury.funds import FundRegistry
from mts1b_treasury.ledger import Ledger
from mts1b_treasury.ledger_model import PostStatus
from mts1b_treasury.limits import loosened_limits
from mts1b_treasury.marks import MarkBook
from mts1b_treasury.orderflow import OrderFlow, is_permanent
from mts1b_treasury.publish import BusFundPublisher
from mts1b_treasury.strike import nav_inputs, strike_fund

__all__ = ["HEARTBEAT_SERVICE", "ServeOptions", "TreasuryService", "run_service"]

_log = get_logger("mts1b_treasury.service")
SOURCE = "mts1b-treasury"
HEARTBEAT_SERVICE = SOURCE
"""The name the treasury beats as: ``mts.v1.operations.heartbeats.mts1b-treasury``."""


@dataclass
class ServeOptions:
    dsn: str
    schema: str = DEFAULT_SCHEMA
    namespace: str | None = None
    nats_url: str | None = None
    keys: KeyRegistry | None = None
    """Public keys that may sign fund configurations; ``None``: every one is refused."""
    command_window: dt.timedelta = DEFAULT_COMMAND_WINDOW
    durable_prefix: str = "treasury"
    calendar: str = "XNYS"
    strike_grace: float | None = 300.0
    """Seconds after each close before the scheduled strike; ``None``: no scheduled strike."""
    ack_wait: float | None = None
    """Seconds before an event taken but not acknowledged (the process died holding it) is
    delivered again; ``None``: the bus setting (``MTS_NATS_ACK_WAIT``, 30 s by default)."""
    replay_clock: bool = False
    """Run on a lockstep replay's clock (participant ``treasury``): no scheduled strike; each
    tick books what the OMS stored so far, then strikes the tick's session (see the module)."""
    bars_wait: float = 10.0
    """On a tick, seconds to wait for the session's bars (``ClockTick.bars`` of them) to reach
    this process before the marks still missing are read back from the datalake's stream."""
    drain_timeout: float = 60.0
    """On a tick, seconds the order and account consumers may take to book what is stored."""
    actions_wait: float = 10.0
    """On a tick, seconds to wait for the session's corporate actions (``ClockTick.actions`` of
    them) to reach this process before the missing ones are read back from the datalake's
    stream."""
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    """Seconds between two heartbeats (:data:`HEARTBEAT_SERVICE`)."""
    heartbeat_instance: str = "default"
    """Which copy of the treasury the heartbeats come from."""

    @property
    def orders_durable(self) -> str:
        return f"{self.durable_prefix}-orders"

    @property
    def accounts_durable(self) -> str:
        return f"{self.durable_prefix}-accounts"


class _Nonces:
    def __init__(self, db: TreasuryDb) -> None:
        self.db = db

    async def claim_nonce(self, key_id: str, nonce: str, *, command: str,
                          signed_at: dt.datetime, now: dt.datetime,
                          forget_before: dt.datetime) -> bool:
        return await claim_nonce_in(self.db.pool, key_id, nonce, command=command,
                                    signed_at=signed_at, now=now, forget_before=forget_before)


class TreasuryService:
    """The handlers, separate from the process around them (tests drive them directly)."""

    def __init__(self, bus: Bus, db: TreasuryDb, *, keys: KeyRegistry | None,
                 command_window: dt.timedelta = DEFAULT_COMMAND_WINDOW,
                 calendar: str = "XNYS", clock: Clock | None = None,
                 opts: ServeOptions | None = None) -> None:
        self.bus = bus
        self.db = db
        self.publisher = BusFundPublisher(bus)
        self.registry = FundRegistry(db, self.publisher)
        self.ledger = Ledger(db)
        self.flow = OrderFlow(db, self.ledger)
        self.clock: Clock = clock or SystemClock()
        self.opts = opts
        # the wall clock, whatever self.clock is: a signer stamps its command with wall time
        self.verifier = (None if keys is None else SignedCommandVerifier(
            keys, _Nonces(db), clock=SystemClock(), window=command_window,
            receiver="treasury"))
        self.snapshots: dict[tuple[str, str], AccountSnapshot] = {}
        self.calendar_name = calendar
        self.calendar = MarketCalendar(calendar)
        self.marks = MarkBook(self.calendar.tz)
        self.struck: list[FundNav] = []
        self.seen: dict[dt.date, set[str]] = {}
        """The symbols whose bar of a session reached this process (the last few sessions)."""
        self.actions: dict[dt.date, dict[str, CorporateAction]] = {}
        """The corporate actions by ex-date and id that reached this process (a few sessions)."""
        self._accounts_open: set[str] = set()
        self.stats = {"events": 0, "posted": 0, "duplicates": 0, "refused": 0}

    async def open_accounts(self) -> int:
        """Open the ledger accounts of every open fund (idempotent); returns how many."""
        records = await self.registry.funds()
        for record in records:
            await self.ledger.open_fund_accounts(record.fund_id, record.config.tax_lot_method)
            self._accounts_open.add(record.fund_id)
        return len(records)

    async def _ensure_accounts(self, fund_id: str) -> None:
        if fund_id in self._accounts_open:
            return
        record = await self.registry.get(fund_id)
        if record is None:
            raise _Refused(f"fund {fund_id!r} is not a treasury fund")
        await self.ledger.open_fund_accounts(fund_id, record.config.tax_lot_method)
        self._accounts_open.add(fund_id)

    async def on_order_event(self, delivery: Delivery[OrderEvent]) -> None:
        """One order event into the ledger (see the module docstring)."""
        event = delivery.message
        self.stats["events"] += 1
        try:
            await self._ensure_accounts(event.fund_id)
            outcome = await self.flow.apply(event)
        except (_Refused, TreasuryError, ValueError) as exc:
            await self._refuse(delivery, event, _reason(exc))
            return
        if outcome is None:
            return
        if is_permanent(outcome):
            await self._refuse(delivery, event, f"trade {outcome.key} is posted with other "
                                                "terms: conflicting fill refused")
            return
        self.stats["posted" if outcome.status.value == "posted" else "duplicates"] += 1

    async def _refuse(self, delivery: Delivery[OrderEvent], event: OrderEvent,
                      reason: str) -> None:
        self.stats["refused"] += 1
        await self.bus.dead_letter(delivery.subject, event.to_json(), delivery.headers,
                                   reason=reason, deliveries=delivery.deliveries,
                                   consumer="treasury-orders",
                                   dedupe_key=f"dlq-treasury-{delivery.stream_seq}")
        await self._alert(f"order event not booked: {reason}", fund_id=event.fund_id,
                          order_id=event.order_id, event_type=event.event_type.value)

    async def on_configure(self, command: ConfigureFund) -> CommandReply:
        """A signed fund configuration: checked, then applied as the fund's next version."""
        now = self.clock.now()
        if self.verifier is None:
            return CommandReply(ok=False, code=ReplyCode.UNAUTHORIZED, ts=now,
                                message="this treasury has no key registry: signed fund "
                                        "configurations are refused (serve --keys)")
        config = command.config
        current = await self.registry.get(config.fund_id)
        if current is None or not current.is_open:
            return CommandReply(ok=False, code=ReplyCode.VALIDATION_FAILED, ts=now,
                                message=f"fund {config.fund_id!r} is not an open treasury "
                                        "fund (create it with `mts mts1b-treasury fund "
                                        "create`)", context={"field": "config.fund_id"})
        loosened = loosened_limits(current.config, config)
        role = Role.RISK if loosened or _risk_only(self.verifier.registry, command.key_id) \
            else Role.OPERATIONS
        why = f" (it loosens {', '.join(loosened)})" if loosened else ""
        key = await self.verifier.check(command, role, why_role=why,
                                        log={"fund_id": config.fund_id})
        if isinstance(key, CommandReply):
            return key
        try:
            record = await self.registry.configure(
                config, actor=key.name, roles={r.value for r in key.roles},
                reason=command.reason)
        except TreasuryError as exc:
            return CommandReply(ok=False, code=ReplyCode.VALIDATION_FAILED, ts=now,
                                message=exc.message[:4000])
        return CommandReply(ok=True, ts=now, message=f"fund {record.fund_id} is at version "
                                                     f"{record.version}",
                            context={"version": record.version,
                                     "loosened": ",".join(loosened)})

    async def on_bar(self, msg: Any) -> None:
        """A bar from the bus: kept as a mark when it closes its session (bad ones ignored)."""
        try:
            bar = parse_message(Bar, msg.data)
            session = self.marks.session_of(bar)
            if self.calendar.is_session(session):
                self.marks.add(bar, self.calendar.close_of(session))
                self.seen.setdefault(session, set()).add(bar.symbol)
                for old in sorted(self.seen)[:-self.marks.keep]:
                    del self.seen[old]
        except Exception as exc:  # a malformed or off-calendar bar is not a mark
            _log.debug("bar ignored", error=type(exc).__name__)

    async def on_action(self, msg: Any) -> None:
        """A corporate action from the bus: kept for the tick of its ex-date (bad ones
        ignored); booked only there, after the session's fills, before its strike."""
        try:
            self._take_action(parse_message(CorporateAction, msg.data))
        except Exception as exc:  # a malformed action is not one to book
            _log.warning("corporate action ignored", error=type(exc).__name__)

    def _take_action(self, action: CorporateAction) -> None:
        day = dt.date.fromisoformat(action.ex_date)
        self.actions.setdefault(day, {})[action.action_id] = action
        for old in sorted(self.actions)[:-self.marks.keep]:
            del self.actions[old]

    async def strike_session(self, session: dt.date) -> list[FundNav]:
        """Strike every open fund at ``session``'s close with the marks gathered; publish each
        strike and its reconciliation alerts. A fund missing marks gets an alert instead."""
        marks = self.marks.marks(session)
        close = self.calendar.close_of(session)
        now = self.clock.now
        out: list[FundNav] = []
        for record in await self.registry.funds():
            fund = record.config
            snapshot = self.snapshots.get((fund.broker, fund.broker_account_id))
            if snapshot is not None and snapshot.as_of < close:
                snapshot = None  # taken before the close: not this session's
            try:
                outcome = await strike_fund(self.db, fund.fund_id, session, marks=marks,
                                            calendar=self.calendar_name, snapshot=snapshot,
                                            now=now)
            except TreasuryError as exc:
                await self._alert(f"NAV of {fund.fund_id} for {session} not struck: "
                                  f"{exc.message}", fund_id=fund.fund_id,
                                  session=session.isoformat())
                continue
            nav = outcome.nav
            await self.publisher.nav_struck(nav)
            for alert in outcome.reconciliation.alerts if outcome.reconciliation else []:
                with contextlib.suppress(MtsError):
                    await self.bus.publish_acked("mts.v1.operations.alerts.raised", alert,
                                                 msg_id=alert.alert_id)
            out.append(nav)
        self.struck.extend(out)
        return out

    async def strike_after_each_close(self, grace: float) -> None:
        """Until cancelled: wait for the next close plus ``grace`` seconds, strike it."""
        while True:
            close = self.calendar.next_close(self.clock.now())
            session = close.astimezone(self.calendar.tz).date()
            delay = (close - self.clock.now()).total_seconds() + grace
            await asyncio.sleep(max(delay, 0))
            try:
                navs = await self.strike_session(session)
                _log.info("scheduled strike", session=session.isoformat(), funds=len(navs))
            except Exception as exc:  # the next close tries again; a person is told
                _log.error("scheduled strike failed", session=session.isoformat(),
                           error=type(exc).__name__)
                with contextlib.suppress(Exception):
                    await self._alert(f"scheduled NAV strike of {session} failed "
                                      f"({type(exc).__name__})", session=session.isoformat())

    async def on_tick(self, tick: ClockTick) -> None:
        """A replayed session is over: book every order event (and account snapshot) stored so
        far, make sure the session's bars are in, strike every open fund at the session's
        close and publish each NAV; return when done (the replay then hands the tick on).

        A fund that cannot be struck (it holds a symbol with no bar this session) gets an alert
        and the tick is still answered: asking again would find the same bars, and refusing
        would halt every other fund and service of the replay for one fund that a person can
        strike by hand (``nav strike --marks``). What refuses the tick is what may pass or
        must be fixed first - the consumers not drained in time, PostgreSQL away, a session
        that is not one of this treasury's calendar: the replay stops there, naming the
        treasury. A repeated tick strikes the same inputs again, which stores nothing new
        (:class:`~mts1b_treasury.navstore.NavStore`) and publishes under the same message id.

        The session's corporate actions are booked after its fills are drained and before the
        strike, and either order of the two books the same: the ledger replays a split before
        fills of its ex-date posted earlier, and a dividend counts the shares held before the
        ex-date (:meth:`~mts1b_treasury.ledger.Ledger.post_dividend`), so a fill at this open
        neither escapes the split nor earns the dividend. An action missing after its read-back
        refuses the tick: striking without it would store a NAV the venue does not have.
        """
        opts = self.opts or ServeOptions(dsn="")
        session = self._tick_session(tick)
        await wait_consumed(self.bus, "oms", opts.orders_durable, timeout=opts.drain_timeout)
        await wait_consumed(self.bus, "brokers", opts.accounts_durable,
                            timeout=opts.drain_timeout)
        await self.book_session_actions(session, tick.actions, opts.actions_wait)
        await self._session_bars(session, tick.bars, opts.bars_wait)
        navs = await self.strike_session(session)
        _log.info("replay strike", session=tick.session, seq=tick.seq, funds=len(navs))

    async def book_session_actions(self, session: dt.date, expected: int, wait: float
                                   ) -> int:
        """Wait up to ``wait`` seconds for ``expected`` corporate actions of ``session``, read
        the missing ones back from the datalake's stream, and book them all into every open
        fund (:func:`~mts1b_treasury.corporate.book_actions`); returns how many were posted.

        Why read back as for bars: the actions go out before the session's bars on another
        subscription than the tick, and a treasury that (re)started after they went out never
        saw them. Booking is keyed by what each action is, so a repeated tick or a restart
        books nothing twice. A conflict (the key holds other terms: a corrected action) books
        nothing and is alerted; a person decides.
        """
        if expected <= 0:
            return 0
        deadline = time.monotonic() + wait
        while len(self.actions.get(session, {})) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if len(self.actions.get(session, {})) < expected:
            await self._actions_from_stream(session)
        actions = list(self.actions.get(session, {}).values())
        if len(actions) < expected:
            raise TreasuryInputError("actions", f"{len(actions)} of {expected}",
                                     f"the corporate actions of {session} are not all in this "
                                     "treasury nor in the datalake's stream: its NAV would "
                                     "differ from the venue's")
        for record in await self.registry.funds():
            await self._ensure_accounts(record.fund_id)
        for action in actions:
            if action.kind == "delisting":
                self._mark_delisted(session, action)
        posted = 0
        for action, fund, outcome in await book_actions(self.registry, actions):
            if outcome.status is PostStatus.POSTED:
                posted += 1
            elif outcome.status is PostStatus.CONFLICT:
                await self._alert(f"corporate action {action.action_id} ({action.kind} "
                                  f"{action.symbol} {action.ex_date}) not booked for {fund}: "
                                  "booked before with other terms", fund_id=fund,
                                  session=session.isoformat(), action_id=action.action_id)
        _log.info("corporate actions booked", session=session.isoformat(),
                  actions=len(actions), posted=posted)
        return posted

    def _mark_delisted(self, session: dt.date, action: CorporateAction) -> None:
        """A delisted symbol's mark for its ex-date is what it was paid out at: the session's
        disposal fills are struck against it (their PnL is 0 that day), and no bar of the
        symbol will come. A real bar of the session, should one come, is not replaced."""
        close = self.calendar.close_of(session)
        price = Decimal(action.value)
        self.marks.add(Bar(symbol=action.symbol, ts=close - dt.timedelta(microseconds=1),
                           open=price, high=price, low=price, close=price, volume=Decimal(0)),
                       close)

    async def _actions_from_stream(self, session: dt.date) -> None:
        """Take the actions of ``session`` the datalake stream holds (missed on core NATS)."""
        timeout = self.opts.drain_timeout if self.opts else 60.0
        for action in await stored_actions(self.bus, session.isoformat(), timeout=timeout):
            self._take_action(action)

    def _tick_session(self, tick: ClockTick) -> dt.date:
        session = dt.date.fromisoformat(tick.session)
        if not self.calendar.is_session(session):
            raise TreasuryInputError("session", tick.session, f"not a {self.calendar_name} "
                                     "session: the replay and the treasury (serve --calendar) "
                                     "must use the same exchange calendar")
        return session

    async def _session_bars(self, session: dt.date, expected: int, wait: float) -> None:
        """Wait up to ``wait`` seconds for ``expected`` symbols' bars of ``session``; then read
        the marks the strike still lacks back from the datalake's stream.

        Why both: the replay publishes the bars before the tick, but they arrive on another
        subscription than the tick and may still be queued behind it; and a process that
        (re)started after the bars went out never saw them on its live subscription. In a
        lockstep replay the last bar stored on a symbol's subject is the current session's
        (the next session is published only after this tick is answered); a bar of another
        session is not taken, so a strike never uses another session's close.
        """
        deadline = time.monotonic() + wait
        while len(self.seen.get(session, ())) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        short = expected - len(self.seen.get(session, ()))
        if short <= 0:
            return
        needed: set[str] = set()
        for record in await self.registry.funds():
            try:
                inputs = await nav_inputs(self.db, record.fund_id, session, marks={},
                                          calendar=self.calendar_name)
            except TreasuryError:
                continue  # strike_session says why
            needed |= set(inputs.positions) | {f.symbol for f in inputs.fills}
        lacking = sorted(needed - set(self.marks.marks(session)))
        recovered = 0
        for symbol in lacking:
            recovered += await self._mark_from_stream(session, symbol)
        _log.warning("session bars read back from the stream", session=session.isoformat(),
                     missing_bars=short, lacking_marks=len(lacking), recovered=recovered)

    async def _mark_from_stream(self, session: dt.date, symbol: str) -> int:
        """The last bar stored on ``symbol``'s subject as a mark, if it is ``session``'s."""
        try:
            raw = await self.bus.js.get_last_msg(
                self.bus.stream_for("datalake"),
                self.bus.wire_subject(symbol_subject("bars", symbol)))
            bar = parse_message(Bar, raw.data or b"")
        except Exception as exc:  # no stream, no bar on the subject, a bad bar: no mark
            _log.info("no stored bar", symbol=symbol, error=type(exc).__name__)
            return 0
        if self.marks.session_of(bar) != session:
            return 0
        self.seen.setdefault(session, set()).add(bar.symbol)
        return int(self.marks.add(bar, self.calendar.close_of(session)))

    async def _alert(self, text: str, **context: str) -> None:
        await raise_alert(self.bus, SOURCE, text, clock=self.clock,
                          context=context)

    async def on_account(self, delivery: Delivery[AccountSnapshot]) -> None:
        snapshot = delivery.message
        key = (snapshot.broker, snapshot.account_id)
        held = self.snapshots.get(key)
        if held is None or held.as_of <= snapshot.as_of:
            self.snapshots[key] = snapshot


def _risk_only(keys: KeyRegistry, key_id: str) -> bool:
    """A key with ``risk`` but not ``operations`` may still make a change that loosens
    nothing: risk is the wider role."""
    held = keys.get(key_id)
    return held is not None and Role.RISK in held.roles and Role.OPERATIONS not in held.roles


class _Refused(Exception):
    """An event the books cannot take, whatever the retries."""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, MtsError):
        return exc.message
    return str(exc) if isinstance(exc, (_Refused, ValueError)) else type(exc).__name__


async def run_service(opts: ServeOptions, *, ready: asyncio.Event | None = None,
                      stop: asyncio.Event | None = None) -> TreasuryService:
    """Run until SIGTERM/SIGINT (or ``stop``), then drain; returns the service (its stats)."""
    overrides: dict[str, Any] = {"name": "mts1b-treasury"}
    if opts.namespace:
        overrides["namespace"] = opts.namespace
    if opts.nats_url:
        overrides["url"] = opts.nats_url
    bus = await Bus.connect(**overrides)
    db = await TreasuryDb.open(opts.dsn, schema=opts.schema)
    try:
        await bus.declare_streams(["treasury", "oms", "brokers", "operations"])
        clock: Clock = SystemClock()
        replay: ReplayClock | None = None
        if opts.replay_clock:
            replay = await start_clock(bus)  # a replay under way: its time from the start
            clock = replay
        service = TreasuryService(bus, db, keys=opts.keys, command_window=opts.command_window,
                                  calendar=opts.calendar, clock=clock, opts=opts)
        published = await service.registry.publish_all()
        opened = await service.open_accounts()
        orders = await bus.consume("mts.v1.oms.orders.>", service.on_order_event,
                                   durable=opts.orders_durable, ack_wait=opts.ack_wait)
        accounts = await bus.consume("mts.v1.brokers.*.account", service.on_account,
                                     durable=opts.accounts_durable, ack_wait=opts.ack_wait)
        sub = await bus.serve("mts.v1.treasury.commands.configure", service.on_configure,
                              record_as="treasury")
        bars = await bus.nc.subscribe(bus.wire_subject("mts.v1.datalake.bars.*"),
                                      cb=service.on_bar)
        subscriptions = [sub, bars]
        if replay is not None:  # the replay says when a session is over: no scheduled strike
            subscriptions.append(await bus.nc.subscribe(
                bus.wire_subject(ACTIONS_SUBJECT), cb=service.on_action))
            subscriptions.append(await serve_ticks(bus, "treasury", service.on_tick, replay))
        scheduler = (None if opts.strike_grace is None or replay is not None
                     else asyncio.get_running_loop()
                     .create_task(service.strike_after_each_close(opts.strike_grace)))
        done = stop or asyncio.Event()
        stop_on_signals(done)
        await bus.nc.flush()
        _log.info("treasury serving", funds=opened, published=published,
                  keys=len(opts.keys) if opts.keys is not None else 0,
                  namespace=opts.namespace or "", replay_clock=replay is not None)
        # the wall clock, also on a replay's: liveness is about now, not the replayed session
        async with Heartbeater(bus, HEARTBEAT_SERVICE, instance=opts.heartbeat_instance,
                               interval_s=opts.heartbeat_interval, clock=SystemClock()):
            if ready is not None:
                ready.set()
            await done.wait()
        _log.info("treasury draining")
        if scheduler is not None:
            scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await scheduler
        for subscription in subscriptions:
            with contextlib.suppress(Exception):
                await subscription.drain()  # type: ignore[no-untyped-call]
        await bus.wait_requests()
        await orders.stop()
        await accounts.stop()
        return service
    finally:
        await bus.drain()
        await db.close()
        _log.info("treasury stopped")
