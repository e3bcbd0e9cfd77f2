"""The paper loop: one strategy traded session by session over stored bars, in process.

What it is for (issue #20): the deterministic core that both a backtest-paper parity check and
the bus-based loop share. At each session of a raw (unadjusted) panel from the datalake:

1. the corporate actions whose ex-date is this session are applied at the venue before the open
   (:meth:`PaperVenue.apply_split`: positions x ratio; :meth:`PaperVenue.pay_dividend`: cash +=
   shares x amount, on the shares held at the previous close);
2. when the previous session decided a rebalance, its target weights (one sleeve: the whole
   account) become orders through the OMS's rebalance (target -> orders, passed in as
   ``rebalance``: ``mts1b_oms.rebalance.rebalance``), sized at this session's open, and are
   submitted to the venue (a ``mts1b_brokers.PaperClient``) as good-till-cancelled market
   orders; a symbol whose prices stop at this session (a delisting) also gets a market-on-close
   order for all of what it will hold, so its position is closed at its last close;
3. the session's bars are fed to the venue (``on_bar``): market orders fill at the open,
   on-close orders at the close, at the venue's commission;
4. the NAV is the venue's cash plus its positions at the last known close; and when this
   session is a decision session, ``targets_for`` gives the weights from the data up to its
   close (they trade at the next open).

It returns the trades (date, symbol, signed quantity in the shares of that date, price,
commission) and the daily NAV, in ``Decimal``.

Conventions, chosen so that a backtest of the same targets by the GPUbacktester's
``run_single`` (``fill="next_open"``, ``trade_on="schedule"``, no slippage or participation cap,
on the same panel adjusted for splits only, with the dividends as the ``cash_dividend`` field)
trades the same quantities; each is what ``run_single`` does:

* sizing: ``weight x NAV_post / open`` where ``NAV_post`` is the NAV at the open net of this
  rebalance's own commissions (``V = V_pre - sum_i rate x |w_i V - held_i|``, solved exactly as
  the backtester does, :func:`post_trade_nav`); a symbol without an open this session is sized
  at its last close, does not count in the commission estimate and its order waits (GTC) for
  its next bar;
* shares: fractional. ``run_single`` holds float shares and cannot trade whole ones, so the
  loop trades the instruments given (``lot_size`` of ``1e-9`` share in the parity harness) and
  the OMS rounds each order towards zero to that lot;
* costs: a commission proportional to notional with no rounding to cents
  (:class:`ProportionalCommission`, ``cost_bps`` of the backtest); an order worth at most
  ``1e-10`` of the NAV is float residue in the backtester and is not sent (the OMS's
  ``threshold``);
* a new rebalance replaces the orders still working (they are cancelled first), as the
  backtester replaces its pending orders.

Why the venue and the OMS rebalance are parameters rather than imports: mts1b-research does not
depend on mts1b-brokers or mts1b-oms at run time (its install closure stays as it is), and the
bus-based loop passes its own; the parity test and ``bench/paper_parity.py`` pass the real
``PaperClient`` and ``mts1b_oms.rebalance.rebalance``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar, Protocol

import numpy as np
from mts1b_datalake import Store
from mts1b_foundation import (
    AccountSnapshot,
    Bar,
    Equity,
    ExecType,
    ExecutionReport,
    Instrument,
    Order,
    OrderType,
    Side,
    Signal,
    StrategySpec,
    TimeInForce,
    UniversePanel,
    deterministic_id,
)

from mts1b_research.errors import ResearchError, ResearchInputError
from mts1b_research.targets import panel_for, strategy_weights

__all__ = [
    "DUST",
    "WIRE_QUANTUM",
    "PaperLoopError",
    "PaperRun",
    "PaperTrade",
    "PaperVenue",
    "ProportionalCommission",
    "Rebalancer",
    "post_trade_nav",
    "run_paper",
    "strategy_targets",
]

ZERO = Decimal(0)
ONE = Decimal(1)
DUST = Decimal("1e-10")
"""An order worth at most this fraction of the NAV is not sent: the backtester drops such
orders as float residue (``sim.simulate``), so the paper path must not trade them either."""
_BPS = Decimal(10_000)
WIRE_QUANTUM = Decimal("1e-12")
"""The finest decimal the wire models carry (foundation's decimals: at most 12 places)."""


class PaperLoopError(ResearchError):
    """The venue refused an order or reported something that is not a fill: the run stops
    rather than trading on as if the order had filled (``context``: ``order_id``, ``report``)."""

    code: ClassVar[str] = "RESEARCH.PAPER_LOOP"


class Rebalancer(Protocol):
    """``mts1b_oms.rebalance.rebalance``'s signature: target weights -> market orders."""

    def __call__(self, target: Signal, *, fund_id: str, positions: Mapping[str, Decimal],
                 prices: Mapping[str, Decimal], nav: Decimal | None = ...,
                 strategy_id: str | None = ..., instruments: Mapping[str, Instrument] | None = ...,
                 threshold: Decimal = ..., close_missing: bool | None = ...) -> list[Order]: ...


class PaperVenue(Protocol):
    """What the loop needs of a paper venue (``mts1b_brokers.PaperClient`` has it all)."""

    async def submit(self, order: Order) -> ExecutionReport: ...

    async def cancel(self, order_id: str) -> ExecutionReport: ...

    async def open_orders(self, account_id: str | None = None) -> list[Order]: ...

    async def account(self, account_id: str) -> AccountSnapshot: ...

    async def on_bar(self, bar: Bar) -> list[ExecutionReport]: ...

    def set_mark(self, symbol: str, price: Decimal | int | str) -> None: ...

    def apply_split(self, symbol: str, ratio: Decimal | int | str) -> None: ...

    def pay_dividend(self, symbol: str, amount: Decimal | int | str) -> None: ...


@dataclasses.dataclass(frozen=True)
class ProportionalCommission:
    """``bps`` basis points of notional, not rounded to cents: the backtester's cost model
    (``cost_bps``) as a venue commission model. A real broker rounds to cents; a backtest does
    not, and the parity check compares the two paths under one cost model. The fee is rounded
    half-even to ``1e-12`` (:data:`WIRE_QUANTUM`), the most decimals an execution report
    carries: a difference of at most 5e-13 a fill."""

    bps: Decimal

    def commission(self, quantity: Decimal, price: Decimal) -> Decimal:
        return (quantity * price * self.bps / _BPS).quantize(WIRE_QUANTUM,
                                                             rounding=ROUND_HALF_EVEN)


@dataclasses.dataclass(frozen=True)
class PaperTrade:
    """One fill: ``quantity`` signed (+ bought), in the shares of ``date`` (before any later
    split); ``reason``: ``rebalance`` (filled the session after the decision), ``carry`` (an
    order that waited for a bar) or ``delisted`` (closed at the last close)."""

    date: dt.date
    symbol: str
    quantity: Decimal
    price: Decimal
    commission: Decimal
    reason: str


@dataclasses.dataclass(frozen=True)
class PaperRun:
    """The loop's record: ``nav`` after each session's close (one per ``dates``), the trades in
    the order they filled, the targets of each decision session, and the final account."""

    dates: tuple[dt.date, ...]
    nav: tuple[Decimal, ...]
    trades: tuple[PaperTrade, ...]
    targets: Mapping[dt.date, Mapping[str, Decimal]]
    cash: Decimal
    positions: Mapping[str, Decimal]


def strategy_targets(spec: StrategySpec, store: Store | str | Path, market: UniversePanel, *,
                     lookback_sessions: int) -> Callable[[int], Mapping[str, Decimal]]:
    """``targets_for`` of a registered-style strategy, as the signal service computes it: at
    a row of ``market``, the strategy's published targets (:func:`strategy_weights` on
    :func:`panel_for` of the ``lookback_sessions`` sessions up to that session's close, adjusted
    up to that session only). Why a panel per decision: the weights must come from the data
    known at that close, adjustments included, not from a panel built to the end of the run."""
    days = tuple(d.item() for d in market.dates.astype("datetime64[D]"))

    def targets_for(row: int) -> Mapping[str, Decimal]:
        panel = panel_for(spec, store, days[row], lookback_sessions=lookback_sessions)
        return strategy_weights(spec, panel).targets

    return targets_for


def post_trade_nav(v_pre: Decimal, weights: Sequence[Decimal], held: Sequence[Decimal],
                   tradable: Sequence[bool], rate: Decimal) -> Decimal:
    """The NAV after a rebalance to ``weights`` of the post-trade NAV, its commissions paid.

    Solves ``V = V_pre - sum_i rate x |w_i V - held_i|`` over the tradable assets (``held``:
    the value held of each at the sizing price), as the backtester does: for a guess of which
    assets are bought the equation is linear and solved exactly; the guess is refined until
    it is stable (at most six rounds, the backtester's bound).
    """
    v = v_pre
    buying: tuple[bool, ...] | None = None
    for _ in range(6):
        now = tuple(ok and w * v - h > 0 for w, h, ok in zip(weights, held, tradable,
                                                              strict=True))
        if now == buying:
            return v
        buying = now
        rates = [(rate if b else -rate) if ok else ZERO for b, ok in zip(now, tradable,
                                                                          strict=True)]
        v = ((v_pre + sum((r * h for r, h in zip(rates, held, strict=True)), ZERO))
             / (ONE + sum((r * w for r, w in zip(rates, weights, strict=True)), ZERO)))
    return v


def _dec(x: float) -> Decimal:
    """A stored float as the decimal it was written as (its shortest repr)."""
    return Decimal(repr(float(x)))


def _finite_positive(x: float) -> bool:
    return math.isfinite(x) and x > 0


@dataclasses.dataclass
class _Market:
    """The raw panel as plain per-session rows, and what the loop derives from it."""

    panel: UniversePanel
    dates: tuple[dt.date, ...]
    symbols: tuple[str, ...]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    dividend: np.ndarray
    split: np.ndarray
    last_row: np.ndarray   # last row with a close, per symbol (-1: none)

    @classmethod
    def of(cls, panel: UniversePanel) -> _Market:
        names = set(panel.field_names)
        if not {"dividend", "split_ratio"} <= names:
            raise ResearchInputError("market", sorted(names), "the raw panel needs the fields "
                                     "dividend and split_ratio (build_panel(adjust='none', "
                                     "fields=(*OHLCV_FIELDS, 'dividend', 'split_ratio')))")
        close = np.asarray(panel.close, dtype=np.float64)
        valid = np.isfinite(close) & (close > 0)
        t_len = close.shape[0]
        last = np.where(valid.any(axis=0), t_len - 1 - np.argmax(valid[::-1], axis=0), -1)
        return cls(panel=panel,
                   dates=tuple(d.item() for d in panel.dates.astype("datetime64[D]")),
                   symbols=tuple(panel.symbols), open=np.asarray(panel.open, dtype=np.float64),
                   high=np.asarray(panel.high, dtype=np.float64),
                   low=np.asarray(panel.low, dtype=np.float64), close=close,
                   volume=np.asarray(panel.volume, dtype=np.float64),
                   dividend=np.nan_to_num(np.asarray(panel.field("dividend"), dtype=np.float64)),
                   split=np.nan_to_num(np.asarray(panel.field("split_ratio"), dtype=np.float64),
                                       nan=1.0),
                   last_row=last)

    def bar(self, t: int, a: int, ts: dt.datetime) -> Bar | None:
        """The bar of symbol ``a`` at row ``t``, or None without an open and a close. A bar
        whose open or close lies outside its high-low range (vendor data has such rows) is
        widened to contain them: the venue requires a consistent bar, and market and on-close
        fills use only the open and the close."""
        o, c = float(self.open[t, a]), float(self.close[t, a])
        if not (_finite_positive(o) and _finite_positive(c)):
            return None
        h, lo = float(self.high[t, a]), float(self.low[t, a])
        h = max(h, o, c) if math.isfinite(h) else max(o, c)
        lo = min(lo, o, c) if _finite_positive(lo) else min(o, c)
        v = float(self.volume[t, a])
        return Bar(symbol=self.symbols[a], ts=ts, open=_dec(o), high=_dec(h), low=_dec(lo),
                   close=_dec(c), volume=_dec(v) if math.isfinite(v) and v >= 0 else ZERO)


def _session_ts(day: dt.date) -> dt.datetime:
    """A session's bars are stamped at 21:00 UTC (after the XNYS close)."""
    return dt.datetime.combine(day, dt.time(21), tzinfo=dt.UTC)


async def run_paper(market: UniversePanel, targets_for: Callable[[int], Mapping[str, Decimal]],
                    decisions: Sequence[int], *, venue: PaperVenue, rebalance: Rebalancer,
                    fund_id: str, strategy_id: str, cost_bps: Decimal,
                    instruments: Mapping[str, Instrument] | None = None,
                    start_row: int = 0) -> PaperRun:
    """Trade the targets of ``decisions`` (rows of ``market``) from ``start_row`` to the end.

    ``market``: the raw panel (``build_panel(..., adjust="none", fields=(*OHLCV_FIELDS,
    "dividend", "split_ratio"))``). ``targets_for(row)``: the weights decided at the close of
    that row, from data up to it. ``venue``: a connected paper venue holding the fund's account
    (``fund_id``) with the starting cash and the commission model of ``cost_bps``
    (:class:`ProportionalCommission`). ``instruments``: by symbol (lot sizes); default
    ``Equity(symbol)``. A rejected order raises: the loop never trades on as if it had filled.
    """
    m = _Market.of(market)
    t_len, a_len = m.open.shape
    if not 0 <= start_row < t_len:
        raise ResearchInputError("start_row", start_row, f"must be a row of the {t_len} sessions")
    rate = cost_bps / _BPS
    inst = {s: (instruments or {}).get(s) or Equity(symbol=s) for s in m.symbols}
    decide = {int(r) for r in decisions if start_row <= int(r) < t_len - 1}
    index = {s: a for a, s in enumerate(m.symbols)}
    marks: list[Decimal | None] = [None] * a_len   # the last close, in the shares of today
    for a in range(a_len):  # the closes before the first session traded
        ok = np.flatnonzero(np.isfinite(m.close[:start_row, a]) & (m.close[:start_row, a] > 0))
        marks[a] = _dec(m.close[ok[-1], a]) if ok.size else None
    pending: Mapping[str, Decimal] | None = None
    submitted_on: dict[str, int] = {}
    trades: list[PaperTrade] = []
    navs: list[Decimal] = []
    targets: dict[dt.date, Mapping[str, Decimal]] = {}
    for t in range(start_row, t_len):
        ts = _session_ts(m.dates[t])
        # 1. corporate actions effective before this session's open
        for a in np.flatnonzero(m.split[t] != 1.0).tolist():
            k = _dec(m.split[t, a])
            venue.apply_split(m.symbols[a], k)
            mark = marks[a]
            marks[a] = None if mark is None else mark / k
        for a in np.flatnonzero(m.dividend[t] > 0).tolist():
            venue.pay_dividend(m.symbols[a], _dec(m.dividend[t, a]))
        # 2. the previous close's decision, sized at this open
        opens = [_dec(m.open[t, a]) if _finite_positive(m.open[t, a]) and t <= m.last_row[a]
                 else None for a in range(a_len)]
        if pending is not None:
            await _rebalance(venue, rebalance, m, pending, opens, marks, inst, rate, fund_id,
                             strategy_id, ts, t, submitted_on)
            pending = None
        await _close_delisted(venue, m, t, fund_id, strategy_id, inst, ts, submitted_on)
        # 3. the session's bars
        for a in range(a_len):
            bar = m.bar(t, a, ts)
            if bar is None:
                continue
            for report in await venue.on_bar(bar):
                trades.append(_trade(report, m.dates[t], t, submitted_on))
        for a in range(a_len):
            c = float(m.close[t, a])
            if _finite_positive(c):
                marks[a] = _dec(c)
        # working orders of a symbol that delisted today never fill: withdrawn
        gone = {m.symbols[a] for a in range(a_len) if m.last_row[a] == t < t_len - 1}
        for order in await venue.open_orders(fund_id):
            if order.instrument.symbol in gone and order.order_id is not None:
                await venue.cancel(order.order_id)
        # 4. the NAV at the marks, then this close's decision
        snap = await venue.account(fund_id)
        navs.append(snap.cash + sum((q * (marks[index[s]] or ZERO)
                                     for s, q in snap.positions.items()), ZERO))
        if t in decide:
            pending = MappingProxyType(dict(targets_for(t)))
            targets[m.dates[t]] = pending
    snap = await venue.account(fund_id)
    return PaperRun(dates=m.dates[start_row:], nav=tuple(navs), trades=tuple(trades),
                    targets=MappingProxyType(targets), cash=snap.cash,
                    positions=MappingProxyType(dict(snap.positions)))


async def _rebalance(venue: PaperVenue, rebalance: Rebalancer, m: _Market,
                     weights: Mapping[str, Decimal], opens: Sequence[Decimal | None],
                     marks: Sequence[Decimal | None], inst: Mapping[str, Instrument],
                     rate: Decimal, fund_id: str, strategy_id: str, ts: dt.datetime, t: int,
                     submitted_on: dict[str, int]) -> None:
    """Replace the working orders by the OMS's orders to ``weights`` at this open."""
    for order in await venue.open_orders(fund_id):
        if order.order_id is not None:
            await venue.cancel(order.order_id)
    snap = await venue.account(fund_id)
    positions = {s: q for s, q in snap.positions.items() if q != 0}
    price: list[Decimal] = [o if o is not None else (mk or ZERO) for o, mk in zip(opens, marks,
                                                                                 strict=True)]
    held = [positions.get(s, ZERO) * price[a] for a, s in enumerate(m.symbols)]
    v_pre = snap.cash + sum(held, ZERO)
    w = [weights.get(s, ZERO) for s in m.symbols]
    v_post = post_trade_nav(v_pre, w, held, [o is not None for o in opens], rate)
    prices = {s: price[a] for a, s in enumerate(m.symbols) if price[a] > 0}
    signal = Signal(strategy_id=strategy_id, as_of=ts - dt.timedelta(days=1),
                    weights={s: x for s, x in weights.items() if x != 0})
    orders = rebalance(signal, fund_id=fund_id, positions=positions, prices=prices, nav=v_post,
                       strategy_id=strategy_id, instruments=inst, threshold=DUST * abs(v_pre),
                       close_missing=True)
    for order in orders:
        sym = order.instrument.symbol
        venue.set_mark(sym, prices[sym])
        await _submit(venue, order.model_copy(update={
            "order_id": deterministic_id("paper", order.idempotency_key, m.dates[t]),
            "time_in_force": TimeInForce.GTC}), t, submitted_on)


async def _close_delisted(venue: PaperVenue, m: _Market, t: int, fund_id: str, strategy_id: str,
                          inst: Mapping[str, Instrument], ts: dt.datetime,
                          submitted_on: dict[str, int]) -> None:
    """A market-on-close order for all of what each symbol whose prices stop at this session
    will hold after the open (its position plus its working orders, which fill at the open)."""
    t_len = m.open.shape[0]
    gone = [a for a in range(len(m.symbols)) if m.last_row[a] == t < t_len - 1]
    if not gone:
        return
    snap = await venue.account(fund_id)
    working = await venue.open_orders(fund_id)
    for a in gone:
        sym = m.symbols[a]
        qty = snap.positions.get(sym, ZERO) + sum(
            (o.quantity if o.side is Side.BUY else -o.quantity for o in working
             if o.instrument.symbol == sym), ZERO)
        if qty == 0:
            continue
        order = Order(order_id=deterministic_id("paper", fund_id, strategy_id, sym, m.dates[t],
                                                "delisted"),
                      idempotency_key=f"dl-{fund_id}-{strategy_id}-{m.dates[t]}-{sym}",
                      fund_id=fund_id, strategy_id=strategy_id, instrument=inst[sym],
                      side=Side.SELL if qty > 0 else Side.BUY, quantity=abs(qty),
                      order_type=OrderType.MARKET_ON_CLOSE, created_at=ts)
        await _submit(venue, order, t, submitted_on, tag="delisted")


async def _submit(venue: PaperVenue, order: Order, t: int, submitted_on: dict[str, int],
                  tag: str | None = None) -> None:
    """Submit, and raise on anything but an acceptance (a refused order is a broken run)."""
    report = await venue.submit(order)
    if report.exec_type is not ExecType.ACK:
        raise PaperLoopError(f"the venue answered {report.exec_type.value} to order "
                             f"{order.order_id}: {report.reason}", order_id=order.order_id,
                             report=report.exec_type.value)
    if order.order_id is not None:
        submitted_on[order.order_id] = -1 if tag == "delisted" else t


def _trade(report: ExecutionReport, day: dt.date, t: int,
           submitted_on: Mapping[str, int]) -> PaperTrade:
    if report.last_quantity is None or report.last_price is None or report.symbol is None:
        raise PaperLoopError(f"a bar produced a {report.exec_type.value} report for order "
                             f"{report.order_id}, not a fill: {report.reason}",
                             order_id=report.order_id, report=report.exec_type.value)
    when = submitted_on.get(report.order_id)
    reason = "delisted" if when == -1 else ("rebalance" if when == t else "carry")
    qty = report.last_quantity if report.side is Side.BUY else -report.last_quantity
    return PaperTrade(date=day, symbol=report.symbol, quantity=qty, price=report.last_price,
                      commission=report.commission, reason=reason)
