"""The OMS core: submit / cancel / replace, execution reports, kill switch, positions.

One :class:`Oms` owns a :class:`~mts1b_oms.store.Store` (PostgreSQL, the system of record), a
broker (anything satisfying :class:`~mts1b_foundation.BrokerProtocol`) and the fund configs. Every
change goes through the transition table of :mod:`mts1b_oms.state` and is written together with
its events and outbox rows in one transaction; an optional :class:`~mts1b_oms.outbox.OutboxRelay`
publishes them.

Submission is idempotent: the caller's ``idempotency_key`` maps to one ``order_id`` inside the
dedupe window (default 24 h), store-backed, so a retry after a crash or a timeout returns the
original order and the broker (keyed by ``order_id``) sees one order. An order whose broker call
had an unknown outcome stays ``pending`` and is re-sent with the *same* ``order_id`` on the next
retry or at start (:meth:`Oms.recover`), which brokers must treat as a repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections import OrderedDict, defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from mts1b_foundation import (
    Alert,
    BrokerProtocol,
    BrokerRejected,
    BrokerTransportError,
    BrokerUnknownOutcome,
    Clock,
    CommandReply,
    Denial,
    DenialCode,
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
    Side,
    SystemClock,
    TradingState,
    TradingStateChange,
    new_event_id,
    new_order_id,
)
from mts1b_platform.logging import get_logger

from mts1b_oms.gates import FundMemory, GateContext, GatePipeline
from mts1b_oms.keyedlocks import KeyedLocks
from mts1b_oms.positions import Mismatch, PositionState, apply_fill, reconcile, replay
from mts1b_oms.state import OrderState, Outcome, apply_event, new_order_state
from mts1b_oms.store import OutboxItem, StaleState, Store
from mts1b_oms.tradingstate import TradingStates, make_change, make_command, restrictiveness

__all__ = ["DEFAULT_IDEMPOTENCY_WINDOW", "Oms", "StateFanout"]

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
_SAME = {E.CANCELED: S.CANCELED, E.EXPIRED: S.EXPIRED, E.REJECTED: S.REJECTED}


class StateFanout(Protocol):
    """Where kill-switch changes go so other OMS instances see them (the NATS KV bucket)."""

    async def put(self, change: TradingStateChange) -> None: ...


class _Relay(Protocol):
    def notify(self) -> None: ...


@dataclass
class _Book:
    """In-memory view of one fund for the gates: positions and open leaves per symbol."""

    positions: dict[str, Decimal]
    open_buy: dict[str, Decimal]
    open_sell: dict[str, Decimal]


class Oms:
    """The order management system. See the module docstring."""

    def __init__(
        self,
        store: Store,
        broker: BrokerProtocol,
        funds: Sequence[FundConfig] | Mapping[str, FundConfig],
        *,
        clock: Clock | None = None,
        idempotency_window: dt.timedelta = DEFAULT_IDEMPOTENCY_WINDOW,
        pipeline: GatePipeline | None = None,
        relay: _Relay | None = None,
        fanout: StateFanout | None = None,
    ) -> None:
        self.store = store
        self.broker = broker
        self.funds: dict[str, FundConfig] = (
            dict(funds) if isinstance(funds, Mapping) else {f.fund_id: f for f in funds})
        self.clock: Clock = clock or SystemClock()
        self.window = idempotency_window
        self.pipeline = pipeline or GatePipeline()
        self.relay = relay
        self.fanout = fanout
        self.states = TradingStates()
        self.prices: dict[str, Decimal] = {}
        self.adv: dict[str, Decimal] = {}
        self.nav: dict[str, Decimal] = {f: c.target_nav_usd for f, c in self.funds.items()}
        self.peak_nav: dict[str, Decimal] = {}
        self._memory: dict[str, FundMemory] = defaultdict(FundMemory)
        self._books: dict[str, _Book] = defaultdict(lambda: _Book({}, {}, {}))
        self._pos: dict[tuple[str, str, str], PositionState] = {}
        self._open: dict[str, OrderState] = {}
        self._sending: set[str] = set()  # order ids whose broker.submit is in flight
        self._state_lock = asyncio.Lock()  # kill-switch changes: store then memory, one by one
        self._order_locks = KeyedLocks()  # one lifecycle change per order at a time
        self._position_locks = KeyedLocks()  # one fill per (fund, strategy, symbol) at a time
        self._reports: asyncio.Task[None] | None = None
        self.alerts: deque[Alert] = deque(maxlen=1_000)  # the latest; all are in the store
        self._seen_reports: OrderedDict[tuple[Any, ...], None] = OrderedDict()

    # --- start / stop -------------------------------------------------------------------------

    async def start(self, *, consume_reports: bool = True, reconcile: bool = True) -> None:
        """Load state from the store, re-drive interrupted orders, listen to the broker, and
        (``reconcile``) compare each fund's positions with the broker's: a mismatch found at
        start is an alert, as on demand, never an overwrite."""
        for scope, scope_id, state in await self.store.trading_states():
            self.states.set(scope, scope_id, state)
        for fund_id in self.funds:
            stored = await self.store.nav(fund_id)
            if stored is not None:
                self.nav[fund_id], self.peak_nav[fund_id] = stored
        for fund_id, strategy_id, symbol, p in await self.store.positions():
            if fund_id not in self.funds:  # another instance's fund
                continue
            self._pos[(fund_id, strategy_id, symbol)] = p
            book = self._books[fund_id]
            book.positions[symbol] = book.positions.get(symbol, ZERO) + p.quantity
        for st in await self.store.open_orders():
            if st.order.fund_id in self.funds:  # recover() must not send another fund's order
                self._track(None, st)  # through this instance's broker
        if consume_reports:
            self._reports = asyncio.get_running_loop().create_task(self._consume_reports())
        await self.recover()
        if reconcile:
            for fund_id in self.funds:
                try:
                    await self.reconcile(fund_id)
                except Exception as exc:  # a broker that cannot answer yet must not stop us
                    await self._alert(f"reconciliation at start failed for {fund_id}: {exc!r}",
                                      fund_id=fund_id)

    async def stop(self) -> None:
        if self._reports is not None:
            self._reports.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reports
            self._reports = None

    async def recover(self) -> int:
        """Re-send what a crash may have interrupted: ``pending`` orders (same order_id, so the
        broker treats it as a repeat) and ``pending_cancel`` cancels. Returns how many."""
        n = 0
        for st in list(self._open.values()):
            if st.status is S.PENDING:
                await self._send(st)
                n += 1
            elif st.status is S.PENDING_CANCEL:
                await self._send_cancel(st)
                n += 1
        return n

    async def _consume_reports(self) -> None:
        async for report in self.broker.execution_reports():
            try:
                await self.on_execution_report(report)
            except Exception as exc:  # one bad report must not stop the stream
                _log.error("execution report failed", order_id=report.order_id, error=repr(exc))

    # --- market inputs --------------------------------------------------------------------------

    def set_price(self, symbol: str, price: Decimal, adv: Decimal | None = None) -> None:
        """Reference price (and optionally average daily volume) used by the gates."""
        self.prices[symbol] = price
        for mem in self._memory.values():
            mem.exposure = None  # the gates' cached book value used the old price
        if adv is not None:
            self.adv[symbol] = adv

    async def update_nav(self, fund_id: str, nav: Decimal) -> None:
        """Record the fund's NAV; the drawdown gate compares it with the stored peak."""
        self.peak_nav[fund_id] = await self.store.set_nav(fund_id, nav, self.clock.now())
        self.nav[fund_id] = nav

    # --- submission -----------------------------------------------------------------------------

    def gate_context(self, fund: FundConfig, now: dt.datetime) -> GateContext:
        book = self._books[fund.fund_id]
        return GateContext(fund=fund, now=now, nav=self.nav[fund.fund_id], states=self.states,
                           positions=book.positions, open_buy=book.open_buy,
                           open_sell=book.open_sell, prices=self.prices, adv=self.adv,
                           peak_nav=self.peak_nav.get(fund.fund_id),
                           memory=self._memory[fund.fund_id])

    async def submit(self, order: Order) -> CommandReply:
        """Accept an order: gates, store (claiming the idempotency key), broker. Never raises
        for a bad order.

        Safe to call concurrently (the NATS service does). Everything from the gates' decision
        to the reservation of the order's quantity in the fund's book runs without yielding to
        the event loop, so a concurrent submission's gates already count this order, before it
        is even committed. A repeat of an earlier ``idempotency_key`` is recognised by the
        store when it refuses the key (no separate lookup first): it is then answered with the
        earlier order. It counts as a message for the message-rate throttle, but not as an
        execution for the repeated-execution throttle.
        """
        now = self.clock.now()
        fund = self.funds.get(order.fund_id)
        if fund is None:
            return _fail(ReplyCode.FUND_NOT_FOUND, f"unknown fund {order.fund_id}", now)
        if order.order_id is not None:
            return _fail(ReplyCode.INVALID_ORDER,
                         "order_id is assigned by the OMS; leave it empty", now)
        o = order.model_copy(update={
            "order_id": new_order_id(),
            "broker": order.broker or fund.broker,
            "account_id": order.account_id or fund.broker_account_id,
        })
        ctx = self.gate_context(fund, now)
        decision = self.pipeline.evaluate(o, ctx)
        state = apply_event(new_order_state(o), E.SUBMITTED).state
        items = [self._item(self._event(state, E.SUBMITTED, now, order=o))]
        denial = decision.denial
        denial_row = None
        if denial is not None:
            state = apply_event(state, E.DENIED).state
            ev = self._event(state, E.DENIED, now, denial=denial)
            items.append(self._item(ev))
            denial_row = (ev.event_id, denial)
        else:
            self._reserve(state, +1)
        try:
            held = await self.store.create_order(state, items, now=now, window=self.window,
                                                 denial=denial_row)
        except BaseException:
            if denial is None:
                self._reserve(state, -1)
            raise
        if held is not None:  # the key belongs to an earlier order (or a concurrent twin)
            if denial is None:
                self._reserve(state, -1)
                self.pipeline.forget(o, ctx)
            return await self._repeat(held, now)
        self._notify()
        if decision.state_change is not None:  # only ever a step up: never undo a halt
            await self.set_trading_state(SetTradingState(
                scope="fund", scope_id=fund.fund_id, state=decision.state_change,
                actor="oms.drawdown", reason=denial.message if denial else "drawdown"),
                escalate_only=True)
        if denial is not None:
            _log.info("order denied", order_id=state.order_id, code=denial.code.value,
                      gate=denial.gate)
            return CommandReply(ok=False, order_id=state.order_id, status=S.DENIED,
                                code=denial.code.value, message=denial.message, denial=denial,
                                ts=now)
        self._reserve(state, -1)  # committed: from here the open-order book counts it
        self._track(None, state)
        forbidden = self._forbidden(state)
        if forbidden is not None:  # a halt or REDUCING landed while the order was being
            # written: the state's cancel sweep may have missed it, so it must not be sent
            code, why = forbidden
            state = await self.apply(state.order_id, E.CANCELED,
                                     reason=f"{why} before it was sent") or state
            return CommandReply(ok=False, order_id=state.order_id, status=state.status,
                                code=code.value, message=f"{why} before the order was sent",
                                ts=now)
        state = await self._send(state)
        return self._reply(state, now)

    def _forbidden(self, state: OrderState) -> tuple[DenialCode, str] | None:
        """Why the trading state forbids this order to work now, or None.

        HALTED forbids every order; REDUCING forbids one that takes its position further from
        zero, judged with the older open orders on its side as the REDUCING sweep judges them
        (:meth:`_risk_increasing`). Checked wherever an order is about to reach the broker or
        has just reached it, because a state change can land at any ``await`` in between.
        """
        o = state.order
        trading, (scope, scope_id) = self.states.effective(o.fund_id, o.strategy_id)
        if trading is TradingState.HALTED:
            return DenialCode.TRADING_HALTED, f"trading is halted for {scope} {scope_id}"
        if trading is TradingState.REDUCING:
            side = [st for st in self._open.values() if st.order_id != state.order_id
                    and st.order.fund_id == o.fund_id and st.order.side is o.side
                    and st.order.instrument.symbol == o.instrument.symbol]
            if any(st.order_id == state.order_id
                   for st in self._risk_increasing([*side, state])):
                return DenialCode.TRADING_STATE_REDUCING, f"{scope} {scope_id} is reducing"
        return None

    async def _repeat(self, order_id: str, now: dt.datetime) -> CommandReply:
        state = await self._load(order_id)
        if state is None:  # pragma: no cover - the idempotency row and order share a tx
            return _fail(ReplyCode.INTERNAL_ERROR, f"order {order_id} missing", now)
        if state.status is S.PENDING:
            forbidden = self._forbidden(state)
            state = await self._send(state)  # same order_id: the broker sees a repeat
            if forbidden is not None:  # not sent (canceled at the broker instead)
                return CommandReply(ok=False, order_id=state.order_id, status=state.status,
                                    code=forbidden[0].value, duplicate=True, ts=now,
                                    message=f"{forbidden[1]}: the order was not sent")
        reply = self._reply(state, now)
        if state.status is S.DENIED:
            denial = await self._denial_of(order_id)
            reply = reply.model_copy(update={"denial": denial,
                                             "code": denial.code if denial
                                             else ReplyCode.ORDER_DENIED,
                                             "message": denial.message if denial else None})
        return reply.model_copy(update={"duplicate": True})

    async def _denial_of(self, order_id: str) -> Denial | None:
        for ev in await self.store.events(order_id):
            if ev.get("denial"):
                return Denial.model_validate(ev["denial"])
        return None

    def _reply(self, state: OrderState, now: dt.datetime) -> CommandReply:
        status = state.status
        if status is S.REJECTED:
            return CommandReply(ok=False, order_id=state.order_id, status=status,
                                code=ReplyCode.BROKER_REJECTED, message="rejected by the broker",
                                ts=now)
        if status is S.DENIED:
            return CommandReply(ok=False, order_id=state.order_id, status=status,
                                code=ReplyCode.ORDER_DENIED, ts=now)
        return CommandReply(ok=True, order_id=state.order_id, status=status, ts=now)

    async def _send(self, state: OrderState) -> OrderState:
        """Send an order to the broker and record the answer.

        Also the path of a retry and of :meth:`recover`, whose order may already be at the
        broker from an earlier try with an unknown outcome: if the trading state now forbids
        the order, it is canceled at the broker instead of sent. A halt or REDUCING that lands
        while the broker has the request (its sweep's cancel can even overtake the order) is
        caught when the answer comes back, and the order is canceled then.
        """
        forbidden = self._forbidden(state)
        if forbidden is not None:
            await self.cancel(state.order_id, f"{forbidden[1]}: not sent")
            return await self._load(state.order_id) or state
        self._sending.add(state.order_id)
        try:
            report = await self.broker.submit(state.order)
        except BrokerRejected as exc:
            return await self.apply(state.order_id, E.REJECTED, reason=exc.message) or state
        except BrokerTransportError as exc:  # never reached the venue: safe to call rejected
            return await self.apply(state.order_id, E.REJECTED,
                                    reason=f"transport: {exc.message}") or state
        except BrokerUnknownOutcome as exc:
            _log.warning("broker outcome unknown; order stays pending",
                         order_id=state.order_id, error=exc.message)
            return state
        finally:
            self._sending.discard(state.order_id)
        await self.on_execution_report(report)
        after = await self._load(state.order_id) or state
        forbidden = self._forbidden(after)
        if forbidden is not None and after.is_open and after.status is not S.PENDING_CANCEL:
            await self.cancel(after.order_id, f"{forbidden[1]} while the order was sent")
            after = await self._load(after.order_id) or after
        return after

    # --- cancel / replace -----------------------------------------------------------------------

    async def cancel(self, order_id: str, reason: str = "requested") -> CommandReply:
        """Cancel at the broker; ``ok`` only when the cancel took (pending or done).

        If the broker refuses and the order is working again while the trading state forbids
        it (a halt's cancel can overtake the order itself on its way to the venue), the cancel
        is sent once more.
        """
        return await self._cancel(order_id, reason, again=True)

    async def _cancel(self, order_id: str, reason: str, *, again: bool) -> CommandReply:
        now = self.clock.now()
        state = await self._load(order_id)
        if state is None:
            return _fail(ReplyCode.ORDER_NOT_FOUND, f"unknown order {order_id}", now)
        if not state.is_open:
            return CommandReply(ok=False, order_id=order_id, status=state.status,
                                code=ReplyCode.ORDER_NOT_OPEN, message=f"order is {state.status}",
                                ts=now)
        if state.status is not S.PENDING_CANCEL:
            after = await self.apply(order_id, E.CANCEL_REQUESTED, reason=reason)
            if after is None or after.status is not S.PENDING_CANCEL:
                return CommandReply(ok=False, order_id=order_id,
                                    status=after.status if after else state.status,
                                    code=ReplyCode.INVALID_STATE_TRANSITION,
                                    message="cancel not possible now", ts=now)
            state = after
        state = await self._send_cancel(state)
        if again and state.is_open and state.status is not S.PENDING_CANCEL and (
                self._forbidden(state) is not None):
            return await self._cancel(order_id, reason, again=False)
        if state.status not in {S.PENDING_CANCEL, S.CANCELED}:  # the broker refused it, or the
            # order filled first: the caller must not count it as canceled
            return CommandReply(ok=False, order_id=order_id, status=state.status,
                                code=ReplyCode.CANCEL_REJECTED,
                                message=f"cancel did not take: order is {state.status}", ts=now)
        return CommandReply(ok=True, order_id=order_id, status=state.status, ts=now)

    async def _send_cancel(self, state: OrderState) -> OrderState:
        try:
            report = await self.broker.cancel(state.order_id)
        except BrokerRejected as exc:
            if state.prior is S.PENDING and state.order_id not in self._sending:
                # The broker never acknowledged it, no request is on its way, and it says it
                # has no such order: nothing is working there. Going back to pending would let
                # a retry or a restart send it after all (a late fill still applies). While a
                # submit is in flight the cancel may simply have overtaken it: then the order
                # goes back to pending and _send cancels it again once the answer is in.
                return await self.apply(state.order_id, E.CANCELED,
                                        reason=f"not at the broker: {exc.message}") or state
            return await self.apply(state.order_id, E.CANCEL_REJECTED,
                                    reason=exc.message or "cancel rejected") or state
        except BrokerTransportError as exc:
            return await self.apply(state.order_id, E.CANCEL_REJECTED,
                                    reason=exc.message or "cancel rejected") or state
        except BrokerUnknownOutcome:
            return state
        await self.on_execution_report(report)
        return await self._load(state.order_id) or state

    async def replace(self, request: ReplaceRequest) -> CommandReply:
        now = self.clock.now()
        order_id = request.order_id
        state = await self._load(order_id)
        if state is None:
            return _fail(ReplyCode.ORDER_NOT_FOUND, f"unknown order {order_id}", now)
        after = await self.apply(order_id, E.REPLACE_REQUESTED, replace=request)
        if after is None or after.status is not S.PENDING_REPLACE:
            return CommandReply(ok=False, order_id=order_id, status=state.status,
                                code=ReplyCode.INVALID_STATE_TRANSITION,
                                message=f"replace not possible in status {state.status}", ts=now)
        try:
            report = await self.broker.replace(order_id, quantity=request.quantity,
                                               limit_price=request.limit_price,
                                               stop_price=request.stop_price)
        except (BrokerRejected, BrokerTransportError) as exc:
            after = await self.apply(order_id, E.REPLACE_REJECTED,
                                     reason=exc.message or "replace rejected")
        except BrokerUnknownOutcome:
            pass
        else:
            await self.on_execution_report(report)
            after = await self._load(order_id)
        status = after.status if after else None
        return CommandReply(ok=True, order_id=order_id, status=status, ts=now)

    # --- broker reports, busts, corrections -----------------------------------------------------

    async def on_execution_report(self, report: ExecutionReport) -> OrderState | None:
        """Apply a broker's report to its order (duplicates are harmless).

        A broker may hand the same report back from a call *and* on its report stream; the
        second copy is recognised by its content and skipped.
        """
        key = (report.order_id, report.exec_type.value, report.ts.isoformat(), report.trade_id,
               report.reason)
        if key in self._seen_reports:
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
        return await self.apply(report.order_id, event, fill=fill, reason=report.reason)

    async def bust(self, order_id: str, trade_id: str) -> OrderState | None:
        """The venue canceled an execution: remove the fill and rebuild the position."""
        return await self.apply(order_id, E.BUSTED, busted_trade_id=trade_id)

    async def correct(self, fill: Fill) -> OrderState | None:
        """The venue corrected an execution (same ``trade_id``, new quantity or price)."""
        return await self.apply(fill.order_id, E.CORRECTED, fill=fill)

    async def apply(self, order_id: str, event: OrderEventType, *, fill: Fill | None = None,
                    busted_trade_id: str | None = None, replace: ReplaceRequest | None = None,
                    reason: str | None = None) -> OrderState | None:
        """Apply one lifecycle event and persist it (the single write path for changes).

        Returns the order's state afterwards (unchanged for a duplicate or an impossible event,
        which is recorded as an alert), or ``None`` for an unknown order.
        """
        async with self._order_locks.hold(order_id):
            for _attempt in range(5):
                before = await self._load(order_id)
                if before is None:
                    await self._alert(f"{event.value} for unknown order {order_id}",
                                      order_id=order_id, event_type=event.value)
                    return None
                if _is_repeat(before, event):
                    return before
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
                                        replace=replace, reason=reason)
                except StaleState:  # another writer moved the order: take its version
                    # into the book (leaves included) and try again from there
                    fresh = await self.store.load_order(order_id)
                    if fresh is None:  # pragma: no cover - orders are never deleted
                        self._open.pop(order_id, None)
                    else:
                        self._track(before, fresh)
                    continue
                self._track(before, out.state)
                self._notify()
                return out.state
        raise StaleState(f"order {order_id} kept changing under us", order_id=order_id)

    async def _persist(self, before: OrderState, out: Outcome, *, fill: Fill | None,
                       busted: str | None, replace: ReplaceRequest | None,
                       reason: str | None) -> None:
        """Write one change. A fill, bust or correction also moves the position: it is
        computed from the position the previous change left, written, and taken into memory
        under that position's lock. Without the lock, two orders filling at once (the service
        submits concurrently and a broker may fill synchronously) would both start from the
        same position and one fill would be lost."""
        o = out.state.order
        guard: contextlib.AbstractAsyncContextManager[None] = contextlib.nullcontext()
        if fill is not None or busted is not None:
            guard = self._position_locks.hold((o.fund_id, o.strategy_id, o.instrument.symbol))
        async with guard:
            await self._write_change(before, out, fill=fill, busted=busted, replace=replace,
                                     reason=reason)

    async def _write_change(self, before: OrderState, out: Outcome, *, fill: Fill | None,
                            busted: str | None, replace: ReplaceRequest | None,
                            reason: str | None) -> None:
        now = self.clock.now()
        after = out.state
        o = after.order
        detail: dict[str, Any] = {}
        if out.event_type in {E.REJECTED, E.CANCEL_REJECTED, E.REPLACE_REJECTED}:
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
            key = (o.fund_id, o.strategy_id, o.instrument.symbol)
            if out.event_type in {E.PARTIALLY_FILLED, E.FILLED} and fill is not None:
                pos = apply_fill(self._pos.get(key, PositionState()), fill.signed_quantity,
                                 fill.price, fill.commission)
            else:  # bust or correction: replay the fills that stand
                stand = [f for f in await self.store.fills_for(*key)
                         if f.trade_id != busted and (fill is None or f.trade_id != fill.trade_id)]
                if fill is not None:
                    stand.append(fill)
                pos = replay(stand)
            positions.append((*key, pos))
            if fill is not None:
                items.append(OutboxItem("mts.v1.oms.fills.recorded", fill,
                                        f"fill-{fill.trade_id}-{after.sequence}"))
            p = pos.to_position(o.fund_id, o.strategy_id, o.instrument.symbol, now,
                                self.prices.get(o.instrument.symbol))
            items.append(OutboxItem("mts.v1.oms.positions.updated", p, new_event_id()))
        await self.store.update_order(before.sequence, after, items, now=now, fill=fill,
                                      busted_trade_id=busted, positions=positions)
        for fund_id, strategy_id, symbol, pos in positions:
            old = self._pos.get((fund_id, strategy_id, symbol), PositionState())
            self._pos[(fund_id, strategy_id, symbol)] = pos
            self._memory[fund_id].exposure = None
            book = self._books[fund_id]
            book.positions[symbol] = book.positions.get(symbol, ZERO) - old.quantity + (
                pos.quantity)

    # --- kill switch ----------------------------------------------------------------------------

    async def set_trading_state(self, command: SetTradingState, *,
                                escalate_only: bool = False) -> CommandReply:
        """Halt, reduce or resume a scope. HALTED cancels every working order in the scope at
        the broker; only an explicit ACTIVE (resume) clears a halt.

        Changes are recorded one at a time, store then memory, so memory ends in the order the
        store has. ``escalate_only`` (the drawdown gate's changes) records the change only if
        it is more restrictive than the scope's state: a drawdown REDUCING decided before an
        operator's HALT landed must not replace it, and many orders breaching at once make
        one change, not one each. The reply's context says whether it was ``applied``.
        """
        now = self.clock.now()
        change = make_change(command.scope, command.scope_id, command.state, command.actor,
                             command.reason, now)
        async with self._state_lock:
            current = self.states.get(command.scope, command.scope_id)
            applied = not escalate_only or (
                restrictiveness(command.state) > restrictiveness(current))
            if applied:
                applied = await self.store.set_trading_state(
                    change, [OutboxItem("mts.v1.oms.state.changed", change, new_event_id())],
                    escalate_only=escalate_only)
            if applied:
                self.apply_state_change(change)
        if not applied:
            return CommandReply(ok=True, ts=now, context={"state": current.value,
                                                          "applied": False, "canceled": 0})
        self._notify()
        if self.fanout is not None:
            try:
                await self.fanout.put(change)
            except Exception as exc:  # PostgreSQL holds it; other instances reload at start
                _log.error("kill-switch fan-out failed", error=repr(exc))
        _log.warning("trading state changed", scope=change.scope, scope_id=change.scope_id,
                     state=change.state.value, actor=change.actor, reason=change.reason)
        canceled = await self.enforce_state(change)
        return CommandReply(ok=True, ts=now, context={"state": command.state.value,
                                                      "applied": True, "canceled": canceled})

    async def enforce_state(self, change: TradingStateChange) -> int:
        """Cancel the working orders a new state forbids; return how many were canceled.

        HALTED: every working order of the scope. REDUCING: every working order that would
        take a position further from zero, i.e. those the TRADING_STATE_REDUCING gate would refuse
        now (on the reducing side the oldest orders are kept while together they still only
        reduce). Called for this instance's own changes and for those seen on the fan-out.
        """
        reason = f"{change.state.value.lower()}: {change.reason}"
        if change.state is TradingState.HALTED:
            return await self.cancel_all(change.scope, change.scope_id, reason=reason)
        if change.state is not TradingState.REDUCING:
            return 0
        n = 0
        for st in self._risk_increasing(await self._open_in_scope(change.scope,
                                                                  change.scope_id)):
            n += (await self.cancel(st.order_id, reason)).ok
        return n

    def _risk_increasing(self, orders: Sequence[OrderState]) -> list[OrderState]:
        """The orders among ``orders`` that a REDUCING scope must not keep working."""
        out: list[OrderState] = []
        groups: dict[tuple[str, str, Side], list[OrderState]] = defaultdict(list)
        for st in orders:
            o = st.order
            groups[(o.fund_id, o.instrument.symbol, o.side)].append(st)
        for (fund_id, symbol, side), group in groups.items():
            pos = self._books[fund_id].positions.get(symbol, ZERO)
            room = pos if side is Side.SELL else -pos  # how much this side may still reduce
            for st in sorted(group, key=lambda x: x.order_id):  # order ids grow with time
                if st.leaves_quantity <= room:
                    room -= st.leaves_quantity
                else:
                    out.append(st)
                    room = ZERO  # nothing after an increasing order may stay either
        return out

    async def _open_in_scope(self, scope: str, scope_id: str) -> list[OrderState]:
        """Open orders of a scope among this instance's funds, read from the store (so orders
        another process wrote for these funds count too). Other funds' orders are left to
        their own instance, which sees the same change on the fan-out: only it holds their
        broker."""
        orders = await self.store.open_orders(scope_id if scope == "fund" else None)
        return [st for st in orders if st.order.fund_id in self.funds
                and (scope != "strategy" or st.order.strategy_id == scope_id)]

    async def halt(self, scope: str = "global", scope_id: str = "*", *, actor: str = "operator",
                   reason: str = "halt") -> CommandReply:
        """Kill switch: stop new orders in the scope and cancel its working orders."""
        return await self.set_trading_state(make_command(scope, scope_id, TradingState.HALTED,
                                                         actor, reason))

    async def resume(self, scope: str = "global", scope_id: str = "*", *,
                     actor: str = "operator", reason: str = "resume") -> CommandReply:
        """The only way out of a halt: set the scope ACTIVE again."""
        return await self.set_trading_state(make_command(scope, scope_id, TradingState.ACTIVE,
                                                         actor, reason))

    def apply_state_change(self, change: TradingStateChange) -> None:
        """Take a change seen on the fan-out (another instance's halt) into this instance."""
        self.states.set(change.scope, change.scope_id, change.state)

    async def cancel_all(self, scope: str = "global", scope_id: str = "*", *,
                         reason: str = "cancel all") -> int:
        """Cancel every open order in the scope (read from the store: all instances' orders)."""
        n = 0
        for st in await self._open_in_scope(scope, scope_id):
            n += (await self.cancel(st.order_id, reason)).ok
        return n

    # --- positions ------------------------------------------------------------------------------

    def positions(self, fund_id: str) -> dict[str, Decimal]:
        """Net quantity per symbol across the fund's strategies."""
        return {s: q for s, q in self._books[fund_id].positions.items() if q != 0}

    def position_states(self, fund_id: str) -> dict[tuple[str, str], PositionState]:
        return {(st, sym): p for (f, st, sym), p in self._pos.items() if f == fund_id}

    async def reconcile(self, fund_id: str) -> list[Mismatch]:
        """Compare the fund's positions with the broker's; report mismatches as alerts."""
        fund = self.funds[fund_id]
        theirs: dict[str, Decimal] = defaultdict(lambda: ZERO)
        for p in await self.broker.positions(fund.broker_account_id):
            theirs[p.symbol] += p.quantity
        mismatches = reconcile(self.positions(fund_id), {k: v for k, v in theirs.items() if v})
        for m in mismatches:
            await self._alert(f"position mismatch {fund_id} {m.symbol}: oms {m.oms_quantity} "
                              f"broker {m.broker_quantity}", fund_id=fund_id, symbol=m.symbol,
                              oms=str(m.oms_quantity), broker=str(m.broker_quantity))
        return mismatches

    # --- helpers --------------------------------------------------------------------------------

    async def _load(self, order_id: str) -> OrderState | None:
        cached = self._open.get(order_id)
        if cached is not None:
            return cached
        return await self.store.load_order(order_id)

    def _reserve(self, state: OrderState, sign: int) -> None:
        """Add (+1) or remove (-1) a not-yet-committed order's quantity to the fund's open
        leaves, which the gates read; nothing else (it is not an open order yet)."""
        o = state.order
        book = self._books[o.fund_id]
        self._memory[o.fund_id].exposure = None
        side = book.open_buy if o.side is Side.BUY else book.open_sell
        sym = o.instrument.symbol
        side[sym] = side.get(sym, ZERO) + sign * state.leaves_quantity
        if side[sym] == 0:
            del side[sym]

    def _track(self, before: OrderState | None, after: OrderState) -> None:
        """Keep the open-order cache and the fund's open leaves in step with a change."""
        o = after.order
        book = self._books[o.fund_id]
        self._memory[o.fund_id].exposure = None
        sym = o.instrument.symbol
        side = book.open_buy if o.side is Side.BUY else book.open_sell
        if before is not None and before.order_id in self._open:
            side[sym] = side.get(sym, ZERO) - self._open[before.order_id].leaves_quantity
        if after.is_open:
            self._open[after.order_id] = after
            side[sym] = side.get(sym, ZERO) + after.leaves_quantity
        else:
            self._open.pop(after.order_id, None)
        if side.get(sym) == 0:
            side.pop(sym, None)

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


def _is_repeat(state: OrderState, event: OrderEventType) -> bool:
    """A repeated acknowledgement or terminal report changes nothing and is not an error."""
    if event is E.ACCEPTED and state.status in {S.ACCEPTED, S.PARTIALLY_FILLED, S.FILLED}:
        return True
    return _SAME.get(event) is not None and state.status is _SAME[event]


def _fail(code: ReplyCode, message: str, now: dt.datetime) -> CommandReply:
    return CommandReply(ok=False, code=code, message=message, ts=now)
