"""The paper broker: a deterministic simulated venue that implements ``BrokerProtocol``.

How it trades: orders are accepted (or rejected) at once, then trade only when market data
arrives - :meth:`PaperClient.on_bar` for OHLCV bars (from the datalake replay or any
``MarketDataProtocol`` provider, see :meth:`PaperClient.replay`) and :meth:`PaperClient.on_quote`
for top-of-book quotes. An order can trade on an event whose timestamp is strictly after the time
it was accepted plus the latency model's delay, so a strategy that decides on bar ``t`` trades
on bar ``t+1`` (no look-ahead).

Matching against a bar ``(open, high, low, close, volume)``:

========================  =====================================================================
market                    the bar's open, slipped
limit buy / sell          open if it is at or better than the limit, else the limit if the bar
                          reached it (``low <= limit`` / ``high >= limit``)
stop buy / sell           triggers when ``high >= stop`` / ``low <= stop``; fills at
                          ``max(open, stop)`` / ``min(open, stop)``, slipped
stop-limit                triggers like a stop, then trades as a limit (never beyond the limit)
market / limit on close   the close of a closing bar (a daily bar, or an intraday bar ending
                          when the calendar's session is no longer open); a limit-on-close
                          order whose limit the close does not meet expires
========================  =====================================================================

Quotes: buys trade at the ask, sells at the bid, up to the displayed size when it is non-zero.

Quantity per bar is limited by ``participation_rate * volume`` (rounded down to the lot size),
shared by all orders on the symbol in arrival order. Time in force: ``DAY`` expires after the
first closing bar the order could trade on (or when the trading date moves past the date of
the first event it saw), ``GTC`` stays, ``IOC`` fills what the first eligible event allows and
cancels the rest, ``FOK`` fills entirely on the first eligible event or is canceled,
``GTD`` expires once market time reaches ``expire_at``.

Every random choice (latency, slippage) comes from one ``random.Random(seed)``, so the same
seed, configuration and inputs give the same fills, prices, commissions and trade ids.

Reference price (buying power of a market order, marks of positions): the latest quote, else
the latest bar's close, else a mark set with :meth:`PaperClient.set_mark` (the OMS in the same
process passes the prices it is given, issue #20), else none (``NO_REFERENCE_PRICE``). Market
data always wins over a mark: a mark only stands in until the venue has seen the symbol trade.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation
from types import TracebackType
from typing import Any, ClassVar, Protocol, runtime_checkable

from mts1b_foundation import (
    AccountSnapshot,
    AssetClass,
    Bar,
    BrokerRejected,
    BrokerTransportError,
    Clock,
    ConnectionState,
    EventContract,
    ExecType,
    ExecutionReport,
    Future,
    Instrument,
    MarketDataProtocol,
    Option,
    Order,
    OrderStatus,
    OrderType,
    Position,
    Quote,
    Side,
    SystemClock,
    TimeInForce,
    deterministic_id,
    fit_to_domain,
)
from mts1b_foundation.plugins import Capabilities

from mts1b_brokers.errors import RejectReason, config_error
from mts1b_brokers.models import (
    CommissionModel,
    FixedLatency,
    LatencyModel,
    NoCommission,
    NoSlippage,
    SlippageModel,
)
from mts1b_brokers.streams import Subscription

__all__ = ["PaperClient", "ReportStream", "SessionCalendar", "status_of"]

_ZERO = Decimal(0)
_CENT = Decimal("0.01")
_LIMIT_TYPES = {OrderType.LIMIT, OrderType.STOP_LIMIT, OrderType.LIMIT_ON_CLOSE}
_STOP_TYPES = {OrderType.STOP, OrderType.STOP_LIMIT}
_CLOSE_TYPES = {OrderType.MARKET_ON_CLOSE, OrderType.LIMIT_ON_CLOSE}
_REQUEST_REPORTS = {ExecType.CANCEL_REJECT, ExecType.REPLACE_REJECT}
"""Reports about a refused cancel or replace request: they leave the order as it was."""
_STATE_VERSION = 1
"""Version of :meth:`PaperClient.snapshot`'s layout: a state of another version is refused."""


@runtime_checkable
class SessionCalendar(Protocol):
    """What the paper venue needs of a calendar (``mts1b_platform.calendars.MarketCalendar``)."""

    def is_open(self, ts: dt.datetime, session: Any = ...) -> bool: ...


def status_of(report: ExecutionReport) -> OrderStatus:
    """The order status an execution report leaves the order in (for replies and tests)."""
    return {
        ExecType.ACK: OrderStatus.ACCEPTED,
        ExecType.REJECT: OrderStatus.REJECTED,
        ExecType.PARTIAL_FILL: OrderStatus.PARTIALLY_FILLED,
        ExecType.FILL: OrderStatus.FILLED,
        ExecType.CANCELED: OrderStatus.CANCELED,
        ExecType.EXPIRED: OrderStatus.EXPIRED,
    }.get(report.exec_type, (
        OrderStatus.FILLED if report.leaves_quantity == 0 and report.cumulative_quantity > 0
        else OrderStatus.PARTIALLY_FILLED if report.cumulative_quantity > 0
        else OrderStatus.ACCEPTED
    ))


def _rng_state(rng: random.Random) -> list[Any]:
    """``rng.getstate()`` as JSON-ready data (the Mersenne Twister's 625 words and the
    cached Gaussian)."""
    version, words, gauss = rng.getstate()
    return [version, list(words), gauss]


def _rng_from(data: Sequence[Any]) -> tuple[Any, ...]:
    version, words, gauss = data
    return (int(version), tuple(int(w) for w in words), gauss)


def _dec(field: str, value: Decimal | int | str | float) -> Decimal:
    """``value`` as a finite Decimal (strings come from the CLI and registry configuration);
    anything else is a ``BrokerConfigError`` naming ``field``."""
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        raise config_error(field, value, "be a decimal number") from None
    if not number.is_finite():
        raise config_error(field, value, "be finite")
    return number


ReportStream = Subscription[ExecutionReport]
"""One subscriber's view of the execution reports, from the moment it was created."""


@dataclass
class _Holding:
    quantity: Decimal = _ZERO
    avg_cost: Decimal = _ZERO
    realized_pnl: Decimal = _ZERO
    strategy_id: str | None = None


@dataclass
class _Account:
    account_id: str
    fund_id: str
    cash: Decimal
    holdings: dict[str, _Holding] = field(default_factory=dict)


@dataclass
class _Working:
    order: Order
    order_id: str
    seq: int
    account_id: str
    broker_order_id: str
    accepted_at: dt.datetime
    eligible_at: dt.datetime
    reserve_qty: Decimal
    reserve_price: Decimal
    status: OrderStatus = OrderStatus.ACCEPTED
    filled: Decimal = _ZERO
    fills: int = 0
    triggered: bool = False
    first_day: dt.date | None = None
    ack: ExecutionReport | None = None

    @property
    def leaves(self) -> Decimal:
        return self.order.quantity - self.filled if not self.status.is_terminal else _ZERO

    @property
    def reserved(self) -> Decimal:
        return min(self.leaves, self.reserve_qty) * self.reserve_price


class _Reject(Exception):
    def __init__(self, code: RejectReason, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


class PaperClient:
    """A simulated broker venue with cash and positions per account (one account per fund).

    Parameters (all optional; strings are accepted for Decimals so that CLI and registry
    configuration can pass them through):

    - ``accounts``: starting cash per account id, e.g. ``{"core": "100000"}``. Orders go to
      ``order.account_id``, else to ``order.fund_id``. ``default_cash``, when set, opens an
      unknown account with that cash on its first order instead of rejecting it.
    - ``market_data``: a ``MarketDataProtocol`` provider: its symbols define the known
      instruments (unless ``instruments`` is given), its quotes serve as reference prices, and
      :meth:`replay` reads its bars.
    - ``instruments``: the tradable instruments; their tick and lot sizes are enforced.
    - ``calendar``: an object with ``is_open(ts, session)`` (``MarketCalendar``) or a calendar
      name such as ``"XNYS"``; without one every session is open.
    - ``participation_rate``: largest fraction of a bar's volume our orders may take
      (``None``: unlimited).
    - ``latency`` / ``slippage`` / ``commission``: cost models from :mod:`mts1b_brokers.models`.
    - ``leverage``: buying power is ``equity * leverage - gross exposure - open order needs``.
    - ``allow_short``: whether sells may open or grow a short position.
    - ``seed``: seeds the one random generator every model draws from.
    - ``clock`` / ``start``: the time before any market data arrives (afterwards, market time is
      the latest event's timestamp).
    """

    capabilities: ClassVar[Capabilities] = Capabilities(
        order_types=frozenset(OrderType),
        time_in_force=frozenset(TimeInForce) - {TimeInForce.OPG},
        asset_classes=frozenset(AssetClass), streaming=True, supports_replace=True)
    """Every order type; every time in force but OPG (refused as UNSUPPORTED; CLS only with a
    close order type, which the venue checks); any instrument; streamed execution reports;
    replace in place."""

    def __init__(
        self,
        *,
        name: str = "paper",
        accounts: Mapping[str, Decimal | int | str] | None = None,
        default_cash: Decimal | int | str | None = None,
        market_data: MarketDataProtocol | None = None,
        instruments: Iterable[Instrument] | None = None,
        calendar: SessionCalendar | str | None = None,
        participation_rate: Decimal | int | str | None = Decimal("0.1"),
        latency: LatencyModel | None = None,
        slippage: SlippageModel | None = None,
        commission: CommissionModel | None = None,
        leverage: Decimal | int | str = Decimal(1),
        allow_short: bool = True,
        seed: int = 0,
        clock: Clock | None = None,
        start: dt.datetime | None = None,
    ) -> None:
        self._name = name
        self._accounts: dict[str, _Account] = {}
        for account_id, cash in (accounts or {}).items():
            self.add_account(account_id, cash)
        self._default_cash = None if default_cash is None else _dec("default_cash", default_cash)
        self._market_data = market_data
        self._symbols: frozenset[str] | None = None  # the provider's symbols, read on demand
        self._instruments: dict[str, Instrument] | None = (
            None if instruments is None else {i.symbol: i for i in instruments}
        )
        if isinstance(calendar, str):
            from mts1b_platform.calendars import MarketCalendar

            calendar = MarketCalendar(calendar)
        self._calendar: SessionCalendar | None = calendar
        self._participation = (None if participation_rate is None
                               else _dec("participation_rate", participation_rate))
        if self._participation is not None and self._participation <= 0:
            raise config_error("participation_rate", participation_rate, "be > 0")
        self._latency = latency or FixedLatency()
        self._slippage = slippage or NoSlippage()
        self._commission = commission or NoCommission()
        self._leverage = _dec("leverage", leverage)
        if self._leverage <= 0:
            raise config_error("leverage", leverage, "be > 0")
        self._allow_short = allow_short
        self._rng = random.Random(seed)  # noqa: S311 - simulation, not cryptography
        self._clock = clock or SystemClock()
        self._market_time: dt.datetime | None = start
        self._state = ConnectionState.DISCONNECTED
        self._lock = asyncio.Lock()
        self._orders: dict[str, _Working] = {}
        self._open: dict[str, _Working] = {}  # orders not yet seen terminal (see _live)
        self._rejected: dict[str, BrokerRejected] = {}
        self._seq = 0
        self._halted: set[str] = set()
        self._last: dict[str, Decimal] = {}
        self._marks: dict[str, Decimal] = {}  # set_mark: used only without market data
        self._quotes: dict[str, Quote] = {}
        self._subscribers: set[ReportStream] = set()
        self._history: list[ExecutionReport] = []
        self._status: dict[str, ExecutionReport] = {}  # order_id -> its latest order report
        self._emitted = 0  # reports emitted over the venue's life (restored with its state)
        self._ended: list[str] = []  # orders ended or rejected since the last pop_ended()
        self._restored_status: dict[str, ExecutionReport] = {}  # restore()'s, while parsing
        # order_id -> (order, latest report, fields, record): see _cached_record
        self._records: dict[str, tuple[Order, ExecutionReport | None, tuple[Any, ...],
                                       dict[str, Any]]] = {}
        self._texts: dict[str, tuple[dict[str, Any], bytes]] = {}  # see snapshot_json

    # ----------------------------------------------------------------- BrokerProtocol surface
    @property
    def name(self) -> str:
        return self._name

    @property
    def connection_state(self) -> ConnectionState:
        return self._state

    async def connect(self) -> None:
        self._state = ConnectionState.CONNECTED

    async def close(self) -> None:
        self._state = ConnectionState.DISCONNECTED

    async def __aenter__(self) -> PaperClient:
        await self.connect()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def submit(self, order: Order) -> ExecutionReport:
        """Accept ``order`` (an ACK report) or raise ``BrokerRejected`` (a REJECT report is
        also emitted and attached as ``context["report"]``).

        Submitting an ``order_id`` again returns the original ACK (or raises the original
        rejection): it never creates a second order.
        """
        self._require_connected("submit")
        async with self._lock:
            return self._submit(order)

    async def cancel(self, order_id: str) -> ExecutionReport:
        """Cancel the rest of a working order (CANCELED, keeping what already filled).

        An order that already reached a final state gets a CANCEL_REJECT report (this is how a
        cancel that lost a race with the last fill is answered). An order id this venue never
        accepted raises ``BrokerRejected`` with ``ORDER_NOT_FOUND``.
        """
        self._require_connected("cancel")
        async with self._lock:
            w = self._working_or_raise(order_id)
            if w.status.is_terminal:
                return self._emit(self._report(
                    w, ExecType.CANCEL_REJECT,
                    reason=f"{RejectReason.ORDER_NOT_OPEN}: order is {w.status.value}",
                    code=RejectReason.ORDER_NOT_OPEN))
            w.status = OrderStatus.CANCELED
            return self._emit(self._report(w, ExecType.CANCELED, reason="canceled on request"))

    async def replace(
        self,
        order_id: str,
        *,
        quantity: Decimal | None = None,
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
    ) -> ExecutionReport:
        """Change quantity and/or prices of a working order, keeping its queue position.

        Refused with a REPLACE_REJECT report when the order is no longer working, the new
        quantity is not above what already filled, a price is off tick or not valid for the
        order type, or the change needs more buying power than the account has.
        """
        self._require_connected("replace")
        async with self._lock:
            w = self._working_or_raise(order_id)
            try:
                if w.status.is_terminal:
                    raise _Reject(RejectReason.ORDER_NOT_OPEN,
                                  f"order is {w.status.value}")
                new = self._replaced_terms(w, quantity, limit_price, stop_price)
                qty, price = self._reservation(self._account_for(w.order), new)
                extra = min(new.quantity - w.filled, qty) * price - w.reserved
                if extra > 0:
                    self._check_buying_power(self._accounts[w.account_id], extra, new)
            except _Reject as rej:
                return self._emit(self._report(w, ExecType.REPLACE_REJECT,
                                               reason=f"{rej.code}: {rej.text}", code=rej.code))
            w.order = new
            w.reserve_qty, w.reserve_price = qty, price
            return self._emit(self._report(w, ExecType.REPLACED, reason="replaced on request"))

    async def order_status(self, client_order_id: str) -> ExecutionReport | None:
        """The latest report of the order with our ``client_order_id``: its ACK while it works
        untouched, its last fill, or the CANCELED / EXPIRED / REJECT report it ended with
        (a refused cancel or replace is a report about the request, not the order, and is
        not returned). ``None`` proves absence: this venue keeps every order it was ever
        sent, refused ones included, for as long as it runs."""
        self._require_connected("order_status")
        return self._status.get(client_order_id)

    async def open_orders(self, account_id: str | None = None) -> list[Order]:
        self._require_connected("open_orders")
        return [w.order for w in self._live()
                if account_id is None or w.account_id == account_id]

    async def positions(self, account_id: str) -> list[Position]:
        self._require_connected("positions")
        acct = self._account_or_raise(account_id)
        now = self.now()
        out: list[Position] = []
        for symbol, h in sorted(acct.holdings.items()):
            if h.quantity == 0 and h.realized_pnl == 0:
                continue
            mark = self._mark(symbol, h)
            # the venue keeps exact costs; the wire takes 12 places (a cost averaged over
            # partial fills may have more)
            out.append(Position(
                fund_id=acct.fund_id, strategy_id=h.strategy_id, symbol=symbol,
                quantity=h.quantity, avg_cost=fit_to_domain(h.avg_cost),
                realized_pnl=fit_to_domain(h.realized_pnl),
                unrealized_pnl=fit_to_domain((mark - h.avg_cost) * h.quantity), as_of=now,
            ))
        return out

    async def account(self, account_id: str) -> AccountSnapshot:
        """The account's snapshot. With ``default_cash`` an unknown account opens with it now,
        as on its first order: a service asking about a fund's account before trading (the
        OMS's reconciliation at start) sees the cash the fund will trade with."""
        self._require_connected("account")
        acct = self._account_or_raise(account_id)
        return AccountSnapshot(
            broker=self._name, account_id=account_id, cash=acct.cash,
            buying_power=self._buying_power(acct), equity=self._equity(acct),
            positions={s: h.quantity for s, h in sorted(acct.holdings.items())
                       if h.quantity != 0},
            as_of=self.now(),
        )

    def execution_reports(self) -> AsyncIterator[ExecutionReport]:
        """A new subscription to every report emitted from now on (acks, rejects, fills...)."""
        return ReportStream(self._subscribers)

    # ----------------------------------------------------------------------- venue controls
    def add_account(self, account_id: str, cash: Decimal | int | str,
                    *, fund_id: str | None = None) -> None:
        """Open an account with ``cash`` (one per fund; ``fund_id`` defaults to the id)."""
        if account_id in self._accounts:
            raise config_error("account_id", account_id, "be new (that account already exists)")
        self._accounts[account_id] = _Account(account_id, fund_id or account_id,
                                              _dec("cash", cash))

    def halt(self, symbol: str) -> None:
        """Close an instrument: new orders on it are rejected with INSTRUMENT_CLOSED."""
        self._halted.add(symbol)

    def resume(self, symbol: str) -> None:
        self._halted.discard(symbol)

    def set_mark(self, symbol: str, price: Decimal | int | str) -> None:
        """A reference price for ``symbol`` from outside the market data (e.g. the OMS's
        ``set_price``): a market order can then be checked for buying power before the first
        bar. It never trades anything and never overrides market data - once a bar or quote
        of the symbol has been seen, that is the reference. A price that is not a positive
        finite number is a ``BrokerConfigError`` naming ``price`` and the value."""
        if not isinstance(symbol, str) or not symbol:
            raise config_error("symbol", symbol, "be a non-empty symbol")
        mark = _dec("price", price)
        if mark <= 0:
            raise config_error("price", price, "be > 0")
        self._marks[symbol] = mark

    def apply_split(self, symbol: str, ratio: Decimal | int | str) -> None:
        """A split of ``ratio`` new shares per old one (``0.1``: 1-for-10 reverse) effective now
        (call it on the ex-date, before that session's first bar): every account's position in
        ``symbol`` is multiplied by it, its average cost and the last price divided, so value and
        cost basis are unchanged. Working orders are left as they are. A position that is no
        longer a whole number of the instrument's lots (a reverse split; the lot of the
        ``instruments`` configured, none without) keeps its whole lots and is paid the rest in
        cash at the adjusted last price, rounded to cents (cash in lieu, as brokers pay it).

        Why the venue does it: a broker adjusts the positions it holds; without it the venue's
        account would disagree with the book of whoever trades on it (the paper loop, issue
        #20). A ratio that is not a positive number is a ``BrokerConfigError``."""
        k = _dec("ratio", ratio)
        if k <= 0:
            raise config_error("ratio", ratio, "be > 0")
        for prices in (self._last, self._marks):
            if symbol in prices:
                prices[symbol] /= k
        inst = self._instruments.get(symbol) if self._instruments else None
        price = self._last.get(symbol, self._marks.get(symbol))
        for acct in self._accounts.values():
            h = acct.holdings.get(symbol)
            if h is None:
                continue
            h.quantity *= k
            h.avg_cost /= k
            if inst is not None and price is not None:
                rest = h.quantity - (h.quantity / inst.lot_size).to_integral_value(
                    rounding=ROUND_DOWN) * inst.lot_size
                h.quantity -= rest
                acct.cash += (rest * price).quantize(_CENT, rounding=ROUND_HALF_UP)

    def pay_dividend(self, symbol: str, amount: Decimal | int | str) -> None:
        """A cash dividend of ``amount`` per share of ``symbol``, credited now to every account
        by its position (a short one pays it): call it on the ex-date before that session's
        first bar, so the holders at the previous close are the ones paid (the pay date's delay
        is not modelled). A negative or non-numeric amount is a ``BrokerConfigError``."""
        d = _dec("amount", amount)
        if d < 0:
            raise config_error("amount", amount, "be >= 0")
        for acct in self._accounts.values():
            h = acct.holdings.get(symbol)
            if h is not None and h.quantity != 0:
                acct.cash += h.quantity * d

    def delist(self, symbol: str, price: Decimal | int | str) -> list[ExecutionReport]:
        """``symbol`` is delisted, effective now (call it at the open of the first session
        without it): its working orders end (CANCELED reports, which the venue publishes like
        any other, so the OMS hears), then every account's position in it is closed at
        ``price`` (the last close) into cash, no commission - the holder is paid out, nothing
        trades - realizing ``quantity x (price - average cost)``. Returns the cancel reports.

        Why the venue does it: the symbol's bars stop, so an order in it would wait for ever
        and its position would stay on the books at a stale mark (the paper loop, issue #20).
        A price that is not a positive number is a ``BrokerConfigError``."""
        px = _dec("price", price)
        if px <= 0:
            raise config_error("price", price, "be > 0")
        reports = []
        for w in self._live():
            if w.order.instrument.symbol == symbol:
                w.status = OrderStatus.CANCELED
                reports.append(self._emit(self._report(
                    w, ExecType.CANCELED, reason=f"{symbol} delisted: the order cannot trade")))
        for acct in self._accounts.values():
            h = acct.holdings.get(symbol)
            if h is None or h.quantity == 0:
                continue
            acct.cash += h.quantity * px
            h.realized_pnl += h.quantity * (px - h.avg_cost)
            h.quantity = h.avg_cost = _ZERO
        return reports

    def exposed(self) -> bool:
        """Whether a corporate action could change anything here: an account holds a
        position, or an order works (a lockstep replay's venue waits for the session's
        actions only then; :class:`~mts1b_brokers.service.BrokerService`)."""
        return bool(self._live()) or any(
            h.quantity != 0 for a in self._accounts.values() for h in a.holdings.values())

    def now(self) -> dt.datetime:
        """Market time: the latest event's timestamp, else ``start``, else the clock."""
        return self._market_time if self._market_time is not None else self._clock.now()

    @property
    def history(self) -> tuple[ExecutionReport, ...]:
        """Every report emitted so far, in order."""
        return tuple(self._history)

    # ------------------------------------------------------------------------ durable state
    @property
    def emitted(self) -> int:
        """How many reports this venue emitted over its life (a restored venue goes on
        counting): the broker service publishes report ``n`` only once a state with
        ``emitted >= n`` is stored, so a report is never published for a state a SIGKILL
        could still lose."""
        return self._emitted

    def knows(self, order_id: str) -> bool:
        """Whether this venue holds ``order_id`` (accepted or rejected) in memory."""
        return order_id in self._orders or order_id in self._rejected

    def snapshot(self, *, ended: bool = True) -> dict[str, Any]:
        """Everything that decides what this venue does next, as JSON-ready data (Decimals and
        times as strings): accounts (cash, holdings, average costs, realised P&L), orders
        with their fills, reservations and latest report, rejections, last prices, marks,
        quotes, halts, market time, order sequence, the report count and the random
        generator's state (seeded slippage and latency: a restored venue draws what the
        unstopped one would have drawn). :meth:`restore` takes it back.

        ``ended=False`` leaves out orders that ended (filled, canceled, expired, rejected):
        a venue trading for years ended hundreds of thousands, which the broker service
        stores one by one as they end (:meth:`pop_ended`, :meth:`ended_record`) and gives
        back on demand (:meth:`restore_ended`) rather than in every snapshot.

        Not included: the report history (:attr:`history`, an in-process log; the service's
        reports are on the stream), subscribers, configuration (models, calendar,
        instruments, leverage: the restarted venue is configured again) and the connection
        state."""
        orders = [w for w in self._orders.values() if ended or not w.status.is_terminal]
        records = [self._cached_record(w) for w in sorted(orders, key=lambda w: w.seq)]
        self._records = {r["order_id"]: self._records[r["order_id"]] for r in records}
        state: dict[str, Any] = {
            "version": _STATE_VERSION,
            "name": self._name,
            "accounts": [{
                "account_id": a.account_id, "fund_id": a.fund_id, "cash": str(a.cash),
                "holdings": {s: {"quantity": str(h.quantity), "avg_cost": str(h.avg_cost),
                                 "realized_pnl": str(h.realized_pnl),
                                 "strategy_id": h.strategy_id}
                             for s, h in a.holdings.items()},
            } for a in self._accounts.values()],
            "orders": records,
            "rejected": ([self._rejected_record(o) for o in self._rejected] if ended else []),
            "seq": self._seq,
            "market_time": None if self._market_time is None else self._market_time.isoformat(),
            "halted": sorted(self._halted),
            "last": {s: str(p) for s, p in self._last.items()},
            "marks": {s: str(p) for s, p in self._marks.items()},
            "quotes": {s: q.model_dump(mode="json") for s, q in self._quotes.items()},
            "emitted": self._emitted,
            "rng": _rng_state(self._rng),
        }
        return state

    def snapshot_json(self) -> bytes:
        """``json.dumps(snapshot(ended=False))`` as compact UTF-8, the text of each order that
        did not change since the last call reused. Why: with hundreds of orders working,
        serialising them was most of what a save per command cost (8 of 9 ms)."""
        state = self.snapshot(ended=False)
        texts: dict[str, tuple[dict[str, Any], bytes]] = {}
        for record in state["orders"]:
            cached = self._texts.get(record["order_id"])
            if cached is None or cached[0] is not record:
                cached = (record, json.dumps(record, separators=(",", ":")).encode())
            texts[record["order_id"]] = cached
        self._texts = texts
        rest = json.dumps({**state, "orders": []}, separators=(",", ":")).encode()
        head, sep, tail = rest.partition(b'"orders":[]')
        if not sep:  # pragma: no cover - the key is always there
            raise RuntimeError("snapshot without orders")
        return head + b'"orders":[' + b",".join(t for _, t in texts.values()) + b"]" + tail

    def restore(self, state: Mapping[str, Any]) -> None:
        """Replace this venue's state with ``state`` from :meth:`snapshot` (of a venue of the
        same name). Why everything at once: a half-restored venue (positions without their
        working orders, or without the generator's state) would trade differently from the
        one that was stopped. A state this version cannot read raises ``ValueError``, and
        the venue is left as it was."""
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"paper venue state version {state.get('version')!r} is not "
                             f"{_STATE_VERSION}")
        if state.get("name") != self._name:
            raise ValueError(f"the state is venue {state.get('name')!r}'s, not {self._name!r}")
        self._restored_status.clear()
        accounts: dict[str, _Account] = {}
        for a in state["accounts"]:
            acct = _Account(a["account_id"], a["fund_id"], Decimal(a["cash"]))
            for symbol, h in a["holdings"].items():
                acct.holdings[symbol] = _Holding(Decimal(h["quantity"]), Decimal(h["avg_cost"]),
                                                 Decimal(h["realized_pnl"]), h["strategy_id"])
            accounts[acct.account_id] = acct
        orders = [self._working_from(r) for r in state["orders"]]
        rejected = [self._rejection_from(r) for r in state["rejected"]]
        rng = random.Random()  # noqa: S311 - simulation, not cryptography
        rng.setstate(_rng_from(state["rng"]))
        market_time = state["market_time"]
        quotes = {s: Quote.model_validate(q) for s, q in state["quotes"].items()}
        # everything parsed: now replace
        self._accounts = accounts
        self._orders = {w.order_id: w for w in orders}
        self._open = {w.order_id: w for w in orders if not w.status.is_terminal}
        self._status = {w.order_id: status for w, status in
                        ((w, self._restored_status.pop(w.order_id, w.ack)) for w in orders)
                        if status is not None}
        self._rejected = {}
        for order_id, error in rejected:
            self._rejected[order_id] = error
            report = error.context.get("report")
            if isinstance(report, ExecutionReport):
                self._status[order_id] = report
        self._restored_status.clear()
        self._seq = int(state["seq"])
        self._market_time = None if market_time is None else dt.datetime.fromisoformat(
            market_time)
        self._halted = set(state["halted"])
        self._last = {s: Decimal(p) for s, p in state["last"].items()}
        self._marks = {s: Decimal(p) for s, p in state["marks"].items()}
        self._quotes = quotes
        self._emitted = int(state["emitted"])
        self._rng = rng
        self._history = []
        self._ended = []

    def pop_ended(self) -> list[dict[str, Any]]:
        """The records (:meth:`ended_record`) of the orders that ended or were rejected since
        the last call, for a store that keeps each ended order once."""
        ids = list(dict.fromkeys(self._ended))
        self._ended.clear()
        return [r for r in (self.ended_record(i) for i in ids) if r is not None]

    def ended_record(self, order_id: str) -> dict[str, Any] | None:
        """``order_id``'s record if it ended here (``None`` while it works or is unknown)."""
        if order_id in self._rejected:
            return self._rejected_record(order_id)
        w = self._orders.get(order_id)
        if w is None or not w.status.is_terminal:
            return None
        return self._working_record(w)

    def restore_ended(self, record: Mapping[str, Any]) -> None:
        """Take back an ended order from its :meth:`ended_record`: a repeated submit of it is
        answered as a repeat, a cancel with a ``cancel_reject``, ``order_status`` with its
        last report - as before the restart. Its fills are in the restored accounts already;
        nothing is traded or emitted."""
        if "rejected" in record:
            order_id, error = self._rejection_from(record)
            self._rejected[order_id] = error
            report = error.context.get("report")
            if isinstance(report, ExecutionReport):
                self._status[order_id] = report
            return
        w = self._working_from(record)
        if not w.status.is_terminal:
            raise ValueError(f"order {w.order_id} did not end: it is not an ended record")
        self._orders[w.order_id] = w
        status = self._restored_status.pop(w.order_id, w.ack)
        if status is not None:
            self._status[w.order_id] = status

    def _cached_record(self, w: _Working) -> dict[str, Any]:
        """``w``'s record, made again only when the order changed. Why: the broker service
        snapshots after every command, and a rebalance of hundreds of names sends hundreds
        of commands while hundreds of orders work; serialising every order each time made a
        save cost tens of milliseconds. The records are shared: never mutate them."""
        status = self._status.get(w.order_id)
        key = (w.status, w.filled, w.fills, w.triggered, w.first_day, w.reserve_qty,
               w.reserve_price)
        cached = self._records.get(w.order_id)
        if cached is not None and cached[0] is w.order and cached[1] is status and (
                cached[2] == key):
            return cached[3]
        record = self._working_record(w)
        self._records[w.order_id] = (w.order, status, key, record)
        return record

    def _working_record(self, w: _Working) -> dict[str, Any]:
        status = self._status.get(w.order_id)
        return {
            "order": w.order.model_dump(mode="json"), "order_id": w.order_id, "seq": w.seq,
            "account_id": w.account_id, "broker_order_id": w.broker_order_id,
            "accepted_at": w.accepted_at.isoformat(), "eligible_at": w.eligible_at.isoformat(),
            "reserve_qty": str(w.reserve_qty), "reserve_price": str(w.reserve_price),
            "status": w.status.value, "filled": str(w.filled), "fills": w.fills,
            "triggered": w.triggered,
            "first_day": None if w.first_day is None else w.first_day.isoformat(),
            "ack": None if w.ack is None else w.ack.model_dump(mode="json"),
            "last_report": None if status is None else status.model_dump(mode="json"),
        }

    def _working_from(self, r: Mapping[str, Any]) -> _Working:
        w = _Working(
            order=Order.model_validate(r["order"]), order_id=r["order_id"], seq=int(r["seq"]),
            account_id=r["account_id"], broker_order_id=r["broker_order_id"],
            accepted_at=dt.datetime.fromisoformat(r["accepted_at"]),
            eligible_at=dt.datetime.fromisoformat(r["eligible_at"]),
            reserve_qty=Decimal(r["reserve_qty"]), reserve_price=Decimal(r["reserve_price"]),
            status=OrderStatus(r["status"]), filled=Decimal(r["filled"]), fills=int(r["fills"]),
            triggered=bool(r["triggered"]),
            first_day=None if r["first_day"] is None else dt.date.fromisoformat(r["first_day"]),
            ack=None if r["ack"] is None else ExecutionReport.model_validate(r["ack"]),
        )
        if r["last_report"] is not None:
            self._restored_status[w.order_id] = ExecutionReport.model_validate(r["last_report"])
        return w

    def _rejected_record(self, order_id: str) -> dict[str, Any]:
        report = self._rejected[order_id].context.get("report")
        return {"order_id": order_id, "rejected": (report.model_dump(mode="json")
                                                   if isinstance(report, ExecutionReport)
                                                   else None),
                "message": self._rejected[order_id].message,
                "reason_code": self._rejected[order_id].context.get("reason_code")}

    def _rejection_from(self, r: Mapping[str, Any]) -> tuple[str, BrokerRejected]:
        """The ``BrokerRejected`` a repeated submit of a rejected order raises again."""
        order_id = str(r["order_id"])
        context: dict[str, Any] = {"broker": self._name, "order_id": order_id,
                                   "reason_code": r["reason_code"]}
        if r["rejected"] is not None:
            context["report"] = ExecutionReport.model_validate(r["rejected"])
        return order_id, BrokerRejected(str(r["message"]), **context)

    async def on_bar(self, bar: Bar) -> list[ExecutionReport]:
        """Trade working orders on ``bar.symbol`` against the bar; returns the reports made."""
        async with self._lock:
            start = len(self._history)
            self._advance(bar.ts)
            closing = self._is_closing(bar)
            capacity = self._bar_capacity(bar)
            for w in self._candidates(bar.symbol, bar.ts):
                capacity = self._trade_bar(w, bar, capacity, closing)
            self._last[bar.symbol] = bar.close
            return self._history[start:]

    async def on_quote(self, quote: Quote) -> list[ExecutionReport]:
        """Trade marketable working orders on ``quote.symbol`` at the bid or ask."""
        async with self._lock:
            start = len(self._history)
            self._advance(quote.ts)
            self._quotes[quote.symbol] = quote
            cap = {Side.BUY: quote.ask_size if quote.ask_size > 0 else None,
                   Side.SELL: quote.bid_size if quote.bid_size > 0 else None}
            for w in self._candidates(quote.symbol, quote.ts):
                cap[w.order.side] = self._trade_quote(w, quote, cap[w.order.side])
            self._last[quote.symbol] = quote.mid
            return self._history[start:]

    async def on_session_close(self, ts: dt.datetime | None = None) -> list[ExecutionReport]:
        """End the trading day: DAY orders still working expire."""
        async with self._lock:
            start = len(self._history)
            if ts is not None:
                self._advance(ts)
            for w in self._live():
                if w.order.time_in_force in {TimeInForce.DAY, TimeInForce.CLS}:
                    self._expire(w, "DAY order expired at the session close")
            return self._history[start:]

    async def replay(
        self,
        market_data: MarketDataProtocol | None = None,
        *,
        start: dt.date,
        end: dt.date,
        symbols: Sequence[str] | None = None,
    ) -> list[ExecutionReport]:
        """Feed every bar of ``market_data`` (default: the configured provider) between
        ``start`` and ``end`` through :meth:`on_bar`, in the provider's order."""
        source = market_data or self._market_data
        if source is None:
            raise config_error("market_data", None,
                               "be given to replay() or to PaperClient(market_data=...)")
        made: list[ExecutionReport] = []
        for bar in source.bars(list(symbols or source.symbols()), start, end):
            made += await self.on_bar(bar)
        return made

    # -------------------------------------------------------------------------- internals
    def _require_connected(self, call: str) -> None:
        if self._state is not ConnectionState.CONNECTED:
            raise BrokerTransportError(f"{self._name} is {self._state.value}: {call} not sent",
                                       broker=self._name, call=call)

    def _emit(self, report: ExecutionReport) -> ExecutionReport:
        self._history.append(report)
        self._emitted += 1
        if report.exec_type not in _REQUEST_REPORTS:
            self._status[report.order_id] = report
            if status_of(report).is_terminal:
                self._ended.append(report.order_id)
        for sub in list(self._subscribers):
            sub.put(report)
        return report

    def _report(self, w: _Working, exec_type: ExecType, *, reason: str | None = None,
                trade: tuple[str, Decimal, Decimal, Decimal] | None = None,
                code: RejectReason | None = None) -> ExecutionReport:
        fill: dict[str, Any] = {}
        if trade is not None:
            trade_id, qty, price, fee = trade
            fill = {"trade_id": trade_id, "last_quantity": qty, "last_price": price,
                    "commission": fee}
        return ExecutionReport(
            broker=self._name, account_id=w.account_id, order_id=w.order_id,
            broker_order_id=w.broker_order_id, exec_type=exec_type, ts=self.now(),
            symbol=w.order.instrument.symbol, side=w.order.side,
            cumulative_quantity=w.filled, leaves_quantity=w.leaves, reason=reason, code=code,
            **fill,
        )

    def _working_or_raise(self, order_id: str) -> _Working:
        w = self._orders.get(order_id)
        if w is None:
            raise BrokerRejected(
                f"{RejectReason.ORDER_NOT_FOUND}: {self._name} has no order {order_id!r}",
                broker=self._name, order_id=order_id,
                reason_code=str(RejectReason.ORDER_NOT_FOUND))
        return w

    def _account_or_raise(self, account_id: str) -> _Account:
        """The account; with ``default_cash`` an unknown one opens with it now, as on its first
        order: a service asking about a fund's account before it trades (the OMS's
        reconciliation at start) sees the cash the fund will trade with."""
        acct = self._accounts.get(account_id)
        if acct is None and self._default_cash is not None:
            self.add_account(account_id, self._default_cash)
            acct = self._accounts[account_id]
        if acct is None:
            raise BrokerRejected(f"{RejectReason.ACCOUNT_NOT_FOUND}: no account {account_id!r}",
                                 broker=self._name, account_id=account_id,
                                 reason_code=str(RejectReason.ACCOUNT_NOT_FOUND))
        return acct

    def _account_for(self, order: Order) -> _Account:
        account_id = order.account_id or order.fund_id
        acct = self._accounts.get(account_id)
        if acct is None:
            if self._default_cash is None:
                raise _Reject(RejectReason.ACCOUNT_NOT_FOUND, f"no account {account_id!r}")
            self.add_account(account_id, self._default_cash, fund_id=order.fund_id)
            acct = self._accounts[account_id]
        return acct

    # submit --------------------------------------------------------------------------------
    def _submit(self, order: Order) -> ExecutionReport:
        order_id = order.order_id
        if order_id is None:
            raise BrokerRejected(f"{RejectReason.INVALID_ORDER}: order_id (the client order id) "
                                 "is required", broker=self._name, field="order_id",
                                 reason_code=str(RejectReason.INVALID_ORDER))
        if order_id in self._rejected:
            raise self._rejected[order_id]
        if order_id in self._orders:
            original = self._orders[order_id].ack
            if original is None:  # pragma: no cover - set whenever an order is stored
                raise RuntimeError(f"order {order_id} has no ack")
            return original
        account_id = order.account_id or order.fund_id
        try:
            acct = self._account_for(order)
            self._validate(order)
            qty, price = self._reservation(acct, order)
            if qty > 0:
                needed = qty * price + self._commission.commission(qty, price)
                self._check_buying_power(acct, needed, order)
        except _Reject as rej:
            report = ExecutionReport(
                broker=self._name, account_id=account_id, order_id=order_id,
                exec_type=ExecType.REJECT, ts=self.now(), symbol=order.instrument.symbol,
                side=order.side, reason=f"{rej.code}: {rej.text}", code=rej.code,
            )
            self._emit(report)
            error = BrokerRejected(report.reason or rej.text, broker=self._name,
                                   order_id=order_id, reason_code=str(rej.code), report=report)
            self._rejected[order_id] = error
            raise error from None
        self._seq += 1
        now = self.now()
        w = _Working(
            order=order, order_id=order_id, seq=self._seq, account_id=acct.account_id,
            broker_order_id=deterministic_id("pbo", self._name, acct.account_id, order_id),
            accepted_at=now, eligible_at=now + self._latency.delay(self._rng),
            reserve_qty=qty, reserve_price=price,
        )
        ack = self._report(w, ExecType.ACK)
        w.ack = ack
        self._orders[order_id] = w
        self._open[order_id] = w
        return self._emit(ack)

    def _instrument(self, order: Order) -> Instrument:
        symbol = order.instrument.symbol
        if self._instruments is not None:
            if symbol not in self._instruments:
                raise _Reject(RejectReason.INSTRUMENT_NOT_FOUND, f"{symbol!r} is not traded here")
            return self._instruments[symbol]
        if self._market_data is not None and not self._lists(self._market_data, symbol):
            raise _Reject(RejectReason.INSTRUMENT_NOT_FOUND,
                          f"{symbol!r} has no market data at this venue")
        return order.instrument

    def _lists(self, market_data: MarketDataProtocol, symbol: str) -> bool:
        """Whether the provider lists ``symbol``, reading its list once rather than per submit.

        A provider can gain symbols (a store that ingests more), so a miss reads the list
        again before the order is rejected; a hit never calls the provider.
        """
        if self._symbols is None or symbol not in self._symbols:
            self._symbols = frozenset(market_data.symbols())
        return symbol in self._symbols

    def _validate(self, order: Order) -> None:
        inst = self._instrument(order)
        symbol, now = inst.symbol, self.now()
        if symbol in self._halted:
            raise _Reject(RejectReason.INSTRUMENT_CLOSED, f"{symbol!r} is halted")
        if isinstance(inst, Option | Future) and inst.expiry < now.date():
            raise _Reject(RejectReason.INSTRUMENT_CLOSED, f"{symbol!r} expired on {inst.expiry}")
        if isinstance(inst, EventContract) and inst.settlement <= now:
            raise _Reject(RejectReason.INSTRUMENT_CLOSED, f"{symbol!r} settled")
        tif = order.time_in_force
        if tif is TimeInForce.OPG or (tif is TimeInForce.CLS
                                      and order.order_type not in _CLOSE_TYPES):
            raise _Reject(RejectReason.UNSUPPORTED,
                          f"time_in_force {tif.value} is not supported for {order.order_type}")
        if tif is TimeInForce.GTD and order.expire_at is not None and order.expire_at <= now:
            raise _Reject(RejectReason.INVALID_ORDER,
                          f"expire_at {order.expire_at.isoformat()} is not in the future")
        self._check_prices(inst, order.limit_price, order.stop_price)
        self._check_quantity(inst, order.quantity)
        if self._calendar is not None:
            try:  # the calendar answers for the order's own TradingSession
                is_open = self._calendar.is_open(now, order.session)
            except Exception as exc:  # a calendar that cannot answer is a closed session
                raise _Reject(RejectReason.SESSION_CLOSED, f"calendar: {exc}") from None
            if not is_open:
                raise _Reject(RejectReason.SESSION_CLOSED,
                              f"{order.session.value} session is closed at {now.isoformat()}")

    @staticmethod
    def _check_prices(inst: Instrument, limit: Decimal | None, stop: Decimal | None) -> None:
        for label, price in (("limit_price", limit), ("stop_price", stop)):
            if price is None:
                continue
            if not price.is_finite() or price <= 0:
                raise _Reject(RejectReason.INVALID_PRICE, f"{label} {price} must be positive")
            if price % inst.tick_size != 0:
                raise _Reject(RejectReason.TICK_SIZE,
                              f"{label} {price} is not on the tick grid {inst.tick_size}")

    @staticmethod
    def _check_quantity(inst: Instrument, quantity: Decimal) -> None:
        if quantity <= 0:
            raise _Reject(RejectReason.INVALID_QUANTITY, f"quantity {quantity} must be positive")
        if quantity % inst.lot_size != 0:
            raise _Reject(RejectReason.LOT_SIZE, f"quantity {quantity} is not a multiple of the "
                                                 f"lot size {inst.lot_size}")
        if quantity < inst.min_quantity:
            raise _Reject(RejectReason.QUANTITY_BELOW_MINIMUM,
                          f"quantity {quantity} is below the minimum {inst.min_quantity}")

    def _reference_price(self, order: Order) -> Decimal:
        if order.order_type in _LIMIT_TYPES and order.limit_price is not None:
            return order.limit_price
        if order.order_type is OrderType.STOP and order.stop_price is not None:
            return order.stop_price
        symbol = order.instrument.symbol
        quote = self._quotes.get(symbol)
        if quote is None and self._market_data is not None:
            quote = self._market_data.latest_quote(symbol)
        if quote is not None:
            return quote.ask if order.side is Side.BUY else quote.bid
        if symbol in self._last:
            return self._last[symbol]
        if symbol in self._marks:
            return self._marks[symbol]
        raise _Reject(RejectReason.NO_REFERENCE_PRICE,
                      f"no price seen for {symbol!r} to check buying power")

    def _reservation(self, acct: _Account, order: Order) -> tuple[Decimal, Decimal]:
        """(quantity that opens or grows exposure, price to reserve it at)."""
        pos = acct.holdings.get(order.instrument.symbol, _Holding()).quantity
        closing = (min(order.quantity, max(_ZERO, -pos)) if order.side is Side.BUY
                   else min(order.quantity, max(_ZERO, pos)))
        growing = order.quantity - closing
        if growing > 0 and order.side is Side.SELL and not self._allow_short:
            raise _Reject(RejectReason.SHORT_NOT_ALLOWED,
                          f"selling {order.quantity} with {pos} held would open a short")
        if growing == 0:
            return _ZERO, _ZERO
        return growing, self._reference_price(order)

    def _check_buying_power(self, acct: _Account, needed: Decimal, order: Order) -> None:
        available = self._buying_power(acct)
        if needed > available:
            raise _Reject(RejectReason.INSUFFICIENT_BUYING_POWER,
                          f"needs {needed} but buying power is {available}")

    def _mark(self, symbol: str, h: _Holding) -> Decimal:
        last = self._last.get(symbol)
        return last if last is not None else self._marks.get(symbol, h.avg_cost)

    def _equity(self, acct: _Account) -> Decimal:
        return acct.cash + sum((h.quantity * self._mark(s, h) for s, h in acct.holdings.items()),
                               _ZERO)

    def _buying_power(self, acct: _Account) -> Decimal:
        gross = sum((abs(h.quantity) * self._mark(s, h) for s, h in acct.holdings.items()), _ZERO)
        reserved = sum((w.reserved for w in self._live()
                        if w.account_id == acct.account_id), _ZERO)
        return self._equity(acct) * self._leverage - gross - reserved

    def _replaced_terms(self, w: _Working, quantity: Decimal | None,
                        limit_price: Decimal | None, stop_price: Decimal | None) -> Order:
        if quantity is None and limit_price is None and stop_price is None:
            raise _Reject(RejectReason.INVALID_ORDER, "a replace must change something")
        t = w.order.order_type
        if limit_price is not None and t not in _LIMIT_TYPES:
            raise _Reject(RejectReason.INVALID_PRICE, f"a {t.value} order takes no limit_price")
        if stop_price is not None and t not in _STOP_TYPES:
            raise _Reject(RejectReason.INVALID_PRICE, f"a {t.value} order takes no stop_price")
        inst = self._instrument(w.order)
        self._check_prices(inst, limit_price, stop_price)
        if quantity is not None:
            self._check_quantity(inst, quantity)
            if quantity <= w.filled:
                raise _Reject(RejectReason.INVALID_QUANTITY,
                              f"quantity {quantity} must exceed the filled {w.filled}")
        changes: dict[str, Any] = {}
        if quantity is not None:
            changes["quantity"] = quantity
        if limit_price is not None:
            changes["limit_price"] = limit_price
        if stop_price is not None:
            changes["stop_price"] = stop_price
        return Order.model_validate({**w.order.model_dump(), **changes})

    # matching ------------------------------------------------------------------------------
    def _live(self) -> list[_Working]:
        """The working orders in arrival order. Why ``_open`` and not ``_orders``: every bar
        and every submit asks, and a paper loop over years submits hundreds of thousands of
        orders, so the cost must be that of the orders still working, not of all ever sent;
        orders found terminal are dropped from it here (``_orders`` keeps them all)."""
        for order_id in [o for o, w in self._open.items() if w.status.is_terminal]:
            del self._open[order_id]
        return sorted(self._open.values(), key=lambda w: w.seq)

    def _advance(self, ts: dt.datetime) -> None:
        if self._market_time is None or ts > self._market_time:
            self._market_time = ts
        for w in self._live():
            o = w.order
            if o.time_in_force is TimeInForce.GTD and o.expire_at is not None and (
                o.expire_at <= ts
            ):
                self._expire(w, f"GTD order expired at {o.expire_at.isoformat()}")
            elif (o.time_in_force in {TimeInForce.DAY, TimeInForce.CLS}
                  and w.first_day is not None and ts.date() > w.first_day):
                self._expire(w, "DAY order expired: the trading day ended")

    def _candidates(self, symbol: str, ts: dt.datetime) -> list[_Working]:
        return [w for w in self._live()
                if w.order.instrument.symbol == symbol and ts > w.eligible_at]

    def _is_closing(self, bar: Bar) -> bool:
        if bar.interval.lower().endswith(("d", "w", "mo")):
            return True
        if self._calendar is None:
            return False
        try:
            return not self._calendar.is_open(bar.ts, "RTH")
        except Exception:  # outside what the calendar knows: not a closing bar
            return False

    def _bar_capacity(self, bar: Bar) -> Decimal | None:
        if self._participation is None:
            return None
        return bar.volume * self._participation

    def _expire(self, w: _Working, reason: str) -> None:
        w.status = OrderStatus.EXPIRED
        self._emit(self._report(w, ExecType.EXPIRED, reason=reason))

    def _finish_unfilled(self, w: _Working, reason: str) -> None:
        """IOC/FOK remainder: canceled by the venue."""
        w.status = OrderStatus.CANCELED
        self._emit(self._report(w, ExecType.CANCELED, reason=reason))

    def _traded(self, w: _Working) -> Instrument:
        """The venue's definition of the order's instrument (its tick and lot sizes), else the
        order's own."""
        inst = self._instruments.get(w.order.instrument.symbol) if self._instruments else None
        return inst or w.order.instrument

    def _slip(self, price: Decimal, w: _Working) -> Decimal:
        return self._slippage.adjust(price, w.order.side, self._traded(w).tick_size, self._rng)

    def _bar_price(self, w: _Working, bar: Bar, closing: bool) -> Decimal | None:
        o = w.order
        buy = o.side is Side.BUY
        t = o.order_type
        if t is OrderType.MARKET:
            return self._slip(bar.open, w)
        if t is OrderType.MARKET_ON_CLOSE:
            return self._slip(bar.close, w) if closing else None
        if t is OrderType.LIMIT_ON_CLOSE:
            if not closing:
                return None
            limit = o.limit_price or _ZERO
            return bar.close if (bar.close <= limit if buy else bar.close >= limit) else None
        if t is OrderType.LIMIT:
            return self._limit_fill(o, bar.open, bar.low if buy else bar.high)
        # stops: trigger first
        stop = o.stop_price or _ZERO
        if w.triggered:
            trigger = bar.open
        elif buy and bar.high >= stop:
            trigger = max(bar.open, stop)
        elif not buy and bar.low <= stop:
            trigger = min(bar.open, stop)
        else:
            return None
        w.triggered = True
        if t is OrderType.STOP:
            return self._slip(trigger, w)
        limit = o.limit_price or _ZERO
        if buy:
            if trigger <= limit:
                return min(self._slip(trigger, w), limit)
            return limit if bar.low <= limit else None
        if trigger >= limit:
            return max(self._slip(trigger, w), limit)
        return limit if bar.high >= limit else None

    @staticmethod
    def _limit_fill(o: Order, open_: Decimal, extreme: Decimal) -> Decimal | None:
        limit = o.limit_price or _ZERO
        if o.side is Side.BUY:
            return open_ if open_ <= limit else (limit if extreme <= limit else None)
        return open_ if open_ >= limit else (limit if extreme >= limit else None)

    def _fillable(self, w: _Working, capacity: Decimal | None) -> Decimal:
        if capacity is None:
            return w.leaves
        lot = self._traded(w).lot_size
        lots = (min(w.leaves, capacity) / lot).to_integral_value(rounding="ROUND_FLOOR")
        return lots * lot

    def _trade_bar(self, w: _Working, bar: Bar, capacity: Decimal | None,
                   closing: bool) -> Decimal | None:
        if w.first_day is None:
            w.first_day = bar.ts.date()
        price = self._bar_price(w, bar, closing)
        capacity = self._execute(w, price, capacity)
        tif = w.order.time_in_force
        if not w.status.is_terminal:
            if w.order.order_type is OrderType.LIMIT_ON_CLOSE and closing:
                self._expire(w, "limit-on-close: the close did not meet the limit")
            elif tif in {TimeInForce.DAY, TimeInForce.CLS} and closing:
                self._expire(w, "DAY order expired at the session close")
        return capacity

    def _trade_quote(self, w: _Working, q: Quote, capacity: Decimal | None) -> Decimal | None:
        o = w.order
        if o.order_type in _CLOSE_TYPES:
            return capacity
        if w.first_day is None:
            w.first_day = q.ts.date()
        buy = o.side is Side.BUY
        touch = q.ask if buy else q.bid
        price: Decimal | None
        if o.order_type is OrderType.MARKET:
            price = self._slip(touch, w)
        elif o.order_type is OrderType.LIMIT:
            price = self._limit_fill(o, touch, touch)
        else:
            stop = o.stop_price or _ZERO
            if not w.triggered and (touch >= stop if buy else touch <= stop):
                w.triggered = True
            if not w.triggered:
                price = None
            elif o.order_type is OrderType.STOP:
                price = self._slip(touch, w)
            else:
                price = self._limit_fill(o, touch, touch)
        return self._execute(w, price, capacity)

    def _execute(self, w: _Working, price: Decimal | None,
                 capacity: Decimal | None) -> Decimal | None:
        """Fill what ``price`` and ``capacity`` allow; apply IOC/FOK; return capacity left."""
        tif = w.order.time_in_force
        qty = self._fillable(w, capacity) if price is not None else _ZERO
        if tif is TimeInForce.FOK and qty < w.leaves:
            self._finish_unfilled(w, "FOK: the full quantity was not available")
            return capacity
        if qty > 0 and price is not None:
            self._fill(w, qty, price)
            if capacity is not None:
                capacity -= qty
        if tif is TimeInForce.IOC and not w.status.is_terminal:
            self._finish_unfilled(w, "IOC: remainder canceled")
        return capacity

    def _fill(self, w: _Working, qty: Decimal, price: Decimal) -> None:
        acct = self._accounts[w.account_id]
        fee = self._commission.commission(qty, price)
        signed = qty if w.order.side is Side.BUY else -qty
        acct.cash -= signed * price + fee
        h = acct.holdings.setdefault(w.order.instrument.symbol, _Holding())
        h.strategy_id = w.order.strategy_id
        q0 = h.quantity
        if q0 == 0 or (q0 > 0) == (signed > 0):
            h.avg_cost = (abs(q0) * h.avg_cost + qty * price) / (abs(q0) + qty)
            h.quantity = q0 + signed
        else:
            closed = min(qty, abs(q0))
            h.realized_pnl += closed * (price - h.avg_cost) * (1 if q0 > 0 else -1)
            h.quantity = q0 + signed
            if h.quantity == 0:
                h.avg_cost = _ZERO
            elif (h.quantity > 0) != (q0 > 0):
                h.avg_cost = price
        w.filled += qty
        w.fills += 1
        if w.filled >= w.order.quantity:
            w.status = OrderStatus.FILLED
            exec_type = ExecType.FILL
        else:
            w.status = OrderStatus.PARTIALLY_FILLED
            exec_type = ExecType.PARTIAL_FILL
        trade_id = deterministic_id("trd", self._name, w.account_id, w.order_id, w.fills)
        self._emit(self._report(w, exec_type, trade=(trade_id, qty, price, fee)))
