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
  loop trades the instruments given (``lot_size`` of ``1e-8`` share in the parity harness: the
  finest whose quantity x a four-decimal price fits the wire's 12 decimals) and the OMS rounds
  each order towards zero to that lot;
* costs: a commission proportional to notional with no rounding to cents
  (:class:`ProportionalCommission`, ``cost_bps`` of the backtest); an order worth at most
  ``1e-10`` of the NAV is float residue in the backtester and is not sent (the OMS's
  ``threshold``);
* a new rebalance replaces the orders still working (they are cancelled first), as the
  backtester replaces its pending orders.

Not modelled: a held name that leaves a point-in-time universe is sold at the next rebalance
(its target is 0), where the backtester also exits it between rebalances; the parity harness
fails on such a trade (it has no match), so a universe that needs it shows up there.

Why the venue and the OMS rebalance are parameters rather than imports: mts1b-research does not
depend on mts1b-brokers or mts1b-oms at run time (its install closure stays as it is), and the
bus-based loop passes its own; the parity test and ``bench/paper_parity.py`` pass the real
``PaperClient`` and ``mts1b_oms.rebalance.rebalance``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
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
from mts1b_research.paperloop_costs import (
    DUST,
    WIRE_QUANTUM,
    ProportionalCommission,
    post_trade_nav,
)
from mts1b_research.paperloop_market import ZERO, RawMarket, dec, finite_positive, session_ts
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

_BPS = Decimal(10_000)


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
    m = RawMarket.of(market)
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
        marks[a] = dec(m.close[ok[-1], a]) if ok.size else None
    pending: tuple[int, Mapping[str, Decimal]] | None = None   # (decision row, targets)
    submitted_on: dict[str, int] = {}
    trades: list[PaperTrade] = []
    navs: list[Decimal] = []
    targets: dict[dt.date, Mapping[str, Decimal]] = {}
    for t in range(start_row, t_len):
        ts = session_ts(m.dates[t])
        # 1. corporate actions effective before this session's open
        for a in np.flatnonzero(m.split[t] != 1.0).tolist():
            k = dec(m.split[t, a])
            venue.apply_split(m.symbols[a], k)
            mark = marks[a]
            marks[a] = None if mark is None else mark / k
        for a in np.flatnonzero(m.dividend[t] > 0).tolist():
            venue.pay_dividend(m.symbols[a], dec(m.dividend[t, a]))
        # 2. the previous close's decision, sized at this open
        opens = [dec(m.open[t, a]) if finite_positive(m.open[t, a]) and t <= m.last_row[a]
                 else None for a in range(a_len)]
        if pending is not None:
            await _rebalance(venue, rebalance, m, pending[1], opens, marks, inst, rate, fund_id,
                             strategy_id, session_ts(m.dates[pending[0]]), t, submitted_on)
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
            if finite_positive(c):
                marks[a] = dec(c)
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
            pending = (t, MappingProxyType(dict(targets_for(t))))
            targets[m.dates[t]] = pending[1]
    snap = await venue.account(fund_id)
    return PaperRun(dates=m.dates[start_row:], nav=tuple(navs), trades=tuple(trades),
                    targets=MappingProxyType(targets), cash=snap.cash,
                    positions=MappingProxyType(dict(snap.positions)))


async def _rebalance(venue: PaperVenue, rebalance: Rebalancer, m: RawMarket,
                     weights: Mapping[str, Decimal], opens: Sequence[Decimal | None],
                     marks: Sequence[Decimal | None], inst: Mapping[str, Instrument],
                     rate: Decimal, fund_id: str, strategy_id: str, decided: dt.datetime,
                     t: int, submitted_on: dict[str, int]) -> None:
    """Replace the working orders by the OMS's orders to ``weights`` (decided at the close
    stamped ``decided``) at this open."""
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
    signal = Signal(strategy_id=strategy_id, as_of=decided,
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


async def _close_delisted(venue: PaperVenue, m: RawMarket, t: int, fund_id: str, strategy_id: str,
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
