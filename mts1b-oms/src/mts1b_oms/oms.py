"""The OMS core: submit / cancel / replace and the broker's reports, over a store, a broker and
the fund configs.

One :class:`Oms` owns an :class:`~mts1b_oms.orderstore.OrderStore` (PostgreSQL in production,
the system of record; in memory for tests), a broker (anything satisfying
:class:`~mts1b_foundation.BrokerProtocol`) and the fund configs. It delegates two jobs to their
own modules: the in-memory view of each fund the gates read (:class:`~mts1b_oms.book.FundBook`)
and the kill switch with its durable sweeps (:class:`~mts1b_oms.killswitch.KillSwitch`). What
is left here is the order path: every change goes through the transition table of
:mod:`mts1b_oms.state` and is written together with its events and outbox rows in one
transaction; an optional :class:`~mts1b_oms.outbox.OutboxRelay` publishes them.

Submission is strictly idempotent (:mod:`mts1b_oms.idempotency`): the caller's
``idempotency_key`` maps to one ``order_id`` inside the dedupe window (default 24 h),
store-backed, so a retry after a crash or a timeout returns the original order and the broker
(keyed by ``order_id``) sees one order; the same key with other content is refused
``IDEMPOTENCY_CONFLICT``, and a key whose order ended DENIED or REJECTED opens a new attempt
linked to the earlier one. The order's ``order_id`` and ``created_at`` are the OMS's
(:meth:`~mts1b_foundation.Order.assigned`), whatever the client sent. A repeat never sends the
order again: one whose send is in flight waits for it, and one whose broker call had an
unknown outcome (``pending``) is resolved by asking the broker for it by our client order id
(``order_status``) - on the next retry or at start (:meth:`Oms.recover`) - and sent again, with
the *same* ``order_id``, only when the broker proves it absent.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence, Sized
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from mts1b_foundation import (
    Alert,
    BrokerError,
    BrokerProtocol,
    BrokerRejected,
    BrokerTransportError,
    BrokerUnknownOutcome,
    Clock,
    CommandReply,
    CorporateAction,
    Denial,
    ExecType,
    ExecutionReport,
    Fill,
    FundConfig,
    Order,
    OrderEvent,
    OrderEventType,
    OrderStatus,
    ReplaceRequest,
    ReplyCode,
    SetTradingState,
    Severity,
    SleeveAllocation,
    SystemClock,
    TargetPortfolio,
    TradingState,
    TradingStateChange,
    ValidationFailed,
    alert_labels,
    new_event_id,
    new_order_id,
    parse_message,
)
from mts1b_foundation.orders import ContextValue
from mts1b_foundation.plugins import capabilities_of
from mts1b_foundation.wire import VenueCode
from mts1b_platform.logging import get_logger
from mts1b_platform.redaction import redact
from pydantic import TypeAdapter, ValidationError

from mts1b_oms.book import FundBook
from mts1b_oms.composed import SleeveDesk, Withdrawn
from mts1b_oms.gates import Decision, GateContext, GatePipeline, Replacing
from mts1b_oms.idempotency import content_hash, differing_fields
from mts1b_oms.instruments import InstrumentRegistry
from mts1b_oms.keyedlocks import KeyedLocks
from mts1b_oms.killswitch import (
    DEFAULT_CANCEL_RATE,
    KillSwitch,
    Pacer,
    StateFanout,
    Verifier,
)
from mts1b_oms.orderstore import (
    KeyClaim,
    OrderStore,
    OutboxItem,
    SplitRecord,
    StaleState,
    Transfer,
)
from mts1b_oms.positions import (
    Mismatch,
    PositionState,
    SplitStep,
    apply_fill,
    lieu_quantities,
    reconcile,
    replay,
)
from mts1b_oms.sleeves import credit_fill, sleeve_fills
from mts1b_oms.state import (
    TRANSITIONS,
    OrderState,
    Outcome,
    apply_event,
    new_order_state,
    replaced_sleeve_order,
)
from mts1b_oms.tasks import cancel_and_wait
from mts1b_oms.tradingstate import TradingStates, make_command

__all__ = ["DEFAULT_IDEMPOTENCY_WINDOW", "REJECT_CODE_KEY", "REJECT_REASON_KEY", "MarkSink", "Oms",
           "StateFanout", "effective_at", "rejection_context"]

E = OrderEventType
S = OrderStatus
ZERO = Decimal(0)
DEFAULT_IDEMPOTENCY_WINDOW = dt.timedelta(hours=24)
_log = get_logger("mts1b_oms")

_REPORT_EVENTS = {
    ExecType.ACK: E.ACCEPTED,
    ExecType.REJECT: E.REJECTED,
    ExecType.PARTIAL_FILL: E.PARTIALLY_FILLED,
    ExecType.FILL: E.FILLED,
    ExecType.CANCELED: E.CANCELED,
    ExecType.CANCEL_REJECT: E.CANCEL_REJECTED,
    ExecType.REPLACED: E.REPLACED,
    ExecType.REPLACE_REJECT: E.REPLACE_REJECTED,
    ExecType.EXPIRED: E.EXPIRED,
}


_FILLS = frozenset({ExecType.PARTIAL_FILL, ExecType.FILL})
_CATCH_UP = _FILLS | {ExecType.CANCELED, ExecType.EXPIRED, ExecType.REJECT}
"""The broker reports :meth:`Oms.catch_up` applies at start."""


class _Relay(Protocol):
    def notify(self) -> None: ...


@runtime_checkable
class MarkSink(Protocol):
    """A broker that takes reference prices from the OMS: ``set_mark(symbol, price)``.

    Duck typing, not an import: the OMS never imports a broker library (mts1b-brokers'
    ``PaperClient.set_mark`` satisfies it). Only an in-process venue needs it; a remote one
    follows the market data itself."""

    def set_mark(self, symbol: str, price: Decimal) -> None: ...


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a broker refused a request, as the order's event and the reply carry it: the
    stack's :class:`ReplyCode` and what the venue said in its own terms."""

    code: ReplyCode
    reason: str
    venue_code: str | None = None
    venue_message: str | None = None

    @classmethod
    def of(cls, exc: BrokerError) -> Rejection:
        """From a broker error: the code and venue fields of the REJECT report it carries
        (``context["report"]``) when there is one, else its own ``reply_code`` and the
        venue's reason code (``context["reason_code"]``)."""
        report = exc.context.get("report")
        code = exc.reply_code
        venue_code = _venue_code(exc.context.get("reason_code"))
        venue_message = exc.message[:2000] if exc.message else None
        if isinstance(report, ExecutionReport):
            code = report.code or code
            venue_code = report.venue_code or venue_code
            venue_message = report.venue_message or venue_message
        reason = exc.message or code.value
        if isinstance(exc, BrokerTransportError):
            # the venue never saw the request: what it "said" would be our transport's text
            reason = f"transport: {reason}"
            venue_code = venue_message = None
        return cls(code, reason[:2000], venue_code, venue_message)

    @classmethod
    def from_report(cls, report: ExecutionReport, default: ReplyCode) -> Rejection:
        return cls(report.code or default, (report.reason or default.value)[:2000],
                   report.venue_code, report.venue_message)

    def detail(self) -> dict[str, Any]:
        """The fields of the order event that records it."""
        return {"reason": self.reason, "code": self.code, "venue_code": self.venue_code,
                "venue_message": self.venue_message}

    def context(self) -> dict[str, ContextValue]:
        """What a reply's ``context`` says about the refusal (:func:`rejection_context`)."""
        return rejection_context(self.code, self.reason, self.venue_code, self.venue_message)


REJECT_CODE_KEY = "broker_code"
"""Reply context key: the broker's own code for a refusal (``NO_REFERENCE_PRICE``)."""
REJECT_REASON_KEY = "broker_reason"
"""Reply context key: the broker's text for a refusal, secrets masked."""


def rejection_context(code: ReplyCode | None, reason: str | None, venue_code: str | None,
                      venue_message: str | None) -> dict[str, ContextValue]:
    """The context a reply carries for a broker's refusal: ``broker_code`` (the venue's code,
    else the stack's) and ``broker_reason`` (the venue's text, else the recorded reason).

    Why in ``context`` as well as in ``venue_code`` / ``message``: a client reading a reply
    generically (a rebalance report, a log of replies) looks in ``context`` for the why, and
    before issue #20 a rejected order's reply could reach it with an empty one. Only what the
    broker said or the reason the OMS recorded for it goes here - never an exception's text
    - and it passes :func:`~mts1b_platform.redaction.redact` first."""
    out: dict[str, ContextValue] = {}
    shown = venue_code or (code.value if code is not None else None)
    if shown:
        out[REJECT_CODE_KEY] = shown[:64]
    text = venue_message or reason
    if text:
        out[REJECT_REASON_KEY] = redact(text)[:2000]
    return out


@dataclass(frozen=True, slots=True)
class _CancelAttempt:
    """See :class:`~mts1b_oms.killswitch.CancelAttempt`."""

    state: OrderState | None
    refused: bool



def _expect_action(action: object, kind: str | None = None) -> None:
    """Refuse, naming the field and value, what is not a CorporateAction (of ``kind``)."""
    if not isinstance(action, CorporateAction):
        raise ValidationFailed(f"expected a CorporateAction, got {type(action).__name__}",
                               field="action", value=type(action).__name__)
    if kind is not None and action.kind != kind:
        raise ValidationFailed(f"action {action.action_id} is a {action.kind!r}, not a {kind}",
                               field="kind", value=action.kind)

class Oms:
    """The order management system. See the module docstring.

    ``cancel_rate``: cancels per second a kill-switch sweep sends to the broker; by default the
    broker's own ``cancel_rate`` attribute if it has one, else 10. ``verify`` checks trading-
    state commands that come from outside (:meth:`KillSwitch.handle_command`).
    """

    def __init__(
        self,
        store: OrderStore,
        broker: BrokerProtocol,
        funds: Sequence[FundConfig] | Mapping[str, FundConfig],
        *,
        instruments: InstrumentRegistry,
        clock: Clock | None = None,
        idempotency_window: dt.timedelta = DEFAULT_IDEMPOTENCY_WINDOW,
        pipeline: GatePipeline | None = None,
        relay: _Relay | None = None,
        fanout: StateFanout | None = None,
        cancel_rate: float | None = None,
        sweep_poll_seconds: float | None = 2.0,
        sweep_retry_seconds: float = 1.0,
        verify: Verifier | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        self.store = store
        self.broker = broker
        self.capabilities = capabilities_of(broker)
        """What the broker declares it supports (``None``: nothing declared, nothing checked);
        the ``capabilities`` gate refuses an order outside it before it is sent."""
        self.funds: dict[str, FundConfig] = (
            dict(funds) if isinstance(funds, Mapping) else {f.fund_id: f for f in funds})
        self.instruments = instruments
        self.clock: Clock = clock or SystemClock()
        self.window = idempotency_window
        self.pipeline = pipeline or GatePipeline()
        self.relay = relay
        self.prices: dict[str, Decimal] = {}
        self._price_at: dict[str, dt.datetime] = {}  # market time of a price, when known
        self._split_at: dict[tuple[str, str], dt.datetime] = {}  # (fund, symbol) -> latest
        self._adjusted: set[str] = set()  # splits whose reference price this process divided
        self._split_lock = asyncio.Lock()  # one corporate action at a time
        self.adv: dict[str, Decimal] = {}
        self.nav: dict[str, Decimal] = {f: c.target_nav_usd for f, c in self.funds.items()}
        self.peak_nav: dict[str, Decimal] = {}
        self.book = FundBook()
        rate = cancel_rate if cancel_rate is not None else broker_cancel_rate(broker)
        extra: dict[str, Any] = {} if verify is None else {"verify": verify}
        self.killswitch = KillSwitch(store, self.book, self, self.funds, clock=self.clock,
                                     cancel_rate=rate, retry_seconds=sweep_retry_seconds,
                                     poll_seconds=sweep_poll_seconds, fanout=fanout,
                                     pacer=pacer, on_strategy_halt=self._strategy_halted,
                                     on_strategy_reduce=self._strategy_reducing,
                                     **extra)
        self.sleeves = SleeveDesk(self)
        self._sending: set[str] = set()  # order ids whose broker.submit is in flight
        self._flights: dict[str, asyncio.Future[None]] = {}  # sends a repeat must wait for
        self._order_locks = KeyedLocks()  # one lifecycle change per order at a time
        self._position_locks = KeyedLocks()  # one fill per (fund, strategy, symbol) at a time
        self._reports: asyncio.Task[None] | None = None
        self._report_stream: AsyncIterator[ExecutionReport] | None = None
        self._applying_report = False  # the consumer holds a report it has not applied yet
        self.alerts: deque[Alert] = deque(maxlen=1_000)  # the latest; all are in the store
        self._seen_reports: OrderedDict[tuple[Any, ...], None] = OrderedDict()

    @property
    def states(self) -> TradingStates:
        """The trading state of every scope (kept by the kill switch)."""
        return self.killswitch.states

    # --- start / stop -------------------------------------------------------------------------

    async def start(self, *, consume_reports: bool = True, reconcile: bool = True) -> None:
        """Load state from the store, resume the kill switch's unfinished sweeps (in the
        background), re-drive interrupted orders, listen to the broker, and (``reconcile``)
        compare each fund's positions with the broker's: a mismatch found at start is an
        alert, as on demand, never an overwrite."""
        await self.killswitch.load()
        for fund_id in self.funds:
            stored = await self.store.nav(fund_id)
            if stored is not None:
                self.nav[fund_id], self.peak_nav[fund_id] = stored
        for fund_id, strategy_id, symbol, p in await self.store.positions():
            if fund_id in self.funds:  # not another instance's fund
                self.book.set_position((fund_id, strategy_id, symbol), p)
        self._split_at = {k: v for k, v in (await self.store.split_times()).items()
                          if k[0] in self.funds}
        for st in await self.store.open_orders():
            if st.order.fund_id in self.funds:  # recover() must not send another fund's order
                self.book.track(None, st)  # through this instance's broker
        if consume_reports:
            self._reports = asyncio.get_running_loop().create_task(self._consume_reports())
        await self.killswitch.start()
        await self.recover()
        await self.catch_up()
        await self.sleeves.withdraw_stopped()
        if reconcile:
            for fund_id in self.funds:
                try:
                    await self.reconcile(fund_id)
                except Exception as exc:  # a broker that cannot answer yet must not stop us
                    await self._alert(f"reconciliation at start failed for {fund_id}: {exc!r}",
                                      fund_id=fund_id)

    async def stop(self) -> None:
        """Stop listening to the broker and stop sweeping (what a sweep has not settled stays
        outstanding in the store for the next instance); give the funds' sweeper lock back."""
        if self._reports is not None:
            reports, self._reports = self._reports, None
            await cancel_and_wait([reports])  # a cancel lost on the way is sent again
        await self.killswitch.stop()

    async def recover(self) -> int:
        """Settle what a crash may have interrupted: ``pending`` orders, whose outcome is
        unknown, are resolved with the broker (:meth:`_resolve_unknown`: sent again only
        when the broker proves it never got them), and ``pending_cancel`` cancels are sent
        again. Returns how many.

        Orders a kill-switch sweep has to settle, and orders the trading state forbids, are
        left to the kill switch: sending them would put them to work in a halted scope, and
        canceling them here as well would send their cancel twice."""
        n = 0
        swept = self.killswitch.outstanding_order_ids()
        for st in self.book.open_orders():
            if st.order_id in swept:
                continue
            if st.status is S.PENDING:
                if self.killswitch.forbidden(st) is not None:
                    continue
                await self._resolve_unknown(st)
                n += 1
            elif st.status is S.PENDING_CANCEL:
                await self._send_cancel(st)
                n += 1
        return n

    async def catch_up(self) -> int:
        """Take in what the broker did to working orders while no OMS listened (issue #20:
        the paper broker service outlives a SIGKILL of the OMS and keeps filling on bars, and
        a remote broker's report stream starts at the OMS's connection). For each open order
        that is no longer ``pending`` (:meth:`recover` settles those) the broker's latest
        report (``order_status``) is applied when it is exact to do so: a fill that is the
        only one we missed (its cumulative quantity less its own is what we hold), or an end
        without a missed fill (canceled, expired, rejected). A gap of more than one fill
        cannot be rebuilt from the latest report alone and is an alert (the start-up
        reconciliation names the position as well); a broker that cannot tell is left alone,
        and so are the orders a kill-switch sweep settles (as in :meth:`recover`). Returns how
        many orders changed."""
        n = 0
        swept = self.killswitch.outstanding_order_ids()  # the kill switch settles those
        for st in self.book.open_orders():
            if st.status is S.PENDING or st.order_id in self._sending or st.order_id in swept:
                continue
            try:
                report = await self.broker.order_status(st.order_id)
            except Exception as exc:  # cannot tell: the report stream may still bring it
                _log.warning("order status unknown at the broker at start",
                             order_id=st.order_id, error_type=type(exc).__name__)
                continue
            if report is None or report.exec_type not in _CATCH_UP:
                continue
            held = st.filled_quantity
            before = report.cumulative_quantity - (report.last_quantity or ZERO)
            if report.cumulative_quantity == held and report.exec_type in _FILLS:
                continue  # nothing missed
            if (report.exec_type in _FILLS and before != held) or (
                    report.exec_type not in _FILLS and report.cumulative_quantity != held):
                await self._alert(
                    f"order {st.order_id}: the broker has {report.cumulative_quantity} filled, "
                    f"the OMS {held}; fills were missed while no OMS listened",
                    order_id=st.order_id, fund_id=st.order.fund_id)
                continue
            await self.on_execution_report(report)
            n += 1
        return n

    async def _consume_reports(self) -> None:
        stream = self._report_stream = self.broker.execution_reports()
        async for report in stream:
            self._applying_report = True  # before any await: reports_in_hand() sees it
            try:
                await self.on_execution_report(report)
            except Exception as exc:  # one bad report must not stop the stream
                _log.error("execution report failed", order_id=report.order_id, error=repr(exc))
            finally:
                self._applying_report = False

    def reports_in_hand(self) -> bool:
        """Whether the broker's report stream holds a report not yet applied: one delivered
        and not taken (a stream that is :class:`~collections.abc.Sized` says how many; the
        brokers' streams are) or the one being applied. Why: on a lockstep replay's clock the
        service finishes a session only once the venue's reports of it are applied."""
        stream = self._report_stream
        queued = len(stream) if isinstance(stream, Sized) else 0
        return queued > 0 or self._applying_report

    # --- market inputs --------------------------------------------------------------------------

    def set_price(self, symbol: str, price: Decimal, adv: Decimal | None = None, *,
                  at: dt.datetime | None = None) -> None:
        """Reference price (and optionally average daily volume) used by the gates.

        The price also goes to the broker when it takes marks (:class:`MarkSink`, e.g. the
        paper venue in the same process): otherwise a paper venue that has seen no market
        data yet rejects every market order ``NO_REFERENCE_PRICE`` although the OMS has a
        price (issue #20). A broker whose ``set_mark`` fails is logged, never fatal: the
        OMS's own price is set either way. A price that is not a positive finite Decimal is
        ``ValidationFailed`` naming ``price`` and the value (a gate judging notional against
        a NaN or a zero price would judge nothing).

        ``at``: the market time the price is of (a bar's ``ts``), so that a split applied
        later divides only a price from before its ex-date (:meth:`apply_split`); ``None``:
        unknown, taken as before any split still to come."""
        if not isinstance(price, Decimal) or not price.is_finite() or price <= 0:
            raise ValidationFailed(f"price for {symbol!r} must be a positive finite Decimal, "
                                   f"got {price!r}", field="price", value=repr(price)[:200])
        self.prices[symbol] = price
        if at is None:
            self._price_at.pop(symbol, None)
        else:
            self._price_at[symbol] = at
        self.book.prices_changed()
        if adv is not None:
            self.adv[symbol] = adv
        if isinstance(self.broker, MarkSink):
            try:
                self.broker.set_mark(symbol, price)
            except Exception as exc:
                _log.warning("broker did not take the reference price", symbol=symbol,
                             error_type=type(exc).__name__)

    async def update_nav(self, fund_id: str, nav: Decimal) -> None:
        """Record the fund's NAV; the drawdown gate compares it with the stored peak."""
        self.peak_nav[fund_id] = await self.store.set_nav(fund_id, nav, self.clock.now())
        self.nav[fund_id] = nav

    # --- submission -----------------------------------------------------------------------------

    def gate_context(self, fund: FundConfig, now: dt.datetime) -> GateContext:
        return self.book.context(fund, now, nav=self.nav[fund.fund_id], states=self.states,
                                 prices=self.prices, adv=self.adv,
                                 peak_nav=self.peak_nav.get(fund.fund_id),
                                 instruments=self.instruments,
                                 capabilities=self.capabilities)

    async def submit(self, order: Order) -> CommandReply:
        """Accept an order: validation, gates, store (claiming the idempotency key), broker.

        Never raises. Bad input is a coded refusal - ``VALIDATION_FAILED`` (the order is
        validated again in full, so an ``Order`` built without validation, e.g. by
        ``model_construct``, is refused like bad JSON), ``FUND_NOT_FOUND``,
        ``INVALID_ORDER``, a gate's code, ``IDEMPOTENCY_CONFLICT`` - and a failure of the OMS
        itself is ``INTERNAL_ERROR`` naming only the exception's type: its text and traceback
        go to the log, never to the client.

        Safe to call concurrently (the NATS service does). Everything from the gates' decision
        to the reservation of the order's quantity in the fund's book runs without yielding to
        the event loop, so a concurrent submission's gates already count this order, before it
        is even committed. A repeat of an earlier ``idempotency_key`` is recognised by the
        store when it refuses the key (no separate lookup first) and is then answered by
        :meth:`_repeat`: the original order if the content is the same, a conflict if not. It
        counts as a message for the message-rate throttle, but not as an execution for the
        repeated-execution throttle.
        """
        now = self.clock.now()
        try:
            return await self._submit(order, now)
        except Exception as exc:
            _log.exception("submit failed", error_type=type(exc).__name__)
            return _fail(ReplyCode.INTERNAL_ERROR,
                         f"the OMS failed ({type(exc).__name__}); its log has the details", now)

    def _accept(self, order: object, now: dt.datetime) -> tuple[Order, FundConfig] | CommandReply:
        """The order as the OMS accepts it (its ``order_id``, ``created_at``, the fund's
        default broker and account), with its fund; or the coded refusal."""
        if not isinstance(order, Order):
            return _fail(ReplyCode.VALIDATION_FAILED,
                         f"expected an Order, got {type(order).__name__}", now)
        fund_id = getattr(order, "fund_id", None)
        fund = self.funds.get(fund_id) if isinstance(fund_id, str) else None
        if fund is None:
            shown = repr(fund_id)[:130]
            return _fail(ReplyCode.FUND_NOT_FOUND, f"unknown fund {shown}", now)
        if getattr(order, "order_id", None) is not None:
            return _fail(ReplyCode.INVALID_ORDER,
                         "order_id is assigned by the OMS; leave it empty", now)
        try:
            o = order.assigned(order_id=new_order_id(), now=now,
                               broker=getattr(order, "broker", None) or fund.broker,
                               account_id=getattr(order, "account_id", None)
                               or fund.broker_account_id)
        except ValidationFailed as exc:
            return _validation_failed(exc, now)
        except Exception as exc:  # an Order whose fields are not even the right types
            return _fail(ReplyCode.VALIDATION_FAILED,
                         f"not a valid Order ({type(exc).__name__})", now)
        bad = _unstorable_text(o)
        if bad is not None:
            return CommandReply(ok=False, code=ReplyCode.VALIDATION_FAILED,
                                message=f"{bad} holds text PostgreSQL cannot store (NUL or a "
                                        "lone surrogate)", context={"field": bad}, ts=now)
        return o, fund

    async def _submit(self, order: Order, now: dt.datetime) -> CommandReply:
        accepted = self._accept(order, now)
        if isinstance(accepted, CommandReply):
            return accepted
        o, fund = accepted
        content = content_hash(o)
        ctx = self.gate_context(fund, now)
        blocked = self.killswitch.blocks(o)
        decision = Decision(blocked) if blocked else self.pipeline.evaluate(o, ctx)
        state = apply_event(new_order_state(o), E.SUBMITTED).state
        items = [self._item(self._event(state, E.SUBMITTED, now, order=o))]
        denial = decision.denial
        denial_row = None
        flight = None
        if denial is not None:
            state = apply_event(state, E.DENIED).state
            ev = self._event(state, E.DENIED, now, denial=denial, code=denial.code)
            items.append(self._item(ev))
            denial_row = (ev.event_id, denial)
        else:
            self.book.reserve(state, +1)
            # From here until its broker call is answered, a repeat of this order waits for
            # this send instead of making its own (issue #15: 50 concurrent repeats made 18).
            flight = self._begin_flight(state.order_id)
        try:
            return await self._create_and_send(state, items, fund, o, content, decision,
                                               denial_row, blocked, ctx, now)
        finally:
            if flight is not None:
                self._end_flight(state.order_id, flight)

    async def _create_and_send(self, state: OrderState, items: list[OutboxItem],
                               fund: FundConfig, o: Order, content: str, decision: Decision,
                               denial_row: tuple[str, Denial] | None, blocked: Denial | None,
                               ctx: GateContext, now: dt.datetime) -> CommandReply:
        denial = decision.denial
        try:
            claim = await self.store.create_order(state, items, now=now, window=self.window,
                                                  denial=denial_row, content_hash=content)
        except BaseException:
            if denial is None:
                self.book.reserve(state, -1)
            raise
        if not claim.created:  # the key belongs to an earlier order (or a concurrent twin)
            if denial is None:
                self.book.reserve(state, -1)
                if blocked is None:
                    self.pipeline.forget(o, ctx)
            return await self._repeat(claim, o, content, now)
        linked: dict[str, ContextValue] = (
            {} if claim.previous_order_id is None
            else {"previous_order_id": claim.previous_order_id})
        self._notify()
        await self._drawdown_action(fund, decision)
        if denial is not None:
            _log.info("order denied", order_id=state.order_id, code=denial.code.value,
                      gate=denial.gate)
            return CommandReply(ok=False, order_id=state.order_id, status=S.DENIED,
                                code=denial.code, message=denial.message, denial=denial,
                                context=linked, ts=now)
        self.book.reserve(state, -1)  # committed: from here the open-order book counts it
        self.book.track(None, state)
        forbidden = self.killswitch.forbidden(state)
        if forbidden is not None:  # a halt or REDUCING landed while the order was being
            # written: the state's cancel sweep may have missed it, so it must not be sent
            code, why = forbidden
            state = await self.apply(state.order_id, E.CANCELED,
                                     reason=f"{why} before it was sent") or state
            return CommandReply(ok=False, order_id=state.order_id, status=state.status,
                                code=code, message=f"{why} before the order was sent",
                                context=linked, ts=now)
        state = await self._send(state)
        reply = await self._reply(state, now)
        return (reply.model_copy(update={"context": {**reply.context, **linked}}) if linked
                else reply)

    async def _drawdown_action(self, fund: FundConfig, decision: Decision) -> None:
        """Switch the fund to the state a drawdown denial asks for, if it asks (only ever a
        step up: never undo a halt)."""
        if decision.state_change is not None:
            denial = decision.denial
            await self.killswitch.set_trading_state(SetTradingState(
                scope="fund", scope_id=fund.fund_id, state=decision.state_change,
                actor="oms.drawdown", reason=denial.message if denial else "drawdown"),
                escalate_only=True)

    async def _repeat(self, claim: KeyClaim, o: Order, content: str,
                      now: dt.datetime) -> CommandReply:
        """Answer a submission whose key another order holds: that order, ``duplicate=True``,
        when the content is the same (waiting for its send if one is in flight, resolving
        an unknown outcome with the broker, never sending it a second time on a guess);
        ``IDEMPOTENCY_CONFLICT`` naming the differing fields when it is not, leaving the
        original untouched."""
        state = await self._load(claim.order_id)
        if state is None:  # pragma: no cover - the idempotency row and order share a write
            return _fail(ReplyCode.INTERNAL_ERROR, "the order holding this key is missing", now)
        held = claim.content_hash or content_hash(state.order)  # None: stored before hashes
        if held != content:
            fields = differing_fields(state.order, o) or ["content"]
            return CommandReply(
                ok=False, order_id=state.order_id, status=state.status,
                code=ReplyCode.IDEMPOTENCY_CONFLICT,
                message=(f"idempotency key {o.idempotency_key} belongs to order "
                         f"{state.order_id}, whose {', '.join(fields)} differ; that order is "
                         "unchanged")[:4000],
                context={"original_order_id": state.order_id,
                         "differing_fields": ",".join(fields)[:2000]}, ts=now)
        if state.status is S.PENDING:
            state = await self._after_flight(state)
        if state.status is S.PENDING:
            forbidden = self.killswitch.forbidden(state)
            if forbidden is not None:  # left to the kill switch: neither sent nor canceled
                return CommandReply(ok=False, order_id=state.order_id, status=state.status,
                                    code=forbidden[0], duplicate=True, ts=now,
                                    message=f"{forbidden[1]}: the order was not sent")
            state = await self._resolve_unknown(state)
        reply = await self._reply(state, now)
        if state.status is S.DENIED:
            denial = await self._denial_of(state.order_id)
            reply = reply.model_copy(update={"denial": denial,
                                             "code": denial.code if denial
                                             else ReplyCode.ORDER_DENIED,
                                             "message": denial.message if denial else None})
        return reply.model_copy(update={"duplicate": True})

    def _begin_flight(self, order_id: str) -> asyncio.Future[None]:
        """Mark the order's send (or the resolution of its unknown outcome) as in flight in
        this process: a repeat arriving meanwhile waits for it (:meth:`_after_flight`)."""
        flight: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flights[order_id] = flight
        return flight

    def _end_flight(self, order_id: str, flight: asyncio.Future[None]) -> None:
        if self._flights.get(order_id) is flight:
            del self._flights[order_id]
        if not flight.done():
            flight.set_result(None)

    async def _after_flight(self, state: OrderState) -> OrderState:
        """The order once the send in flight for it in this process (if any) is answered."""
        flight = self._flights.get(state.order_id)
        if flight is None:
            return state
        await asyncio.shield(flight)  # a repeat given up on must not cancel the send's marker
        return await self._load(state.order_id) or state

    async def _resolve_unknown(self, state: OrderState) -> OrderState:
        """An order ``pending`` with no send in flight here: its outcome is unknown (the
        broker timed out, or the process died mid-send). Ask the broker for it by our client
        order id (``BrokerProtocol.order_status``): if it has the order, apply what it says
        (acknowledged, filled, canceled, rejected); only if it proves the order absent
        (``None``) send it again, once. A broker that cannot tell leaves it ``pending``: a
        guess could put a second order to work. One resolution per order at a time; a
        repeat arriving meanwhile waits for it."""
        if state.order_id in self._flights:
            return await self._after_flight(state)
        flight = self._begin_flight(state.order_id)
        try:
            fresh = await self._load(state.order_id) or state
            if fresh.status is not S.PENDING:
                return fresh
            try:
                report = await self.broker.order_status(fresh.order_id)
            except Exception as exc:  # cannot tell: never send again on a guess
                _log.warning("order status unknown at the broker; order stays pending",
                             order_id=fresh.order_id, error_type=type(exc).__name__)
                return fresh
            if report is None:  # the broker proves it never got the order
                _log.info("broker has no such order; sending it again",
                          order_id=fresh.order_id)
                return await self._send(fresh)
            await self.on_execution_report(report)
            return await self._load(fresh.order_id) or fresh
        finally:
            self._end_flight(state.order_id, flight)

    async def _denial_of(self, order_id: str) -> Denial | None:
        for ev in await self.store.events(order_id):
            if ev.get("denial"):
                return Denial.model_validate(ev["denial"])
        return None

    async def _reply(self, state: OrderState, now: dt.datetime) -> CommandReply:
        status = state.status
        if status is S.REJECTED:  # rare: read what the broker said back from the event
            found = [ev for ev in await self.store.events(state.order_id)
                     if ev.get("event_type") == E.REJECTED.value]
            ev = OrderEvent.model_validate(found[-1]) if found else None
            code = ev.code if ev and ev.code else ReplyCode.BROKER_REJECTED
            message = ev.reason if ev and ev.reason else "rejected by the broker"
            venue_code = ev.venue_code if ev else None
            venue_message = ev.venue_message if ev else None
            return CommandReply(ok=False, order_id=state.order_id, status=status, code=code,
                                message=message, venue_code=venue_code,
                                venue_message=venue_message, ts=now,
                                context=rejection_context(code, message, venue_code,
                                                          venue_message))
        if status is S.DENIED:
            return CommandReply(ok=False, order_id=state.order_id, status=status,
                                code=ReplyCode.ORDER_DENIED, ts=now)
        return CommandReply(ok=True, order_id=state.order_id, status=status, ts=now)

    async def _send(self, state: OrderState) -> OrderState:
        """Send an order to the broker and record the answer.

        Also the path of a retry and of :meth:`recover`, whose order may already be at the
        broker from an earlier try with an unknown outcome: if the trading state now forbids
        the order it is not sent (the kill switch settles it). A halt or REDUCING that lands
        while the broker has the request (a sweep's cancel can even overtake the order) is
        caught when the answer comes back, and the order is canceled then.
        """
        if self.killswitch.forbidden(state) is not None:
            return state
        self._sending.add(state.order_id)
        try:
            report = await self.broker.submit(state.order)
        except (BrokerRejected, BrokerTransportError) as exc:  # transport: never reached
            # the venue, so it is safe to call the order rejected
            rejection = Rejection.of(exc)
            return await self.apply(state.order_id, E.REJECTED, rejection=rejection) or state
        except BrokerUnknownOutcome as exc:
            _log.warning("broker outcome unknown; order stays pending",
                         order_id=state.order_id, error=exc.message)
            return state
        finally:
            self._sending.discard(state.order_id)
        await self.on_execution_report(report)
        after = await self._load(state.order_id) or state
        forbidden = self.killswitch.forbidden(after)
        if forbidden is not None and after.is_open and after.status is not S.PENDING_CANCEL:
            await self.killswitch.cancel_now(after.order_id,
                                             f"{forbidden[1]} while the order was sent")
            after = await self._load(after.order_id) or after
        return after

    # --- cancel / replace -----------------------------------------------------------------------

    async def cancel(self, order_id: str, reason: str = "requested") -> CommandReply:
        """Cancel at the broker; ``ok`` only when the cancel took (pending or done).

        If the broker refuses and the order is working again while the trading state forbids
        it (a halt's cancel can overtake the order itself on its way to the venue), the cancel
        is sent once more.
        """
        reply, _refused = await self._cancel(order_id, reason, again=True)
        return reply

    async def cancel_for_sweep(self, order_id: str, reason: str,
                               pace: Callable[[], Awaitable[None]], *,
                               refresh: bool) -> _CancelAttempt:
        """One cancel for the kill switch: the order afterwards, and whether the broker
        refused the cancel (as opposed to an outcome not known yet). ``pace`` is awaited
        right before each call to the broker (the sweep's cancel rate).

        ``refresh``: read the order from the store first - a sweep resumed from another
        instance finds orders that instance moved (to ``pending_cancel``) after this one
        loaded its book.
        """
        if refresh:
            await self._refresh(order_id)
        _reply, refused = await self._cancel(order_id, reason, again=True, pace=pace)
        return _CancelAttempt(await self._load(order_id), refused)

    async def _refresh(self, order_id: str) -> None:
        cached = self.book.open_order(order_id)
        if cached is None:
            return
        fresh = await self.store.load_order(order_id)
        if fresh is not None and fresh.sequence != cached.sequence:
            self.book.track(cached, fresh)

    def sending(self, order_id: str) -> bool:
        """Whether the order's submit is on its way to the broker right now."""
        return order_id in self._sending

    async def broker_lists_open(self, state: OrderState) -> bool:
        """Whether the broker still lists the order among its open orders (asked when it
        refused a cancel: a venue answering "not open" has nothing working)."""
        account = state.order.account_id or self.funds[state.order.fund_id].broker_account_id
        try:
            listed = await self.broker.open_orders(account)
        except BrokerError:
            return True  # cannot tell: assume the worst
        return any(o.order_id == state.order_id for o in listed)

    async def load_order(self, order_id: str) -> OrderState | None:
        return await self._load(order_id)

    async def alert(self, text: str, **context: str) -> None:
        await self._alert(text, **context)

    def notify(self) -> None:
        self._notify()

    async def _cancel(self, order_id: str, reason: str, *, again: bool,
                      pace: Callable[[], Awaitable[None]] | None = None
                      ) -> tuple[CommandReply, bool]:
        """The reply, and True if the broker refused the cancel."""
        now = self.clock.now()
        state = await self._load(order_id)
        if state is None:
            return _fail(ReplyCode.ORDER_NOT_FOUND, f"unknown order {order_id}", now), False
        if not state.is_open:
            return CommandReply(ok=False, order_id=order_id, status=state.status,
                                code=ReplyCode.ORDER_NOT_OPEN, message=f"order is {state.status}",
                                ts=now), False
        if state.status is not S.PENDING_CANCEL:
            after = await self.apply(order_id, E.CANCEL_REQUESTED, reason=reason)
            if after is None or after.status is not S.PENDING_CANCEL:
                return CommandReply(ok=False, order_id=order_id,
                                    status=after.status if after else state.status,
                                    code=ReplyCode.INVALID_STATE_TRANSITION,
                                    message="cancel not possible now", ts=now), False
            state = after
        state, refused = await self._send_cancel(state, pace)
        if again and state.is_open and state.status is not S.PENDING_CANCEL and (
                self.killswitch.forbidden(state) is not None):
            return await self._cancel(order_id, reason, again=False, pace=pace)
        if state.status not in {S.PENDING_CANCEL, S.CANCELED}:  # the broker refused it, or the
            # order filled first: the caller must not count it as canceled
            return CommandReply(ok=False, order_id=order_id, status=state.status,
                                code=ReplyCode.CANCEL_REJECTED,
                                message=f"cancel did not take: order is {state.status}",
                                ts=now), refused
        return CommandReply(ok=True, order_id=order_id, status=state.status, ts=now), False

    async def _send_cancel(self, state: OrderState,
                           pace: Callable[[], Awaitable[None]] | None = None
                           ) -> tuple[OrderState, bool]:
        """Send the cancel of an order in ``pending_cancel`` (after ``pace``, if given); the
        order afterwards, and True if the broker refused it (False when it took or its
        outcome is unknown)."""
        if pace is not None:
            await pace()
        try:
            report = await self.broker.cancel(state.order_id)
        except BrokerRejected as exc:
            if state.prior is S.PENDING and state.order_id not in self._sending:
                # The broker never acknowledged it, no request is on its way, and it says it
                # has no such order: nothing is working there. Going back to pending would let
                # a retry or a restart send it after all (a late fill still applies). While a
                # submit is in flight the cancel may simply have overtaken it: then the order
                # goes back to pending and _send cancels it again once the answer is in.
                after = await self.apply(state.order_id, E.CANCELED,
                                         reason=f"not at the broker: {exc.message}")
                return after or state, False
            after = await self.apply(state.order_id, E.CANCEL_REJECTED,
                                     rejection=Rejection.of(exc))
            return after or state, True
        except BrokerTransportError as exc:
            after = await self.apply(state.order_id, E.CANCEL_REJECTED,
                                     rejection=Rejection.of(exc))
            return after or state, False
        except BrokerUnknownOutcome:
            return state, False
        await self.on_execution_report(report)
        return (await self._load(state.order_id) or state,
                report.exec_type is ExecType.CANCEL_REJECT)

    async def replace(self, request: ReplaceRequest) -> CommandReply:
        """Cancel-replace a working order: a new quantity (the order's total, fills included),
        limit price or stop price.

        The replace is judged first as the order it would make (:meth:`_judge_replace`): the
        new terms against the instrument registry and the fund's limits, the order's own open
        quantity *replaced* by its new leaves rather than added to them. A refusal carries
        the code a submit of those terms would get (``LOT_SIZE``, ``PRICE_COLLAR``,
        ``TRADING_HALTED``, ...; a replace that only reduces risk passes while REDUCING);
        the broker is not called, and the order, its events and the fund's book stay as they
        were. Never raises: bad input is ``VALIDATION_FAILED`` (the request is validated
        again in full, so one built by ``model_construct`` is refused like bad JSON),
        ``ORDER_NOT_FOUND``, ``INVALID_ORDER`` or ``INVALID_STATE_TRANSITION``, and a failure
        of the OMS itself is ``INTERNAL_ERROR`` naming only the exception's type.

        The order's lock is held from the gates' decision to the commit of
        ``replace_requested``, so no fill or second replace of the order slips in between,
        and the growth the replace asks for is held in the fund's book meanwhile, so a
        concurrent submission's gates count it. While the replace is pending the book counts
        the larger of the old and new leaves (:attr:`OrderState.open_quantity`).
        """
        now = self.clock.now()
        try:
            return await self._replace(request, now)
        except Exception as exc:
            _log.exception("replace failed", error_type=type(exc).__name__)
            return _fail(ReplyCode.INTERNAL_ERROR,
                         f"the OMS failed ({type(exc).__name__}); its log has the details", now)

    async def _replace(self, request: object, now: dt.datetime) -> CommandReply:
        req = _valid_replace(request, now)
        if isinstance(req, CommandReply):
            return req
        order_id = req.order_id
        async with self._order_locks.hold(order_id):
            state = await self._load(order_id)
            if state is None:
                return _fail(ReplyCode.ORDER_NOT_FOUND, f"unknown order {order_id}", now)
            judged = self._judge_replace(state, req, now)
            if isinstance(judged, CommandReply):
                return judged
            fund, decision, grows = judged
            if decision.denial is None:
                self.book.hold(state.order, grows)
                try:
                    after = await self._apply_locked(order_id, E.REPLACE_REQUESTED,
                                                     replace=req)
                finally:  # committed: the book counts the pending replace itself now
                    self.book.hold(state.order, -grows)
        denial = decision.denial
        if denial is not None:
            await self._drawdown_action(fund, decision)
            _log.info("replace denied", order_id=order_id, code=denial.code.value,
                      gate=denial.gate)
            return CommandReply(ok=False, order_id=order_id, status=state.status,
                                code=denial.code, message=denial.message, denial=denial,
                                ts=now)
        if after is None or after.status is not S.PENDING_REPLACE:
            return CommandReply(ok=False, order_id=order_id,
                                status=after.status if after else state.status,
                                code=ReplyCode.INVALID_STATE_TRANSITION,
                                message=f"replace not possible in status {state.status}", ts=now)
        forbidden = self.killswitch.forbidden(after)
        if forbidden is not None:  # a halt or REDUCING landed while the request was written
            code, why = forbidden
            why = f"{why} before the replace was sent"
            after = await self.apply(order_id, E.REPLACE_REJECTED,
                                     rejection=Rejection(code, why)) or after
            return CommandReply(ok=False, order_id=order_id, status=after.status, code=code,
                                message=why, ts=now)
        refused: Rejection | None = None
        try:
            report = await self.broker.replace(order_id, quantity=req.quantity,
                                               limit_price=req.limit_price,
                                               stop_price=req.stop_price)
        except (BrokerRejected, BrokerTransportError) as exc:
            refused = Rejection.of(exc)
            after = await self.apply(order_id, E.REPLACE_REJECTED, rejection=refused) or after
        except BrokerUnknownOutcome:
            pass
        else:
            await self.on_execution_report(report)
            after = await self._load(order_id) or after
            if report.exec_type is ExecType.REPLACE_REJECT:
                refused = Rejection.from_report(report, ReplyCode.BROKER_REJECTED)
        if refused is not None:  # the caller must not take the old terms for the new ones
            return CommandReply(ok=False, order_id=order_id, status=after.status,
                                code=refused.code,
                                message=f"replace refused by the broker: {refused.reason}",
                                venue_code=refused.venue_code,
                                venue_message=refused.venue_message,
                                context=refused.context(), ts=now)
        return CommandReply(ok=True, order_id=order_id, status=after.status, ts=now)

    def _judge_replace(self, state: OrderState, req: ReplaceRequest, now: dt.datetime
                       ) -> tuple[FundConfig, Decision, Decimal] | CommandReply:
        """The fund, the gates' decision on the order ``req`` would make and how much the
        replace would grow the order's open quantity; or the coded refusal of a request that
        cannot be judged (order not replaceable now, another instance's fund, a quantity
        below what filled, terms that make no valid order). Runs without yielding to the
        event loop, so that the book the gates read is the one the caller reserves in."""
        order_id = state.order_id
        if E.REPLACE_REQUESTED not in TRANSITIONS.get(state.status, {}):
            shown = state.status.value if state.status else "<new>"
            return CommandReply(ok=False, order_id=order_id, status=state.status,
                                code=ReplyCode.INVALID_STATE_TRANSITION,
                                message=f"replace not possible in status {shown}", ts=now)
        fund = self.funds.get(state.order.fund_id)
        if fund is None:  # loaded from the store: an order another instance serves
            return _fail(ReplyCode.FUND_NOT_FOUND,
                         f"order {order_id} is of fund {state.order.fund_id}, not served here",
                         now)
        filled = state.filled_quantity
        if req.quantity is not None and req.quantity < filled:
            return CommandReply(ok=False, order_id=order_id, status=state.status,
                                code=ReplyCode.INVALID_ORDER,
                                message=f"replace to quantity {req.quantity} below the "
                                        f"{filled} already filled", ts=now)
        terms = {k: v for k in ("quantity", "limit_price", "stop_price")
                 if (v := getattr(req, k)) is not None}
        if state.order.sleeves or req.sleeves is not None:
            made = replaced_sleeve_order(state.order, req, terms)
            if isinstance(made, str):  # shares that do not fit the new quantity
                return CommandReply(ok=False, order_id=order_id, status=state.status,
                                    code=ReplyCode.INVALID_ORDER, message=made, ts=now)
            replaced = made
        else:
            try:
                replaced = parse_message(Order, {**state.order.model_dump(), **terms})
            except ValidationFailed as exc:  # e.g. a limit price for a market order
                return _validation_failed(exc, now).model_copy(
                    update={"order_id": order_id, "status": state.status})
        held = state.open_quantity if self.book.open_order(order_id) is not None else ZERO
        ctx = self.gate_context(fund, now)
        ctx.replacing = Replacing(open_quantity=held, filled_quantity=filled,
                                  credited=state.credited)
        blocked = self.killswitch.blocks(replaced)
        decision = Decision(blocked) if blocked else self.pipeline.evaluate_replace(replaced,
                                                                                     ctx)
        grows = max(replaced.quantity - filled - state.leaves_quantity, ZERO)
        return fund, decision, grows

    # --- broker reports, busts, corrections -----------------------------------------------------

    async def on_execution_report(self, report: ExecutionReport) -> OrderState | None:
        """Apply a broker's report to its order (duplicates are harmless).

        A broker may hand the same report back from a call *and* on its report stream; the
        second copy is recognised by its content and skipped.
        """
        key = (report.order_id, report.exec_type.value, report.ts.isoformat(), report.trade_id,
               report.reason)
        if key in self._seen_reports:
            # The first copy may be being applied right now (a remote broker's report stream
            # can deliver it just before the call's answer): wait for that change to be
            # written, or the caller would read - and reply with - the order as it was before
            # (issue #20: an accepted order answered "pending" over NATS).
            async with self._order_locks.hold(report.order_id):
                pass
            return await self._load(report.order_id)
        self._seen_reports[key] = None
        if len(self._seen_reports) > 10_000:
            self._seen_reports.popitem(last=False)
        try:
            return await self._apply_report(report)
        except BaseException:  # not applied: a copy sent again must not be skipped
            self._seen_reports.pop(key, None)
            raise

    async def _apply_report(self, report: ExecutionReport) -> OrderState | None:
        event = _REPORT_EVENTS[report.exec_type]
        fill = None
        if event in {E.PARTIALLY_FILLED, E.FILLED}:
            state = await self._load(report.order_id)
            if state is None:
                await self._alert(f"fill for unknown order {report.order_id}",
                                  order_id=report.order_id, trade_id=report.trade_id)
                return None
            if not (report.trade_id and report.last_quantity and report.last_price):
                return state  # pragma: no cover - ExecutionReport validates fill fields
            fill = Fill(trade_id=report.trade_id, order_id=report.order_id,
                        fund_id=state.order.fund_id, symbol=state.order.instrument.symbol,
                        side=report.side or state.order.side, quantity=report.last_quantity,
                        price=report.last_price, commission=report.commission, ts=report.ts)
        rejection = None
        if event in {E.REJECTED, E.CANCEL_REJECTED, E.REPLACE_REJECTED}:
            rejection = Rejection.from_report(
                report, ReplyCode.CANCEL_REJECTED if event is E.CANCEL_REJECTED
                else ReplyCode.BROKER_REJECTED)
        return await self.apply(report.order_id, event, fill=fill, reason=report.reason,
                                rejection=rejection)

    async def bust(self, order_id: str, trade_id: str) -> OrderState | None:
        """The venue canceled an execution: remove the fill and rebuild the position."""
        return await self.apply(order_id, E.BUSTED, busted_trade_id=trade_id)

    async def correct(self, fill: Fill) -> OrderState | None:
        """The venue corrected an execution (same ``trade_id``, new quantity or price)."""
        return await self.apply(fill.order_id, E.CORRECTED, fill=fill)

    async def apply(self, order_id: str, event: OrderEventType, *, fill: Fill | None = None,
                    busted_trade_id: str | None = None, replace: ReplaceRequest | None = None,
                    reason: str | None = None, rejection: Rejection | None = None
                    ) -> OrderState | None:
        """Apply one lifecycle event and persist it (the single write path for changes).

        Returns the order's state afterwards (unchanged for a repeat - the transition table
        says which events repeat what the order already says - or an impossible event, which
        is recorded as an alert), or ``None`` for an unknown order. ``rejection``: what the
        broker said when it refused (its code and venue fields go into the event).
        """
        async with self._order_locks.hold(order_id):
            return await self._apply_locked(order_id, event, fill=fill,
                                            busted_trade_id=busted_trade_id, replace=replace,
                                            reason=reason, rejection=rejection)

    async def _apply_locked(self, order_id: str, event: OrderEventType, *,
                            fill: Fill | None = None, busted_trade_id: str | None = None,
                            replace: ReplaceRequest | None = None, reason: str | None = None,
                            rejection: Rejection | None = None) -> OrderState | None:
        """:meth:`apply` for a caller that holds the order's lock already."""
        for _attempt in range(5):
            before = await self._load(order_id)
            if before is None:
                await self._alert(f"{event.value} for unknown order {order_id}",
                                  order_id=order_id, event_type=event.value)
                return None
            out = apply_event(before, event, fill=fill, busted_trade_id=busted_trade_id,
                              replace=replace)
            if out.duplicate:
                return before
            if out.impossible:
                await self._alert(out.problem or "impossible transition", order_id=order_id,
                                  event_type=event.value,
                                  status=before.status.value if before.status else None)
                return before
            try:
                await self._persist(before, out, fill=fill, busted=busted_trade_id,
                                    replace=replace, reason=reason, rejection=rejection)
            except StaleState:  # another writer moved the order: take its version
                # into the book (leaves included) and try again from there
                fresh = await self.store.load_order(order_id)
                if fresh is None:  # pragma: no cover - orders are never deleted
                    self.book.forget(order_id)
                else:
                    self.book.track(before, fresh)
                continue
            self.book.track(before, out.state)
            self._notify()
            return out.state
        raise StaleState(f"order {order_id} kept changing under us", order_id=order_id)

    async def _persist(self, before: OrderState, out: Outcome, *, fill: Fill | None,
                       busted: str | None, replace: ReplaceRequest | None,
                       reason: str | None, rejection: Rejection | None) -> None:
        """Write one change. A fill, bust or correction also moves the position: it is
        computed from the position the previous change left, written, and taken into memory
        under that position's lock. Without the lock, two orders filling at once (the service
        submits concurrently and a broker may fill synchronously) would both start from the
        same position and one fill would be lost."""
        o = out.state.order
        if fill is None and busted is None:  # no position moves (most changes): no locks
            await self._write_change(before, out, fill=fill, busted=busted, replace=replace,
                                     reason=reason, rejection=rejection)
            return
        async with contextlib.AsyncExitStack() as stack:
            # every sleeve position the change moves, in one order (no two changes can then
            # wait on each other's locks)
            trade = fill.trade_id if fill is not None else busted or ""
            names = (set(o.sleeves) or {o.strategy_id}) | set(before.credits_of(trade))
            for name in sorted(names):
                await stack.enter_async_context(self._position_locks.hold(
                    (o.fund_id, name, o.instrument.symbol)))
            await self._write_change(before, out, fill=fill, busted=busted, replace=replace,
                                     reason=reason, rejection=rejection)

    async def _write_change(self, before: OrderState, out: Outcome, *, fill: Fill | None,
                            busted: str | None, replace: ReplaceRequest | None,
                            reason: str | None, rejection: Rejection | None) -> None:
        now = self.clock.now()
        after = out.state
        o = after.order
        detail: dict[str, Any] = {}
        if out.event_type in {E.REJECTED, E.CANCEL_REJECTED, E.REPLACE_REJECTED}:
            if rejection is not None:
                detail.update(rejection.detail())
            else:
                detail["reason"] = reason or out.event_type.value
        if fill is not None:
            detail["fill"] = fill
        if busted is not None:
            detail["busted_trade_id"] = busted
        if out.event_type in {E.REPLACE_REQUESTED, E.REPLACED}:
            detail["replace"] = replace or before.pending_replace
        ev = self._event(after, out.event_type, now, **detail)
        items = [self._item(ev)]
        positions: list[tuple[str, str, str, PositionState]] = []
        if fill is not None or busted is not None:
            positions = await self._sleeve_positions(before, out, fill, busted)
            if fill is not None:
                items.append(OutboxItem("mts.v1.oms.fills.recorded", fill,
                                        f"fill-{fill.trade_id}-{after.sequence}"))
            mark = self.prices.get(o.instrument.symbol)
            for fund_id, strategy_id, symbol, pos in positions:
                p = pos.to_position(fund_id, strategy_id, symbol, now, mark)
                items.append(OutboxItem("mts.v1.oms.positions.updated", p, new_event_id()))
        await self.store.update_order(before.sequence, after, items, now=now, fill=fill,
                                      busted_trade_id=busted, positions=positions)
        for fund_id, strategy_id, symbol, pos in positions:
            self.book.set_position((fund_id, strategy_id, symbol), pos)

    async def _sleeve_positions(self, before: OrderState, out: Outcome, fill: Fill | None,
                                busted: str | None) -> list[tuple[str, str, str, PositionState]]:
        """The positions a fill, bust or correction moves: one per sleeve it credits (the
        order's ``strategy_id`` for an order without sleeves), each by that sleeve's credit
        and commission part at the fund's fill price. A bust or a correction replays the
        sleeve's standing fills as credited to it, the changed trade taken out (and, for a
        correction, put back as now credited) - with the splits booked in the symbol at their
        effective times, so a bust after a split keeps the split; a fill stamped before a split
        already booked (one caught up late) is rebuilt the same way."""
        after = out.state
        o = after.order
        sym = o.instrument.symbol
        parts = {p.strategy_id: p for p in sleeve_fills(after, fill)} if fill else {}
        out_rows: list[tuple[str, str, str, PositionState]] = []
        if out.event_type in {E.PARTIALLY_FILLED, E.FILLED} and fill is not None:
            split_at = self._split_at.get((o.fund_id, sym))
            late = split_at is not None and fill.ts < split_at  # a fill from before a split
            for name, credit in parts.items():  # booked already: rebuilt with the split
                if credit.quantity != 0:
                    key = (o.fund_id, name, sym)
                    if late:
                        stand = [f for f in await self.store.fills_for(*key)
                                 if f.trade_id != fill.trade_id]
                        stand.append(credit_fill(fill, credit.quantity, credit.commission))
                        pos = replay(stand, await self.store.splits_for(*key))
                    else:
                        pos = apply_fill(self.book.position(key), credit.quantity, fill.price,
                                         credit.commission)
                    out_rows.append((*key, pos))
            return out_rows
        trade = fill.trade_id if fill is not None else busted or ""
        names = set(before.credits_of(trade)) | {n for n, p in parts.items() if p.quantity}
        for name in sorted(names):
            stand = [f for f in await self.store.fills_for(o.fund_id, name, sym)
                     if f.trade_id != trade]
            part = parts.get(name)
            if fill is not None and part is not None and part.quantity != 0:
                stand.append(credit_fill(fill, part.quantity, part.commission))
            splits = await self.store.splits_for(o.fund_id, name, sym)
            out_rows.append((o.fund_id, name, sym, replay(stand, splits)))
        return out_rows

    # --- kill switch (see mts1b_oms.killswitch) -------------------------------------------------

    async def set_trading_state(self, command: SetTradingState, *,
                                escalate_only: bool = False) -> CommandReply:
        """Halt, reduce or resume a scope (:meth:`KillSwitch.set_trading_state`): the reply
        comes once the change and its sweep are durable and says how many cancels are
        outstanding; the sweep runs in the background."""
        return await self.killswitch.set_trading_state(command, escalate_only=escalate_only)

    async def halt(self, scope: str = "global", scope_id: str = "*", *, actor: str = "operator",
                   reason: str = "halt") -> CommandReply:
        """Kill switch: stop new orders in the scope and sweep its working orders."""
        return await self.set_trading_state(make_command(scope, scope_id, TradingState.HALTED,
                                                         actor, reason))

    async def resume(self, scope: str = "global", scope_id: str = "*", *,
                     actor: str = "operator", reason: str = "resume") -> CommandReply:
        """The only way out of a halt: set the scope ACTIVE again."""
        return await self.set_trading_state(make_command(scope, scope_id, TradingState.ACTIVE,
                                                         actor, reason))

    def apply_state_change(self, change: TradingStateChange) -> None:
        """Take a change into memory (:meth:`KillSwitch.apply_state_change`)."""
        self.killswitch.apply_state_change(change)

    async def enforce_state(self, change: TradingStateChange) -> None:
        """Sweep this instance's part of a change seen on the fan-out (another instance's
        halt or REDUCING): :meth:`KillSwitch.on_fanout`."""
        await self.killswitch.on_fanout(change)

    async def _strategy_halted(self, strategy_id: str, reason: str) -> Withdrawn | None:
        """The kill switch's hook for a strategy-scope halt (runs in the background): take the
        strategy's share out of the orders it shares with other sleeves. A failure is an
        alert - the next start withdraws it again - never an exception nobody awaits."""
        try:
            return await self.sleeves.withdraw(strategy_id, reason, swept=True)
        except Exception as exc:
            await self._alert(f"withdrawal of halted strategy {strategy_id} failed: "
                              f"{type(exc).__name__}", strategy_id=strategy_id)
            return None

    async def _strategy_reducing(self, strategy_id: str, reason: str) -> Withdrawn | None:
        """The kill switch's hook for a strategy-scope REDUCING (runs in the background): take
        the strategy's shares that would add to its sleeve's position out of the orders it
        shares with other sleeves (its own orders are the REDUCING sweep's). A failure is an
        alert - the next start withdraws them again."""
        try:
            return await self.sleeves.withdraw(strategy_id, reason, swept=True,
                                               increasing_only=True)
        except Exception as exc:
            await self._alert(f"withdrawal of reducing strategy {strategy_id} failed: "
                              f"{type(exc).__name__}", strategy_id=strategy_id)
            return None

    # --- composed targets (see mts1b_oms.composed) ----------------------------------------------

    async def rebalance(self, target: TargetPortfolio) -> CommandReply:
        """Rebalance a fund to ``target``, with sleeve ownership when it carries an allocation
        (:meth:`SleeveDesk.rebalance`); the reply's payload is a ``RebalanceReport``."""
        return await self.sleeves.rebalance(target)

    async def withdraw_strategy(self, strategy_id: str, reason: str, *,
                                fund_id: str | None = None) -> Withdrawn:
        """Take a strategy's share out of the open orders (:meth:`SleeveDesk.withdraw`)."""
        return await self.sleeves.withdraw(strategy_id, reason, fund_id=fund_id)

    async def update_fund(self, config: FundConfig) -> list[Withdrawn]:
        """A fund's new configuration; strategies it dropped are withdrawn at once."""
        return await self.sleeves.update_fund(config)

    async def book_transfer(self, transfer: Transfer) -> bool:
        """Book shares changing owner between sleeves without a trade (a composed target's
        symbol whose sleeve deltas net to zero): each sleeve's position moves by its credit at
        the transfer's price, written with the transfer in one store write. ``False`` when the
        transfer id was booked already (a repeated target): nothing changes."""
        keys = sorted((transfer.fund_id, s, transfer.symbol) for s in transfer.credits)
        async with contextlib.AsyncExitStack() as stack:
            for key in keys:
                await stack.enter_async_context(self._position_locks.hold(key))
            moved = [(*key, apply_fill(self.book.position(key), transfer.credits[key[1]],
                                       transfer.price)) for key in keys
                     if transfer.credits[key[1]] != 0]
            now = self.clock.now()
            mark = self.prices.get(transfer.symbol)
            items = [OutboxItem("mts.v1.oms.positions.updated",
                                p.to_position(f, s, sym, now, mark), new_event_id())
                     for f, s, sym, p in moved]
            if not await self.store.record_transfer(transfer, items, positions=moved):
                return False
            for f, s, sym, p in moved:
                self.book.set_position((f, s, sym), p)
        self._notify()
        return True

    def sleeve_positions(self, fund_id: str) -> dict[str, dict[str, PositionState]]:
        """Positions by sleeve: strategy -> symbol -> position (flat ones left out). The
        fund's position in a symbol is the sum over its sleeves (:meth:`positions`)."""
        out: dict[str, dict[str, PositionState]] = {}
        for (strategy, symbol), p in sorted(self.book.position_states(fund_id).items()):
            if p.quantity != 0:
                out.setdefault(strategy, {})[symbol] = p
        return out

    def sleeve_holdings(self, fund_id: str) -> SleeveAllocation | None:
        """What each sleeve holds now, as a ``SleeveAllocation`` (strategy -> symbol ->
        shares, flat positions left out; ``as_of`` now): the ``current`` a composer starts
        from, in the OMS's own books. ``None`` while the fund holds nothing."""
        held = {s: {sym: p.quantity for sym, p in by.items()}
                for s, by in self.sleeve_positions(fund_id).items()}
        if not held:
            return None
        return SleeveAllocation(fund_id=fund_id, as_of=self.clock.now(), sleeves=held)

    # --- corporate actions ----------------------------------------------------------------------

    async def apply_action(self, action: CorporateAction) -> list[str]:
        """Apply a corporate action to what the OMS keeps: a split to the positions
        (:meth:`apply_split`); a dividend changes nothing here - it is cash, and the OMS keeps
        no cash (its NAV is what :meth:`update_nav` is given; the venue and the treasury book
        the dividend); a delisting closes the positions (:meth:`apply_delisting`). Returns the
        funds whose books the action changed."""
        _expect_action(action)
        if action.kind == "split":
            return await self.apply_split(action)
        if action.kind == "delisting":
            return await self.apply_delisting(action)
        return []

    async def apply_delisting(self, action: CorporateAction) -> list[str]:
        """Close every sleeve position in a delisted symbol, of every fund this OMS serves, at
        ``value`` (the symbol's last close), effective at the open of ``ex_date``: as the paper
        venue pays it out (:meth:`mts1b_brokers.PaperClient.delist`), no commission, realizing
        ``quantity x (value - average cost)``. Returns the funds it was booked for now; a repeat
        of an ``action_id`` booked for a fund changes nothing there.

        Booked as a split of ratio 1 that closes the position (the ``splits`` row's
        ``close_price``, migration 0008), so it is applied once per action and fund in the
        store, written in one transaction with the positions and their events, and a sleeve
        rebuilt later from its fills (a bust, a fill caught up late) is closed there again.
        Working orders are not touched here: the venue cancels them, and its CANCELED reports
        end them in the OMS as any cancel does."""
        _expect_action(action, "delisting")
        eff = effective_at(action.ex_date)
        close = Decimal(action.value)
        async with self._split_lock:
            booked = [fund_id for fund_id in sorted(self.funds)
                      if await self._split_fund(action, fund_id, Decimal(1), eff,
                                                self.prices.get(action.symbol), close=close)]
        if booked:
            self._notify()
        _log.info("delisting applied", action_id=action.action_id, symbol=action.symbol,
                  price=str(close), funds=",".join(booked))
        return booked

    async def apply_split(self, action: CorporateAction) -> list[str]:
        """Apply a split (``value`` new shares per old one) to every position in its symbol,
        of every fund this OMS serves and every sleeve: quantity x ratio, average cost /
        ratio, effective at the open of ``ex_date`` (:func:`effective_at`). Returns the funds
        it was booked for now; a repeat of an ``action_id`` already booked for a fund changes
        nothing there (once per action and fund, in the store, also across restarts).

        Each sleeve's position is rebuilt from its standing fills with the split at its
        effective time (:func:`~mts1b_oms.positions.replay`), so a fill of the ex-date that
        was applied before the split (the venue's fills of a replayed session can overtake
        its action) still lands after it, and the result does not depend on which came first.
        The split, what each sleeve gave up in lieu, the positions and their
        ``mts.v1.oms.positions.updated`` events are written in one transaction.

        Cash in lieu: when the instrument is registered, a fund's position that is no longer
        a whole number of its lots (a reverse split) keeps its whole lots, as the paper venue
        does (cut toward zero): each sleeve keeps its own whole lots, the fund's remaining
        lots go to the sleeves with the largest fractions, and the rest leaves the sleeve's
        position, closed at the adjusted reference price (realized PnL; the cash is the
        venue's and the treasury's). Working orders in the symbol are left as they are (the
        venue leaves them too). The reference price is divided by the ratio when it is from
        before the ex-date (:meth:`set_price` ``at``), once per action in this process; the
        broker is not told (a venue adjusts its own marks)."""
        _expect_action(action, "split")
        ratio = Decimal(action.value)
        eff = effective_at(action.ex_date)
        sym = action.symbol
        async with self._split_lock:
            price = self._split_price(action, ratio, eff)
            booked = []
            for fund_id in sorted(self.funds):
                if await self._split_fund(action, fund_id, ratio, eff, price):
                    booked.append(fund_id)
        if booked:
            self._notify()
        _log.info("split applied", action_id=action.action_id, symbol=sym,
                  ratio=str(ratio), funds=",".join(booked))
        return booked

    def _split_price(self, action: CorporateAction, ratio: Decimal,
                     eff: dt.datetime) -> Decimal | None:
        """The reference price after the split: the current one divided by the ratio when it
        is from before the ex-date (once per action in this process), else as it is."""
        sym = action.symbol
        price = self.prices.get(sym)
        at = self._price_at.get(sym)
        if price is None or action.action_id in self._adjusted or (at is not None
                                                                    and at >= eff):
            return price
        self._adjusted.add(action.action_id)
        price = price / ratio
        self.prices[sym] = price
        self._price_at[sym] = eff
        self.book.prices_changed()
        return price

    async def _split_fund(self, action: CorporateAction, fund_id: str, ratio: Decimal,
                          eff: dt.datetime, price: Decimal | None, *,
                          close: Decimal | None = None) -> bool:
        """:meth:`apply_split` for one fund (``close``: :meth:`apply_delisting`'s, the
        position closed at that price after the split); ``False`` when it was booked there
        before."""
        sym = action.symbol
        if await self.store.split_booked(action.action_id, fund_id):
            self._split_at[(fund_id, sym)] = max(self._split_at.get((fund_id, sym), eff), eff)
            return False
        names = sorted(st for (st, s) in self.book.position_states(fund_id) if s == sym)
        async with contextlib.AsyncExitStack() as stack:
            for name in names:
                await stack.enter_async_context(self._position_locks.hold((fund_id, name, sym)))
            history: dict[str, tuple[list[Fill], list[SplitStep]]] = {}
            for name in names:
                history[name] = (await self.store.fills_for(fund_id, name, sym),
                                 await self.store.splits_for(fund_id, name, sym))
            before = {n: replay([f for f in fills if f.ts < eff],
                                [s for s in steps if s.effective_at < eff])
                      for n, (fills, steps) in history.items()}
            registered = self.instruments.get(sym)
            adjusted = {n: p.quantity * ratio for n, p in before.items() if p.quantity != 0}
            lieu = (lieu_quantities(adjusted, registered.instrument.lot_size)
                    if registered is not None and adjusted and close is None else {})
            moved: list[tuple[str, str, str, PositionState]] = []
            for name, (fills, steps) in history.items():
                step = SplitStep(action.action_id, eff, ratio, lieu.get(name, ZERO), price,
                                 close)
                after = replay(fills, [*steps, step])
                if after != self.book.position((fund_id, name, sym)):
                    moved.append((fund_id, name, sym, after))
            now = self.clock.now()
            mark = self.prices.get(sym)
            items = [OutboxItem("mts.v1.oms.positions.updated",
                                p.to_position(f, s, y, now, mark), new_event_id())
                     for f, s, y, p in moved]
            record = SplitRecord(action_id=action.action_id, fund_id=fund_id, symbol=sym,
                                 ex_date=dt.date.fromisoformat(action.ex_date), ratio=ratio,
                                 effective_at=eff, applied_at=now,
                                 in_lieu={n: (q, price) for n, q in lieu.items()},
                                 close_price=close)
            if not await self.store.record_split(record, items, positions=moved):
                return False
            for f, s, y, p in moved:
                self.book.set_position((f, s, y), p)
            self._split_at[(fund_id, sym)] = max(self._split_at.get((fund_id, sym), eff), eff)
        if lieu:
            _log.info("split left fractions paid in lieu", action_id=action.action_id,
                      fund_id=fund_id, symbol=sym,
                      in_lieu=",".join(f"{n}={q}" for n, q in sorted(lieu.items())))
        return True

    # --- positions ------------------------------------------------------------------------------

    def positions(self, fund_id: str) -> dict[str, Decimal]:
        """Net quantity per symbol across the fund's strategies."""
        return self.book.positions(fund_id)

    def position_states(self, fund_id: str) -> dict[tuple[str, str], PositionState]:
        return self.book.position_states(fund_id)

    async def reconcile(self, fund_id: str) -> list[Mismatch]:
        """Compare the fund's positions with the broker's; report mismatches as alerts."""
        fund = self.funds[fund_id]
        theirs: dict[str, Decimal] = {}
        for p in await self.broker.positions(fund.broker_account_id):
            theirs[p.symbol] = theirs.get(p.symbol, ZERO) + p.quantity
        mismatches = reconcile(self.positions(fund_id), {k: v for k, v in theirs.items() if v})
        for m in mismatches:
            await self._alert(f"position mismatch {fund_id} {m.symbol}: oms {m.oms_quantity} "
                              f"broker {m.broker_quantity}", fund_id=fund_id, symbol=m.symbol,
                              oms=str(m.oms_quantity), broker=str(m.broker_quantity))
        return mismatches

    # --- helpers --------------------------------------------------------------------------------

    async def _load(self, order_id: str) -> OrderState | None:
        cached = self.book.open_order(order_id)
        if cached is not None:
            return cached
        return await self.store.load_order(order_id)

    def _event(self, state: OrderState, event: OrderEventType, now: dt.datetime,
               **detail: Any) -> OrderEvent:
        return OrderEvent(event_id=new_event_id(), order_id=state.order_id,
                          fund_id=state.order.fund_id, event_type=event,
                          status=state.status or S.PENDING,
                          ts=now, sequence=state.sequence, **detail)

    @staticmethod
    def _item(ev: OrderEvent) -> OutboxItem:
        return OutboxItem(f"mts.v1.oms.orders.{ev.event_type.value}", ev, ev.event_id)

    def _notify(self) -> None:
        if self.relay is not None:
            self.relay.notify()

    async def _alert(self, text: str, **context: Any) -> None:
        alert = Alert(alert_id=new_event_id().replace("evt-", "alr-"), severity=Severity.ERROR,
                      labels=alert_labels("OmsAlert", "mts1b-oms", context),
                      source="mts1b-oms", text=text[:4000],
                      context={k: (v if isinstance(v, str | int | float | bool) or v is None
                                   else str(v)) for k, v in context.items()},
                      ts=self.clock.now())
        self.alerts.append(alert)
        _log.error("oms alert", text=text, **{k: str(v) for k, v in context.items()})
        try:
            await self.store.record_alert(
                alert, [OutboxItem("mts.v1.operations.alerts.raised", alert, alert.alert_id)])
        except Exception as exc:  # an alert must never take the OMS down
            _log.error("could not store alert", error=repr(exc))


def effective_at(ex_date: str | dt.date) -> dt.datetime:
    """When a corporate action of ``ex_date`` takes effect for the OMS's books: that day's
    00:00 UTC - before any fill of the ex-date's session (stamped at or after its open), after
    every fill of the session before. Known limit: an exchange whose session opens before
    midnight UTC would need the calendar's open instead (the treasury keeps the same rule)."""
    day = dt.date.fromisoformat(ex_date) if isinstance(ex_date, str) else ex_date
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def broker_cancel_rate(broker: BrokerProtocol) -> float:
    """The cancels per second a sweep may send to ``broker``: its ``cancel_rate`` attribute
    when it has a positive one (a broker knows its venue's limit), else the default 10."""
    rate = getattr(broker, "cancel_rate", None)
    if isinstance(rate, int | float) and not isinstance(rate, bool) and rate > 0:
        return float(rate)
    return DEFAULT_CANCEL_RATE


_VENUE_CODE: TypeAdapter[str] = TypeAdapter(VenueCode)


def _venue_code(value: object) -> str | None:
    """A venue's reason code if the wire's ``VenueCode`` takes it (the type is the rule:
    printable ASCII without blanks, at most 64 characters); anything else is left out."""
    try:
        return _VENUE_CODE.validate_python(value)
    except ValidationError:
        return None


def _unstorable_text(order: Order) -> str | None:
    """The first text field of the order (or of its instrument, whose free-text fields such
    as ``sector`` have no character rules on the wire) that PostgreSQL cannot store - a NUL,
    or a lone surrogate that no UTF-8 can encode - or ``None``. Found by the fuzzer: such an
    order passed validation and failed inside the store.

    Fast path: all the text is checked at once (:func:`_all_storable`), and the fields one by
    one only when that finds something to name - this runs for every order submitted, and
    almost every order's text is plain ASCII."""
    if _all_storable(order) and _all_storable(order.instrument):
        return None
    for prefix, model in (("", order), ("instrument.", order.instrument)):
        for name, value in model.__dict__.items():
            texts = value.values() if isinstance(value, dict) else (value,)
            for text in texts:
                if isinstance(text, str) and ("\x00" in text or (
                        not text.isascii() and not _encodable(text))):
                    return prefix + name
    return None


def _all_storable(model: object) -> bool:
    """Whether every text :func:`_unstorable_text` checks in ``model`` (its fields, and the
    values of its mapping fields) is free of NUL and encodable as UTF-8: the same test on the
    texts joined, which holds exactly when it holds for each (a NUL or a lone surrogate stays
    one when joined; Python never pairs two surrogates of a string into one character). The
    texts are picked out by ``filter`` with the types' own instance checks (the same test as
    ``isinstance``), so no Python code runs per field."""
    values = model.__dict__.values()
    text = "".join(filter(_IS_TEXT, values))
    for mapping in filter(_IS_MAPPING, values):
        text += "".join(filter(_IS_TEXT, mapping.values()))
    return "\x00" not in text and (text.isascii() or _encodable(text))


_IS_TEXT: Callable[[object], bool] = str.__instancecheck__
_IS_MAPPING: Callable[[object], bool] = dict.__instancecheck__


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _fail(code: ReplyCode, message: str, now: dt.datetime) -> CommandReply:
    return CommandReply(ok=False, code=code, message=message, ts=now)


def _validation_failed(exc: ValidationFailed, now: dt.datetime) -> CommandReply:
    """``VALIDATION_FAILED`` with the foundation's message and the first field it names."""
    errors = exc.context.get("errors") or [{}]
    field = str(errors[0].get("field", "<root>"))[:200]
    return CommandReply(ok=False, code=ReplyCode.VALIDATION_FAILED, message=exc.message[:4000],
                        context={"field": field}, ts=now)


def _valid_replace(request: object, now: dt.datetime) -> ReplaceRequest | CommandReply:
    """The request validated again in full - one built without validation (``model_construct``)
    may hold a NaN or 1E+308 that the wire would have refused - or ``VALIDATION_FAILED``."""
    if not isinstance(request, ReplaceRequest):
        return _fail(ReplyCode.VALIDATION_FAILED,
                     f"expected a ReplaceRequest, got {type(request).__name__}", now)
    try:
        return parse_message(ReplaceRequest, request.model_dump(warnings=False))
    except ValidationFailed as exc:
        return _validation_failed(exc, now)
    except Exception as exc:  # fields that are not even the right types
        return _fail(ReplyCode.VALIDATION_FAILED,
                     f"not a valid ReplaceRequest ({type(exc).__name__})", now)
