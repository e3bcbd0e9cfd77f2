"""``IbkrBroker``: ``BrokerProtocol`` on Interactive Brokers through ``ib_async`` 2.1.0.

What it does, and why:

- **Ready only after nextValidId and managedAccounts** (ib_async's ``connectAsync`` waits for
  both); then it reconciles (below) before it says CONNECTED.
- **Our ``order_id`` travels in ``orderRef``**; the IB order id (an integer from nextValidId)
  is recorded in an :class:`~mts1b_brokers.ibkr.store.OrderStore` *before* ``placeOrder``.
- **Raw messages, not ib_async's bookkeeping**: the adapter reads orderStatus, error,
  execDetails and commissionReport as TWS sent them (it wraps the decoder's handlers), so
  ib_async's own conclusions (error 10349 shown as Cancelled, ib_async #191) do not mislead it.
- **Fills from execDetails + commissionReport**, deduplicated by execId; a correction (execId
  differing after its last period) replaces the fill it corrects, and goes to
  :meth:`IbkrBroker.corrections` as a foundation ``Fill`` (``OMS.correct`` takes it). A fill
  report is sent once its commission report came, or after ``commission_wait`` seconds
  without it (commission 0).
- **Errors** map to ``BrokerRejected`` (the venue refused; ``context["venue_code"]`` and
  ``context["venue_message"]`` hold IB's code and words), ``BrokerTransportError`` (not
  connected: nothing sent) and ``BrokerUnknownOutcome`` (sent, no answer before
  ``request_timeout`` or the connection dropped). An unknown outcome is never re-sent by the
  adapter: :meth:`order_status` and a repeated :meth:`submit` reconcile first, and place the
  order again only when IB's open orders, completed orders and executions all lack it.
- **Reconnect**: after a drop it retries with exponential backoff (``reconnect_initial`` to
  ``reconnect_max`` seconds), logs a warning (and calls ``on_alert``) on the drop and on
  every failed attempt, and re-synchronises open orders, completed orders and executions.
  A gateway that goes silent without closing the socket (IB's daily reset) is found by a
  heartbeat: ``reqCurrentTime`` every ``heartbeat_interval`` seconds, and no answer within
  ``heartbeat_timeout`` counts as a drop.
- **Pacing**: ib_async's client throttles to ``max_requests_per_second`` (45; IB's cap is 50).
- **Live bars**: :meth:`IbkrBroker.stream_bars` subscribes to IB's 5-second real-time bars and
  yields foundation ``Bar`` s of the wanted interval (:mod:`mts1b_brokers.ibkr.bars`); the
  subscriptions are renewed after a reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ib_async import IB, StartupFetch
from ib_async import Order as IbOrder
from mts1b_foundation import (
    AccountSnapshot,
    Bar,
    BrokerRejected,
    BrokerTransportError,
    BrokerUnknownOutcome,
    ConnectionState,
    Equity,
    ExecType,
    ExecutionReport,
    Fill,
    Instrument,
    Order,
    Position,
    ReplyCode,
    Side,
)
from mts1b_foundation.plugins import Capabilities

from mts1b_brokers.ibkr.bars import BarAggregator
from mts1b_brokers.ibkr.ledger import Execution, Tracked, trade_id_of
from mts1b_brokers.ibkr.mapping import (
    CAPABILITIES,
    INFO_CODES,
    TRANSPORT_CODES,
    UnsupportedOrder,
    ib_order,
    order_contract,
    stack_code,
    to_contract,
)
from mts1b_brokers.ibkr.store import JsonFileOrderStore, MemoryOrderStore, OrderRecord, OrderStore
from mts1b_brokers.paper import ReportStream
from mts1b_brokers.streams import Subscription

__all__ = ["IbkrBroker"]

log = logging.getLogger("mts1b_brokers.ibkr")

_CANCELED = frozenset({"Cancelled", "ApiCancelled"})


_FillStream = Subscription[Fill]
"""A subscriber's queue of corrected fills (see :meth:`IbkrBroker.corrections`)."""


@dataclass
class _BarSub:
    """One symbol's live-bar subscription of one :meth:`IbkrBroker.stream_bars` call."""

    instrument: Instrument
    aggregator: BarAggregator
    queue: asyncio.Queue[Bar]
    req_id: int = 0
    bars: Any = field(default=None)


class IbkrBroker:
    """Interactive Brokers through TWS / IB Gateway (see the module docstring).

    ``store``: an :class:`OrderStore`, or a path for a :class:`JsonFileOrderStore`; default
    in memory (then a restarted process cannot find orders it sent: pass a path in
    production). ``account``: the IB account code orders go to when ``Order.account_id`` is
    empty (default: the only managed account).
    """

    capabilities: ClassVar[Capabilities] = CAPABILITIES
    """Every order type and time in force, equities, ETFs, options, futures and FX; streaming
    execution reports; replace (see :data:`~mts1b_brokers.ibkr.mapping.CAPABILITIES`)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 7497, client_id: int = 1,
                 account: str | None = None, name: str = "ibkr",
                 store: OrderStore | str | None = None, request_timeout: float = 5.0,
                 connect_timeout: float = 5.0, reconnect_initial: float = 0.2,
                 reconnect_max: float = 30.0, commission_wait: float = 2.0,
                 max_requests_per_second: int = 45, heartbeat_interval: float = 30.0,
                 heartbeat_timeout: float = 10.0,
                 on_alert: Callable[[str], None] | None = None) -> None:
        self._host, self._port, self._client_id = host, int(port), int(client_id)
        self._account = account
        self._name = name
        self._store: OrderStore = (JsonFileOrderStore(store) if isinstance(store, str)
                                   else store if store is not None else MemoryOrderStore())
        self._timeout = request_timeout
        self._connect_timeout = connect_timeout
        self._backoff = (reconnect_initial, reconnect_max)
        self._commission_wait = commission_wait
        self._rate = max_requests_per_second
        self._heartbeat = (heartbeat_interval, heartbeat_timeout)
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._on_alert = on_alert
        self._ib: IB | None = None
        self._state = ConnectionState.DISCONNECTED
        self._closing = False
        self._reconnect_task: asyncio.Task[None] | None = None
        self._orders: dict[str, Tracked] = {}
        self._by_ib_id: dict[int, str] = {}
        self._waiters: dict[tuple[str, str], asyncio.Future[ExecutionReport]] = {}
        self._pending_commission: dict[str, asyncio.TimerHandle] = {}
        self._outcomes: dict[str, str] = {}
        self._awaiting: dict[str, Tracked] = {}
        """execId -> the order whose fill waits for that execution's commission report."""
        self._subscribers: set[ReportStream] = set()
        self._correction_subscribers: set[_FillStream] = set()
        self._accounts: list[str] = []
        self._bar_subs: dict[int, _BarSub] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._unrecorded: dict[str, ExecutionReport] = {}
        """orderRef -> what IB has of an order of ours the store does not know."""
        self._symbols: dict[int, str] = {}
        """IB conId -> our instrument symbol, learned from our orders' openOrder and
        execDetails (an option's IB symbol is its underlying's)."""
        self._load_store()

    # ----------------------------------------------------------------- protocol
    @property
    def name(self) -> str:
        return self._name

    @property
    def connection_state(self) -> ConnectionState:
        return self._state

    def execution_reports(self) -> AsyncIterator[ExecutionReport]:
        """A new subscription to every report from now on."""
        return ReportStream(self._subscribers)

    def corrections(self) -> AsyncIterator[Fill]:
        """A new subscription to corrected fills (same ``trade_id``, new quantity/price)."""
        return _FillStream(self._correction_subscribers)

    async def connect(self) -> None:
        self._closing = False
        self._state = ConnectionState.CONNECTING
        try:
            await self._open()
        except BrokerTransportError:
            self._state = ConnectionState.DISCONNECTED
            raise
        self._state = ConnectionState.CONNECTED

    async def close(self) -> None:
        self._closing = True
        self._stop_heartbeat()
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnect_task
            self._reconnect_task = None
        if self._ib is not None:
            self._ib.disconnect()
            self._ib = None
        self._fail_waiters()
        self._state = ConnectionState.DISCONNECTED

    async def __aenter__(self) -> IbkrBroker:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---------------------------------------------------------------- connection
    async def _open(self) -> None:
        ib = IB()
        ib.client.MaxRequests = self._rate
        ib.client.RequestsInterval = 1
        self._hook(ib)
        try:
            await ib.connectAsync(self._host, self._port, clientId=self._client_id,
                                  timeout=self._connect_timeout, account=self._account or "",
                                  fetchFields=StartupFetch.POSITIONS)
        except (OSError, TimeoutError, ConnectionError) as exc:
            ib.disconnect()
            raise BrokerTransportError(
                f"cannot connect to TWS/IB Gateway at {self._host}:{self._port} "
                f"(client id {self._client_id}): {type(exc).__name__}",
                broker=self._name) from None
        self._ib = ib
        self._accounts = list(ib.managedAccounts())
        used = [i for oid, i in ((t.order_id, t.ib_order_id) for t in self._orders.values())
                if oid]
        if used and ib.client._reqIdSeq <= max(used):
            # never reuse an id of ours: a placeOrder with it would modify that order
            ib.client.updateReqId(max(used) + 1)  # type: ignore[no-untyped-call]
        try:
            await self._reconcile()
        except BrokerTransportError:
            self._ib = None
            ib.disconnect()
            raise
        ib.disconnectedEvent += self._on_disconnected
        for sub in list(self._bar_subs.values()):  # renew live bars after a reconnect
            self._request_bars(ib, sub)
        self._stop_heartbeat()
        self._heartbeat_task = asyncio.get_running_loop().create_task(self._beat(ib))

    def _stop_heartbeat(self) -> None:
        task, self._heartbeat_task = self._heartbeat_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _beat(self, ib: IB) -> None:
        """Ask TWS the time now and then; silence means the link is dead even if the socket
        looks open (the daily reset can drop a session without a FIN)."""
        interval, timeout = self._heartbeat
        while ib is self._ib and ib.isConnected():
            await asyncio.sleep(interval)
            if ib is not self._ib:
                return
            try:
                await asyncio.wait_for(ib.reqCurrentTimeAsync(), timeout)
            except (TimeoutError, ConnectionError):
                self._alert(f"{self._name}: TWS/IB Gateway did not answer a heartbeat within "
                            f"{timeout}s; dropping the connection")
                ib.disconnect()  # -> _on_disconnected -> reconnect
                return

    def _hook(self, ib: IB) -> None:
        """Read orderStatus, error, execDetails and commissionReport as TWS sent them."""
        decoder = ib.client.decoder
        for msg_id, mine in ((3, self._raw_order_status), (4, self._raw_error),
                             (11, self._raw_exec), (59, self._raw_commission),
                             (50, self._raw_bar)):
            original = decoder.handlers[msg_id]

            def handler(fields: list[str], original: Any = original,
                        mine: Callable[[list[str]], None] = mine) -> None:
                original(fields)
                try:
                    mine(fields)
                except Exception:  # one bad message must not stop the reader
                    log.exception("ibkr: could not apply message %s", fields[:3])

            decoder.handlers[msg_id] = handler
        ib.openOrderEvent += self._on_open_order

    def _on_disconnected(self) -> None:
        if self._closing or self._state is ConnectionState.RECONNECTING:
            return
        self._state = ConnectionState.RECONNECTING
        self._ib = None
        self._stop_heartbeat()
        self._alert(f"{self._name}: disconnected from TWS/IB Gateway at "
                    f"{self._host}:{self._port}; reconnecting")
        self._fail_waiters()
        self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay, ceiling = self._backoff
        attempt = 0
        while not self._closing:
            await asyncio.sleep(delay)
            attempt += 1
            try:
                await self._open()
            except (BrokerTransportError, BrokerUnknownOutcome) as exc:
                self._alert(f"{self._name}: reconnect attempt {attempt} failed ({exc}); "
                            f"next in {min(delay * 2, ceiling):.1f}s")
                if self._ib is not None:
                    self._ib.disconnect()
                    self._ib = None
                delay = min(delay * 2, ceiling)
                continue
            self._state = ConnectionState.CONNECTED
            log.warning("%s: reconnected after %d attempt(s) and re-synchronised",
                        self._name, attempt)
            return

    def _alert(self, text: str) -> None:
        log.warning(text)
        if self._on_alert is not None:
            self._on_alert(text)

    def _fail_waiters(self) -> None:
        for (kind, oid), fut in list(self._waiters.items()):
            if not fut.done():
                fut.set_exception(BrokerUnknownOutcome(
                    f"{self._name}: the connection dropped before IB answered the {kind} of "
                    f"{oid}; order_status({oid!r}) tells what IB has", broker=self._name,
                    order_id=oid, call=kind))
        self._waiters.clear()

    def _require(self, call: str) -> IB:
        ib = self._ib
        if self._state is not ConnectionState.CONNECTED or ib is None or not ib.isConnected():
            raise BrokerTransportError(f"{self._name} is {self._state.value}: {call} not sent",
                                       broker=self._name, call=call)
        return ib

    async def _link(self, call: str) -> IB:
        """For a query: while reconnecting, wait up to ``request_timeout`` for the link to
        come back (a question changes nothing at IB, so waiting is safe; an order is never
        held back this way - it fails at once with ``BrokerTransportError``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        while self._state is ConnectionState.RECONNECTING and loop.time() < deadline:
            await asyncio.sleep(0.02)
        return self._require(call)

    # ------------------------------------------------------------------ commands
    async def submit(self, order: Order) -> ExecutionReport:
        ib = self._require("submit")
        oid = order.order_id
        if not oid:
            raise BrokerRejected(f"{ReplyCode.INVALID_ORDER}: order_id (the client order id) "
                                 "is required", broker=self._name, field="order_id",
                                 reason_code=str(ReplyCode.INVALID_ORDER))
        if oid not in self._orders and oid in self._unrecorded:
            return self._unrecorded[oid].model_copy(update={
                "exec_type": ExecType.ACK, "trade_id": None, "last_quantity": None,
                "last_price": None})
        known = self._orders.get(oid)
        if known is not None and not await self._absent(known):
            if known.rejected is not None:
                raise self._rejection(known.rejected)
            if known.acked:
                return known.report(ExecType.ACK)
            raise BrokerUnknownOutcome(f"{self._name}: {oid} was sent and IB has not answered "
                                       "yet; not sent again", broker=self._name, order_id=oid)
        account = order.account_id or self._account or (
            self._accounts[0] if len(self._accounts) == 1 else "")
        ib_id = ib.client.getReqId()
        tracked = Tracked(order=order, account=account, ib_order_id=ib_id, broker=self._name)
        try:
            contract = order_contract(order)
            wire = ib_order(order, account, ib_id)
        except UnsupportedOrder as exc:
            report = tracked.report(ExecType.REJECT, reason=f"UNSUPPORTED: {exc}",
                                    code=ReplyCode.UNSUPPORTED)
            tracked.rejected = report
            self._track(tracked, "rejected")
            self._emit(tracked, report)
            raise self._rejection(report) from None
        self._track(tracked, "sending")  # durable before the order leaves
        waiter = self._wait("submit", oid)
        try:
            ib.placeOrder(contract, wire)
        except ConnectionError:
            self._waiters.pop(("submit", oid), None)
            self._track(tracked, "unsent")
            raise BrokerTransportError(f"{self._name}: not connected, {oid} not sent",
                                       broker=self._name, order_id=oid) from None
        return await self._answer(waiter, "submit", oid)

    async def cancel(self, order_id: str) -> ExecutionReport:
        ib = self._require("cancel")
        tracked = self._known(order_id)
        if tracked.done:
            why = "filled" if not (tracked.canceled or tracked.rejected) else "already ended"
            return tracked.report(ExecType.CANCEL_REJECT, code=ReplyCode.CANCEL_REJECTED,
                                  reason=f"CANCEL_REJECTED: {order_id} is {why}")
        waiter = self._wait("cancel", order_id)
        try:
            ib.cancelOrder(IbOrder(orderId=tracked.ib_order_id, clientId=self._client_id,
                                   permId=tracked.perm_id))
        except ConnectionError:
            self._waiters.pop(("cancel", order_id), None)
            raise BrokerTransportError(f"{self._name}: not connected, cancel not sent",
                                       broker=self._name, order_id=order_id) from None
        return await self._answer(waiter, "cancel", order_id)

    async def replace(self, order_id: str, *, quantity: Decimal | None = None,
                      limit_price: Decimal | None = None,
                      stop_price: Decimal | None = None) -> ExecutionReport:
        ib = self._require("replace")
        tracked = self._known(order_id)
        if tracked.done:
            return tracked.report(ExecType.REPLACE_REJECT, code=ReplyCode.ORDER_NOT_OPEN,
                                  reason=f"ORDER_NOT_OPEN: {order_id} has ended")
        changes: dict[str, Decimal] = {}
        if quantity is not None:
            changes["quantity"] = quantity
        if limit_price is not None:
            changes["limit_price"] = limit_price
        if stop_price is not None:
            changes["stop_price"] = stop_price
        new = tracked.order.model_copy(update=changes)
        waiter = self._wait("replace", order_id)
        tracked.pending = new
        try:
            ib.placeOrder(order_contract(new),
                          ib_order(new, tracked.account, tracked.ib_order_id))
        except ConnectionError:
            self._waiters.pop(("replace", order_id), None)
            raise BrokerTransportError(f"{self._name}: not connected, replace not sent",
                                       broker=self._name, order_id=order_id) from None
        return await self._answer(waiter, "replace", order_id)

    async def order_status(self, client_order_id: str) -> ExecutionReport | None:
        tracked = self._orders.get(client_order_id)
        if tracked is None:
            # every order is recorded before it is sent; what IB holds under an orderRef
            # the store lost was read at the last (re)connect
            return self._unrecorded.get(client_order_id)
        if tracked.acked or tracked.rejected is not None or tracked.done:
            return tracked.last or tracked.report(ExecType.ACK)
        await self._link("order_status")
        if await self._absent(tracked):
            return None
        return tracked.last or tracked.report(ExecType.ACK)

    async def open_orders(self, account_id: str | None = None) -> list[Order]:
        ib = await self._link("open_orders")
        trades = await self._request(ib.reqOpenOrdersAsync(), "open_orders")
        out: list[Order] = []
        for trade in trades:
            tracked = self._orders.get(trade.order.orderRef)
            if tracked is None or tracked.done:
                continue
            if account_id is not None and tracked.account != account_id:
                continue
            out.append(tracked.order)
        return out

    async def positions(self, account_id: str) -> list[Position]:
        ib = await self._link("positions")
        now = dt.datetime.now(dt.UTC)
        rows = await self._request(ib.reqPositionsAsync(), "positions")
        return [Position(fund_id=account_id, symbol=self._symbol_of(p.contract),
                         quantity=_dec(p.position), avg_cost=_dec(p.avgCost), as_of=now)
                for p in rows if p.account == account_id and p.position]

    def _symbol_of(self, contract: Any) -> str:
        """Our symbol for an IB contract: the one our orders on it carry, else the stock's
        symbol, a pair's ``EURUSD``, or IB's local symbol (options, futures)."""
        known = self._symbols.get(contract.conId)
        if known is not None:
            return known
        if contract.secType == "CASH":
            return f"{contract.symbol}{contract.currency}"
        if contract.secType == "STK":
            return str(contract.symbol)
        return str(contract.localSymbol or contract.symbol)

    async def account(self, account_id: str) -> AccountSnapshot:
        ib = await self._link("account")
        values = await self._request(ib.accountSummaryAsync(account_id), "account")
        tags = {v.tag: v.value for v in values if v.account == account_id}
        if "NetLiquidation" not in tags:
            raise BrokerRejected(f"{ReplyCode.ACCOUNT_NOT_FOUND}: IB sent no summary for "
                                 f"account {account_id!r}", broker=self._name,
                                 account_id=account_id,
                                 reason_code=str(ReplyCode.ACCOUNT_NOT_FOUND))
        held = {p.symbol: p.quantity for p in await self.positions(account_id)}
        return AccountSnapshot(
            broker=self._name, account_id=account_id, cash=Decimal(tags["TotalCashValue"]),
            buying_power=Decimal(tags.get("BuyingPower", tags["TotalCashValue"])),
            equity=Decimal(tags["NetLiquidation"]), positions=held,
            as_of=dt.datetime.now(dt.UTC))

    # ------------------------------------------------------------------ live bars
    async def stream_bars(self, symbols: Sequence[str | Instrument],
                          interval: str = "1m") -> AsyncIterator[Bar]:
        """Live bars of ``interval`` for ``symbols`` (a plain symbol is a SMART US stock),
        built from IB's 5-second TRADES bars, until the caller stops iterating."""
        ib = self._require("stream_bars")
        queue: asyncio.Queue[Bar] = asyncio.Queue()
        subs = [_BarSub(inst, BarAggregator(inst.symbol, interval), queue)
                for inst in (Equity(symbol=s) if isinstance(s, str) else s for s in symbols)]
        for sub in subs:
            self._request_bars(ib, sub)
        try:
            while True:
                yield await queue.get()
        finally:
            for sub in subs:
                self._bar_subs.pop(sub.req_id, None)
                if self._ib is not None and self._ib.isConnected() and sub.bars is not None:
                    self._ib.cancelRealTimeBars(sub.bars)

    def _request_bars(self, ib: IB, sub: _BarSub) -> None:
        self._bar_subs.pop(sub.req_id, None)
        sub.bars = ib.reqRealTimeBars(to_contract(sub.instrument), 5, "TRADES", False)
        sub.req_id = sub.bars.reqId
        self._bar_subs[sub.req_id] = sub

    def _raw_bar(self, f: list[str]) -> None:
        sub = self._bar_subs.get(int(f[2]))
        if sub is None:
            return
        o, h, low, c, v, wap = (Decimal(x or 0) for x in f[4:10])
        for bar in sub.aggregator.add(int(f[3]), o, h, low, c, v, wap):
            sub.queue.put_nowait(bar)

    # ------------------------------------------------------------------- helpers
    def _load_store(self) -> None:
        for rec in self._store.all():
            order = Order.model_validate_json(rec.order_json)
            tracked = Tracked(order=order, account=rec.account, ib_order_id=rec.ib_order_id,
                              broker=self._name, perm_id=rec.perm_id,
                              acked=rec.state in ("acked", "done"))
            if rec.report_json:
                tracked.last = ExecutionReport.model_validate_json(rec.report_json)
                if tracked.last.exec_type is ExecType.REJECT:
                    tracked.rejected = tracked.last
            self._orders[rec.order_id] = tracked
            self._by_ib_id[rec.ib_order_id] = rec.order_id

    def _track(self, tracked: Tracked, state: str) -> None:
        self._orders[tracked.order_id] = tracked
        self._by_ib_id[tracked.ib_order_id] = tracked.order_id
        self._store.put(OrderRecord(
            order_id=tracked.order_id, ib_order_id=tracked.ib_order_id,
            account=tracked.account, order_json=tracked.order.model_dump_json(), state=state,
            perm_id=tracked.perm_id,
            report_json=tracked.last.model_dump_json() if tracked.last else ""))

    def _state_of(self, tracked: Tracked) -> str:
        if tracked.rejected is not None:
            return "rejected"
        return "done" if tracked.done else "acked" if tracked.acked else "sending"

    def _known(self, order_id: str) -> Tracked:
        tracked = self._orders.get(order_id)
        if tracked is None:
            raise BrokerRejected(f"{ReplyCode.ORDER_NOT_FOUND}: {self._name} has no order "
                                 f"{order_id!r}", broker=self._name, order_id=order_id,
                                 reason_code=str(ReplyCode.ORDER_NOT_FOUND))
        return tracked

    def _wait(self, kind: str, oid: str) -> asyncio.Future[ExecutionReport]:
        fut: asyncio.Future[ExecutionReport] = asyncio.get_running_loop().create_future()
        self._waiters[(kind, oid)] = fut
        return fut

    def _resolve(self, kind: str, oid: str, report: ExecutionReport | BaseException) -> None:
        fut = self._waiters.pop((kind, oid), None)
        if fut is None or fut.done():
            return
        if isinstance(report, BaseException):
            fut.set_exception(report)
        else:
            fut.set_result(report)

    async def _answer(self, fut: asyncio.Future[ExecutionReport], kind: str,
                      oid: str) -> ExecutionReport:
        try:
            return await asyncio.wait_for(asyncio.shield(fut), self._timeout)
        except TimeoutError:
            self._waiters.pop((kind, oid), None)
            raise BrokerUnknownOutcome(
                f"{self._name}: no answer from IB to the {kind} of {oid} within "
                f"{self._timeout}s; it may have reached IB - order_status({oid!r}) tells",
                broker=self._name, order_id=oid, call=kind) from None

    async def _request(self, awaitable: Any, call: str) -> Any:
        try:
            return await asyncio.wait_for(awaitable, self._timeout)
        except (TimeoutError, ConnectionError) as exc:
            raise BrokerTransportError(f"{self._name}: {call} got no answer from IB "
                                       f"({type(exc).__name__})", broker=self._name,
                                       call=call) from None

    def _rejection(self, report: ExecutionReport) -> BrokerRejected:
        return BrokerRejected(report.reason or "rejected by IB", broker=self._name,
                              order_id=report.order_id,
                              reason_code=str(report.code or ReplyCode.BROKER_REJECTED),
                              venue_code=report.venue_code, venue_message=report.venue_message,
                              report=report)

    def _emit(self, tracked: Tracked, report: ExecutionReport) -> None:
        if report.exec_type not in (ExecType.CANCEL_REJECT, ExecType.REPLACE_REJECT):
            tracked.last = report
        self._track(tracked, self._state_of(tracked))
        for sub in list(self._subscribers):
            sub.put(report)

    def _ack(self, tracked: Tracked) -> None:
        if tracked.acked or tracked.rejected is not None:
            return
        tracked.acked = True
        report = tracked.report(ExecType.ACK)
        self._emit(tracked, report)
        self._resolve("submit", tracked.order_id, report)

    async def _absent(self, tracked: Tracked) -> bool:
        """Whether IB provably never got ``tracked`` (only asked of an unanswered submit):
        after a reconciliation, neither its open nor its completed orders nor its
        executions carry its orderRef."""
        if tracked.acked or tracked.rejected is not None or tracked.done:
            return False
        rec = self._store.get(tracked.order_id)
        if rec is not None and rec.state == "unsent":
            return True
        if self._ib is None:
            raise BrokerTransportError(f"{self._name} cannot ask IB about {tracked.order_id} "
                                       "while disconnected", broker=self._name,
                                       order_id=tracked.order_id)
        await self._reconcile()
        return not (tracked.acked or tracked.fills or tracked.done)

    async def _reconcile(self) -> None:
        """Bring every recorded order up to date from IB: open orders (acks), completed
        orders (cancels), executions with commissions (fills, replayed through the same
        raw handlers, so each execId counts once)."""
        ib = self._ib
        if ib is None:
            return
        opened = await self._request(ib.reqOpenOrdersAsync(), "reconcile open orders")
        for trade in opened:
            self._on_open_order(trade)
        fills = await self._request(ib.reqExecutionsAsync(), "reconcile executions")
        done = await self._request(ib.reqCompletedOrdersAsync(False), "reconcile completed")
        self._note_unrecorded(opened, done, fills)
        for trade in done:
            tracked = self._orders.get(trade.order.orderRef)
            if tracked is None:
                continue
            if not tracked.acked and tracked.rejected is None:
                tracked.perm_id = trade.order.permId
                self._ack(tracked)
            if trade.orderStatus.status in _CANCELED and not tracked.done:
                self._canceled(tracked, None)

    def _note_unrecorded(self, opened: list[Any], done: list[Any], fills: list[Any]) -> None:
        """Remember what IB holds under an ``orderRef`` the store does not know (a store
        lost or not shared with an earlier process): ``order_status`` answers it and a
        repeated ``submit`` does not place it again."""
        last: dict[str, Any] = {}
        filled: dict[str, dict[str, Decimal]] = {}
        for f in fills:
            ref = f.execution.orderRef
            if ref and ref not in self._orders:
                filled.setdefault(ref, {})[trade_id_of(f.execution.execId)] = _dec(
                    f.execution.shares)
                last[ref] = f.execution
        now = dt.datetime.now(dt.UTC)
        for trade, ended in [(t, False) for t in opened] + [(t, True) for t in done]:
            ref = trade.order.orderRef
            if not ref or ref in self._orders:
                continue
            cum = sum(filled.get(ref, {}).values(), Decimal(0))
            total = _dec(trade.order.totalQuantity)
            status = trade.orderStatus.status
            extra: dict[str, Any] = {}
            exec_type = ExecType.ACK
            if ended and status in _CANCELED:
                exec_type = ExecType.CANCELED
            elif ended and ref in last and cum >= total:
                ex = last[ref]
                exec_type = ExecType.FILL
                extra = {"trade_id": trade_id_of(ex.execId), "last_quantity": _dec(ex.shares),
                         "last_price": _dec(ex.price)}
            self._unrecorded[ref] = ExecutionReport(
                broker=self._name, account_id=trade.order.account or "unknown",
                order_id=ref, broker_order_id=str(trade.order.permId or trade.order.orderId),
                exec_type=exec_type, ts=now, symbol=self._symbol_of(trade.contract),
                side=Side.BUY if trade.order.action == "BUY" else Side.SELL,
                cumulative_quantity=cum,
                leaves_quantity=max(total - cum, Decimal(0)) if exec_type is ExecType.ACK
                else Decimal(0), **extra)
            log.warning("%s: IB holds order %s, which the order store does not know",
                        self._name, ref)

    def _resync_soon(self, *, renew_bars: bool) -> None:
        ib = self._ib

        async def resync() -> None:
            if ib is None or ib is not self._ib:
                return
            try:
                await self._reconcile()
            except BrokerTransportError as exc:
                self._alert(f"{self._name}: re-synchronisation after TWS's reconnect to IB "
                            f"failed ({exc})")
                return
            if renew_bars:
                for sub in list(self._bar_subs.values()):
                    self._request_bars(ib, sub)

        task = asyncio.get_running_loop().create_task(resync())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ----------------------------------------------------------- raw messages
    def _tracked_by_ib(self, ib_id: int, order_ref: str = "") -> Tracked | None:
        oid = order_ref or self._by_ib_id.get(ib_id, "")
        return self._orders.get(oid)

    def _on_open_order(self, trade: Any) -> None:
        tracked = self._tracked_by_ib(trade.order.orderId, trade.order.orderRef)
        if tracked is None:
            return
        tracked.perm_id = trade.order.permId or tracked.perm_id
        if trade.contract.conId:
            self._symbols[trade.contract.conId] = tracked.order.instrument.symbol
        if trade.order.orderId and trade.order.orderId != tracked.ib_order_id:
            tracked.ib_order_id = trade.order.orderId
        self._ack(tracked)
        pending = tracked.pending
        if pending is not None and ("replace", tracked.order_id) in self._waiters:
            qty = _dec(trade.order.totalQuantity)
            limit = trade.order.lmtPrice
            if qty == pending.quantity and (pending.limit_price is None
                                            or _dec(limit) == pending.limit_price):
                tracked.order = pending
                tracked.pending = None
                report = tracked.report(ExecType.REPLACED)
                self._emit(tracked, report)
                self._resolve("replace", tracked.order_id, report)

    def _raw_order_status(self, f: list[str]) -> None:
        tracked = self._tracked_by_ib(int(f[1]))
        if tracked is None:
            return
        status = f[2]
        if f[6] and f[6] != "0":
            tracked.perm_id = int(f[6])
        if status in ("PreSubmitted", "Submitted", "Filled"):
            self._ack(tracked)
        elif status in _CANCELED and not tracked.done:
            self._canceled(tracked, None)

    def _canceled(self, tracked: Tracked, code: int | None) -> None:
        self._ack(tracked)
        tracked.canceled = True
        report = tracked.report(ExecType.CANCELED, venue_code=code,
                                venue_message="Order Canceled" if code else None)
        self._emit(tracked, report)
        self._resolve("cancel", tracked.order_id, report)

    def _raw_error(self, f: list[str]) -> None:
        req_id, code, text = int(f[2]), int(f[3]), f[4]
        if req_id == -1 or code in INFO_CODES or 2100 <= code < 2200:
            if code in (1100, 2110):
                self._alert(f"{self._name}: TWS lost its connection to IB ({code}: {text})")
            elif code in (1101, 1102) and self._ib is not None:
                # IB's link is back: catch up on what happened meanwhile (1101: TWS also
                # lost its market data subscriptions)
                log.warning("%s: TWS reconnected to IB (%s); re-synchronising", self._name,
                            code)
                self._resync_soon(renew_bars=code == 1101)
            elif code == 100:
                self._alert(f"{self._name}: IB pacing violation ({text})")
            return
        tracked = self._tracked_by_ib(req_id)
        if tracked is None:
            return
        oid = tracked.order_id
        reason = f"{code}: {text}"
        if code == 202:
            if not tracked.done:
                self._canceled(tracked, code)
            return
        if ("cancel", oid) in self._waiters:
            report = tracked.report(ExecType.CANCEL_REJECT, reason=reason,
                                    code=ReplyCode.CANCEL_REJECTED, venue_code=code,
                                    venue_message=text)
            self._resolve("cancel", oid, report)
            return
        if ("replace", oid) in self._waiters:
            tracked.pending = None
            report = tracked.report(ExecType.REPLACE_REJECT, reason=reason,
                                    code=stack_code(code), venue_code=code, venue_message=text)
            self._resolve("replace", oid, report)
            return
        if code in TRANSPORT_CODES:
            self._resolve("submit", oid, BrokerTransportError(
                f"{self._name}: {reason}", broker=self._name, order_id=oid,
                venue_code=str(code), venue_message=text))
            self._track(tracked, "unsent")
            return
        if not tracked.acked and tracked.rejected is None:
            report = tracked.report(ExecType.REJECT, reason=reason, code=stack_code(code),
                                    venue_code=code, venue_message=text)
            tracked.rejected = report
            self._emit(tracked, report)
            self._resolve("submit", oid, self._rejection(report))
            return
        log.info("%s: IB said %s about working order %s", self._name, reason, oid)

    def _raw_exec(self, f: list[str]) -> None:
        tracked = self._tracked_by_ib(int(f[2]), f[26])
        if tracked is None:
            return
        execution = Execution(exec_id=f[14], shares=Decimal(f[19]), price=Decimal(f[20]),
                              ts=_ib_time(f[15]))
        if f[21] and f[21] != "0":
            tracked.perm_id = int(f[21])
        if f[3] and f[3] != "0":
            self._symbols[int(f[3])] = tracked.order.instrument.symbol
        self._ack(tracked)
        outcome = tracked.add(execution)
        if outcome == "duplicate":
            return
        self._pending_commission[execution.exec_id] = asyncio.get_running_loop().call_later(
            self._commission_wait, self._fill_ready, tracked, execution.exec_id, outcome)
        self._outcomes[execution.exec_id] = outcome
        self._awaiting[execution.exec_id] = tracked

    def _raw_commission(self, f: list[str]) -> None:
        exec_id, commission = f[2], Decimal(f[3] or 0)
        handle = self._pending_commission.pop(exec_id, None)
        if handle is None:
            return  # a duplicate, or after the wait (the fill went out with commission 0)
        handle.cancel()
        tracked = self._awaiting.get(exec_id)
        if tracked is None:
            return
        for key, ex in tracked.fills.items():
            if ex.exec_id == exec_id:
                tracked.fills[key] = Execution(ex.exec_id, ex.shares, ex.price, ex.ts,
                                               commission)
                break
        self._fill_ready(tracked, exec_id, self._outcomes.get(exec_id, "new"))

    def _fill_ready(self, tracked: Tracked, exec_id: str, outcome: str) -> None:
        self._pending_commission.pop(exec_id, None)
        self._outcomes.pop(exec_id, None)
        self._awaiting.pop(exec_id, None)
        execution = next((e for e in tracked.fills.values() if e.exec_id == exec_id), None)
        if execution is None:
            return  # replaced by a correction before its commission came
        if outcome == "correction":
            report = tracked.report(
                ExecType.FILL if tracked.leaves == 0 else ExecType.PARTIAL_FILL,
                execution=execution)
            tracked.last = report
            self._track(tracked, self._state_of(tracked))
            fill = tracked.as_fill(execution)
            for sub in list(self._correction_subscribers):
                sub.put(fill)
            return
        tracked.reported.add(trade_id_of(exec_id))
        exec_type = ExecType.FILL if tracked.filled >= tracked.order.quantity else (
            ExecType.PARTIAL_FILL)
        self._emit(tracked, tracked.report(exec_type, execution=execution))


def _dec(value: float) -> Decimal:
    return Decimal(repr(float(value))) if value == value else Decimal(0)


def _ib_time(text: str) -> dt.datetime:
    """execDetails time, ``20240102 10:30:00 US/Eastern`` (TWS's zone) or ``... UTC``; a
    time without a zone is taken as UTC, one that cannot be read as now."""
    parts = text.replace("-", " ").split()
    try:
        zone: dt.tzinfo = ZoneInfo(parts[2]) if len(parts) > 2 else dt.UTC
        when = dt.datetime.strptime(" ".join(parts[:2]) + " +0000", "%Y%m%d %H:%M:%S %z")
    except (ValueError, IndexError, ZoneInfoNotFoundError):
        return dt.datetime.now(dt.UTC)
    return when.replace(tzinfo=zone).astimezone(dt.UTC)
