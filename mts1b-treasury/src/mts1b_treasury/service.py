"""The treasury service: the OMS's order events into the ledger, signed fund configurations,
broker account snapshots kept for reconciliation, the funds published.

``mts mts1b-treasury serve`` runs :func:`run_service` until SIGTERM. At start it publishes
every fund again (a change committed while the bus was away reaches the OMS now) and opens the
ledger accounts of every open fund. Then:

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
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from dataclasses import dataclass
from typing import Any

from mts1b_foundation import (
    AccountSnapshot,
    Bar,
    CommandReply,
    ConfigureFund,
    FundNav,
    MtsError,
    OrderEvent,
    ReplyCode,
    SystemClock,
    parse_message,
)
from mts1b_platform.alerts import raise_alert
from mts1b_platform.bus import Bus, Delivery
from mts1b_platform.calendars import MarketCalendar
from mts1b_platform.logging import get_logger
from mts1b_platform.shutdown import stop_on_signals
from mts1b_platform.signing import (
    DEFAULT_COMMAND_WINDOW,
    KeyRegistry,
    Role,
    SignedCommandVerifier,
    claim_nonce_in,
)

from mts1b_treasury.db import DEFAULT_SCHEMA, TreasuryDb
from mts1b_treasury.errors import TreasuryError
from mts1b_treasury.funds import FundRegistry
from mts1b_treasury.ledger import Ledger
from mts1b_treasury.limits import loosened_limits
from mts1b_treasury.marks import MarkBook
from mts1b_treasury.orderflow import OrderFlow, is_permanent
from mts1b_treasury.publish import BusFundPublisher
from mts1b_treasury.strike import strike_fund

__all__ = ["ServeOptions", "TreasuryService", "run_service"]

_log = get_logger("mts1b_treasury.service")
SOURCE = "mts1b-treasury"


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
                 calendar: str = "XNYS") -> None:
        self.bus = bus
        self.db = db
        self.publisher = BusFundPublisher(bus)
        self.registry = FundRegistry(db, self.publisher)
        self.ledger = Ledger(db)
        self.flow = OrderFlow(db, self.ledger)
        self.clock = SystemClock()
        self.verifier = (None if keys is None else SignedCommandVerifier(
            keys, _Nonces(db), clock=self.clock, window=command_window, receiver="treasury"))
        self.snapshots: dict[tuple[str, str], AccountSnapshot] = {}
        self.calendar_name = calendar
        self.calendar = MarketCalendar(calendar)
        self.marks = MarkBook(self.calendar.tz)
        self.struck: list[FundNav] = []
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
        except Exception as exc:  # a malformed or off-calendar bar is not a mark
            _log.debug("bar ignored", error=type(exc).__name__)

    async def strike_session(self, session: dt.date) -> list[FundNav]:
        """Strike every open fund at ``session``'s close with the marks gathered; publish each
        strike and its reconciliation alerts. A fund missing marks gets an alert instead."""
        marks = self.marks.marks(session)
        close = self.calendar.close_of(session)
        out: list[FundNav] = []
        for record in await self.registry.funds():
            fund = record.config
            snapshot = self.snapshots.get((fund.broker, fund.broker_account_id))
            if snapshot is not None and snapshot.as_of < close:
                snapshot = None  # taken before the close: not this session's
            try:
                outcome = await strike_fund(self.db, fund.fund_id, session, marks=marks,
                                            calendar=self.calendar_name, snapshot=snapshot)
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
        service = TreasuryService(bus, db, keys=opts.keys, command_window=opts.command_window,
                                  calendar=opts.calendar)
        published = await service.registry.publish_all()
        opened = await service.open_accounts()
        orders = await bus.consume("mts.v1.oms.orders.>", service.on_order_event,
                                   durable=f"{opts.durable_prefix}-orders",
                                   ack_wait=opts.ack_wait)
        accounts = await bus.consume("mts.v1.brokers.*.account", service.on_account,
                                     durable=f"{opts.durable_prefix}-accounts",
                                     ack_wait=opts.ack_wait)
        sub = await bus.serve("mts.v1.treasury.commands.configure", service.on_configure)
        bars = await bus.nc.subscribe(bus.wire_subject("mts.v1.datalake.bars.*"),
                                      cb=service.on_bar)
        scheduler = (None if opts.strike_grace is None else asyncio.get_running_loop()
                     .create_task(service.strike_after_each_close(opts.strike_grace)))
        done = stop or asyncio.Event()
        stop_on_signals(done)
        await bus.nc.flush()
        _log.info("treasury serving", funds=opened, published=published,
                  keys=len(opts.keys) if opts.keys is not None else 0,
                  namespace=opts.namespace or "")
        if ready is not None:
            ready.set()
        await done.wait()
        _log.info("treasury draining")
        if scheduler is not None:
            scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await scheduler
        for subscription in (sub, bars):
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
