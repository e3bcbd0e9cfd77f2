"""The reference engine: a loop over bars, vectorized over combinations and assets.

Today's engine as it was before the compiled one (:mod:`mts1b_GPUbacktester.sim_compiled`),
kept for two jobs: it is the cupy (GPU) path, written once against an array namespace ``xp``
(numpy or cupy), and it is the reference the compiled engine is tested against
(``tests/test_sim_compiled.py``). Semantics, inputs and outputs:
:func:`mts1b_GPUbacktester.sim.simulate`.

Each bar that trades is one Python step of about two hundred small array operations; bars on
which nothing can trade are recorded a block at a time (:func:`_skip_quiet`).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from mts1b_GPUbacktester.kernels import cost_rates
from mts1b_GPUbacktester.sim import (
    CostModel,
    FillLedger,
    SimInputs,
    SimOutput,
    dividend_rows,
    fill_key_dtype,
    forward_filled_close,
)

__all__ = ["simulate_reference"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

#: one row's fills: (row, asset indices, shares, prices, commissions, slippage, reason codes);
#: every element after the row is an ``(n,)`` numpy array
Fills = tuple[int, IntArray, FloatArray, FloatArray, FloatArray, FloatArray,
              npt.NDArray[np.int8]]


#: quiet-bar look-ahead (see :func:`simulate`): the first block of bars checked at once holds
#: about ``_QUIET_CELLS`` (combo, bar, asset) cells, and at least ``_QUIET_FIRST`` bars; it
#: doubles after every block in which no bar trades, up to ``_QUIET_MAX`` bars
_QUIET_CELLS = 1 << 16
_QUIET_FIRST = 8
_QUIET_MAX = 256


def _solve_post_trade_nav(xp: ModuleType, v_pre: Any, w: Any, held: Any, tradable: Any,
                          buy_rate: Any, sell_rate: Any, commission: Any, slip: float,
                          impact: Any) -> Any:
    """NAV after a rebalance to weights ``w`` of the *post-trade* NAV, costs paid from it.

    Solves ``V = V_pre - sum_i cost_i(w_i V - held_i)`` for ``V`` (``(C,)``). Without impact
    the cost is piecewise linear in ``V``: for a guess of which assets are bought and which
    sold the equation is linear and solved exactly; the guess is refined until it is stable
    (once or twice). With one asset and ``w = 1`` from cash this is ``V_pre / (1 + rate)``:
    exactly the shares vectorbt's ``from_signals`` buys with all its cash. With square-root
    impact the cost is not linear and a fixed-point iteration (a contraction with factor about
    the cost rate) is used instead.

    Without impact the arrays may carry extra leading axes (``v_pre`` ``(C, B)``, the others
    ``(C, B, A)``: a block of bars at once) and each element gets the same value as alone:
    once an element's buy/sell guess is stable its ``V`` no longer changes, so more rounds for
    the sake of other elements leave it as it was.
    """
    if impact is None:
        v = v_pre
        buying = None
        for _ in range(6):
            x = (w * v[..., None] - held) * tradable
            now = x > 0
            if buying is not None and bool(xp.all(now == buying)):
                return v
            buying = now
            rate = xp.where(now, buy_rate, -sell_rate) * tradable  # cost = rate * trade value
            v = (v_pre + (rate * held).sum(axis=-1)) / (1.0 + (rate * w).sum(axis=-1))
        return v
    v = v_pre
    for _ in range(12):
        trade = (w * v[:, None] - held) * tradable
        s = slip + impact * xp.sqrt(xp.abs(trade))
        rate = xp.where(trade > 0, (1 + s) * (1 + commission) - 1,
                        1 - (1 - s) * (1 - commission))
        v_new = v_pre - (xp.abs(trade) * rate).sum(axis=1)
        if bool(xp.all(xp.abs(v_new - v) <= 1e-15 * xp.maximum(xp.abs(v_pre), 1.0))):
            return v_new
        v = v_new
    return v


@dataclass(frozen=True)
class _Rows:
    """What does not depend on the path, for every row: computed once before the bar loop.

    Device arrays are ``(T, A)`` unless noted; ``rebalances``, ``exits``, ``delist`` and
    ``delisting`` are host (numpy) arrays because the loop branches on them. Decisions are
    made at row ``d`` and executed at row ``t = d + shift``; the ``(T,)`` flags are indexed by
    the execution row ``t``.
    """

    start: int
    shift: int
    rebalances: npt.NDArray[np.bool_]  # (T,) bar t executes a rebalance decision
    exits: npt.NDArray[np.bool_]       # (T,) bar t checks for held assets outside the universe
    delist: npt.NDArray[np.int64]      # (A,) the row each asset delists at (T: never)
    delisting: npt.NDArray[np.bool_]   # (T,) rows where some asset delists
    paying: npt.NDArray[np.bool_]      # (T,) rows where some asset pays a cash dividend
    dividend: Any     # (T, A) cash dividend per share on its ex-date row (0 elsewhere), or None
    targets: Any      # (C, T, A) target weights, 0 outside the universe and for NaN
    value: Any        # the price orders are sized at: execution price, else the last mark
    safe: Any         # execution price where a trade is possible, else 1
    tradable: Any     # 1.0 where a trade is possible, else 0.0
    mark: Any         # valuation price, 0 where unknown
    close: Any
    out: Any          # bool: outside the universe
    cap: Any          # most shares a fill may trade (participation cap), or None
    impact: Any       # square-root impact coefficient per cell, or None
    commission: Any
    slip: float
    buy_rate: Any
    sell_rate: Any
    borrow: Any       # per-bar borrow rate
    has_borrow: bool
    signal: bool = False   # trade_on="signal_change"
    band: float = 0.0      # trade only assets that drifted more than this (0: no band)
    delist_cost: float = 1.0   # 1: a delisting is a sale paying costs; 0: a payout


def _prepare(inp: SimInputs, costs: CostModel, xp: ModuleType, *, signal: bool = False,
             band: float = 0.0) -> _Rows:
    """The path-independent arrays of a run (see :class:`_Rows`)."""
    t_len, a_len = inp.targets.shape[1:]
    mark_price = inp.mark_price
    if mark_price is None:
        mark_price = xp.asarray(forward_filled_close(_host(inp.close)))
    commission = xp.asarray(costs.commission, dtype=xp.float64)
    slip = float(costs.slippage)
    buy_rate, sell_rate = cost_rates(commission, slip)
    borrow = xp.asarray(costs.borrow, dtype=xp.float64) / costs.periods_per_year
    delist = np.asarray(_host(inp.delist_row))
    delisting = np.zeros(t_len, dtype=bool)
    delisting[delist[delist < t_len]] = True
    dividend, paying = dividend_rows(inp.dividend, t_len, a_len)
    rows = xp.arange(t_len)[:, None]
    price = inp.exec_price
    tradable = xp.isfinite(price) & (price > 0) & (rows <= xp.asarray(delist)[None, :])
    prev_mark = xp.full((t_len, a_len), xp.nan)
    prev_mark[1:] = mark_price[:-1]
    value = xp.where(tradable, price, prev_mark)
    value = xp.where(xp.isfinite(value), value, 0.0)
    safe = xp.where(tradable, price, 1.0)
    out = ~inp.in_universe
    # decision row d acts at bar d + shift, from d = start on
    decides = np.zeros(t_len, dtype=bool)
    decides[inp.start + inp.shift:] = True
    rebalances, exits = decides.copy(), decides.copy()
    rebalances[decides] &= np.asarray(_host(inp.rebalance), dtype=bool)[inp.start:t_len - inp.shift]
    exits[decides] &= np.asarray(_host(out.any(axis=1)))[inp.start:t_len - inp.shift]
    cap = None
    if costs.participation is not None and inp.volume is not None:
        cap = costs.participation * xp.nan_to_num(inp.volume, nan=0.0)
    impact = None
    if costs.impact_k > 0 and inp.adv is not None and inp.sigma is not None:
        adv_value = inp.adv * safe
        impact = costs.impact_k * inp.sigma * xp.sqrt(
            xp.where(adv_value > 0, 1.0 / xp.where(adv_value > 0, adv_value, 1.0), 0.0))
        impact = xp.where(xp.isfinite(impact), impact, 0.0)
    return _Rows(
        start=inp.start, shift=inp.shift, rebalances=rebalances, exits=exits, delist=delist,
        delisting=delisting, paying=paying,
        dividend=None if dividend is None else xp.asarray(dividend),
        targets=xp.where(inp.in_universe[None] & xp.isfinite(inp.targets), inp.targets, 0.0),
        value=value, safe=safe, tradable=tradable.astype(xp.float64),
        mark=xp.where(xp.isfinite(mark_price), mark_price, 0.0), close=inp.close,
        out=out, cap=cap, impact=impact, commission=commission, slip=slip, buy_rate=buy_rate,
        sell_rate=sell_rate, borrow=borrow, has_borrow=bool(xp.any(borrow != 0)),
        signal=signal, band=band, delist_cost=1.0 if costs.delisting_costs else 0.0)


@dataclass
class _Book:
    """The path so far: shares held, cash, and orders still waiting (``(C, A)``; cash ``(C,)``).

    ``any_pending`` is False only when every pending order is zero.
    """

    shares: Any
    cash: Any
    pending: Any
    pending_reason: Any
    any_pending: bool = False
    target: Any = None   # (C, A) the target each asset was last traded to (signal_change)


@dataclass
class _Records:
    """:class:`SimOutput` while the loop runs: fills are kept one entry per row that traded."""

    nav: Any
    commission: Any
    slippage: Any
    borrow: Any
    traded: Any
    weights: Any = None
    fills: list[Fills] | None = None


def simulate_reference(inp: SimInputs, costs: CostModel, *, initial_nav: float = 1.0,
                       xp: ModuleType = np, record_weights: bool = False,
                       record_fills: bool = False, trade_on: str = "schedule",
                       band: float = 0.0) -> SimOutput:
    """Trade target weights bar by bar; vectorized over combos ``C`` and assets ``A``.

    ``trade_on``/``band``: the trade rule. The semantics of a bar, the trade rule and the NaN
    policy are :func:`mts1b_GPUbacktester.sim.simulate`'s, which validates the arguments.

    Everything that does not depend on the path (tradability, valuation prices, caps, impact
    coefficients) is computed for all rows before the loop: about ten ``(T, A)`` arrays.

    Quiet bars: most bars of a typical run trade nothing (a daily rebalance to the weights
    already held leaves only float residue, and between rebalances nothing is due). After a
    bar that did not trade, or a trade that ended a quiet stretch, the following bars are
    checked a block at a time (:func:`_skip_quiet`) and those before the next trade are
    recorded without a Python step each. The check runs the loop's own operations, so the
    records are the same bit for bit. It is not used with square-root impact (its solver
    iterates to a tolerance, so the rounding would depend on the block) or with borrow (cash
    changes every bar a short is held), nor with a trade rule other than the default.
    """
    n_combo, t_len, a_len = inp.targets.shape
    rows = _prepare(inp, costs, xp, signal=trade_on == "signal_change", band=band)
    book = _Book(shares=xp.zeros((n_combo, a_len)), cash=xp.full((n_combo,), float(initial_nav)),
                 pending=xp.zeros((n_combo, a_len)),
                 pending_reason=xp.zeros((n_combo, a_len), dtype=xp.int8),
                 target=xp.zeros((n_combo, a_len)) if rows.signal else None)
    out = _Records(
        nav=xp.full((n_combo, t_len), float(initial_nav)), commission=xp.zeros((n_combo, t_len)),
        slippage=xp.zeros((n_combo, t_len)), borrow=xp.zeros((n_combo, t_len)),
        traded=xp.zeros((n_combo, t_len)),
        weights=xp.zeros((n_combo, t_len, a_len)) if record_weights else None,
        fills=[] if record_fills else None)
    # the quiet-bar check replays the default trade rule only
    can_skip = (rows.impact is None and not rows.has_borrow and not rows.signal
                and rows.band == 0)
    first_look = min(max(_QUIET_CELLS // (n_combo * a_len), _QUIET_FIRST), _QUIET_MAX)
    look = 0           # > 0: check this many bars at once before stepping the next one
    skipped = False    # the last check found quiet bars: quiet stretches are worth a check
    t = inp.start
    while t < t_len:
        if look and not book.any_pending:
            stop = min(t + look, t_len)
            n = _skip_quiet(xp, rows, book, out, t, stop)
            skipped, t = n > 0, t + n
            if t == stop:
                look = min(2 * look, _QUIET_MAX)
                continue
        quiet = _bar(xp, rows, book, out, t)
        look = first_look if can_skip and (quiet or skipped) else 0
        t += 1
    ledger = None
    if out.fills is not None:
        ledger = _ledger(out.fills, inp, has_slippage=rows.slip != 0 or rows.impact is not None)
    return SimOutput(nav=out.nav, commission=out.commission, slippage=out.slippage,
                     borrow=out.borrow, traded=out.traded, weights=out.weights, fills=ledger)


def _ledger(fills: list[Fills], inp: SimInputs, *, has_slippage: bool) -> FillLedger:
    """The per-row records as one :class:`FillLedger` (the recorded prices are dropped: the
    ledger reads them back from ``exec_price`` and ``close``, see its docstring)."""
    t_len, a_len = inp.targets.shape[1:]
    if not fills:
        part: tuple[Any, ...] = (np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0))
    else:
        rows = np.concatenate([np.full(f[1].size, f[0], dtype=np.int64) for f in fills])
        cols, shares, comm, slip, reason = (np.concatenate([f[k] for f in fills])
                                            for k in (1, 2, 4, 5, 6))
        key = ((rows * a_len + cols) * 4 + reason).astype(fill_key_dtype(t_len, a_len))
        part = (key, shares, comm, slip)
    return FillLedger([part], inp.exec_price, inp.close, n_assets=a_len,
                      has_slippage=has_slippage)


def _bar(xp: ModuleType, rows: _Rows, book: _Book, out: _Records, t: int) -> bool:
    """Run bar ``t`` (see :func:`simulate`); True when it left the book as it was."""
    traded = False
    d = t - rows.shift
    if rows.paying[t]:  # cash dividends of the shares held at the previous close
        book.cash = book.cash + (book.shares * rows.dividend[t]).sum(axis=1)
        traded = True
    if d >= rows.start:
        value_px = rows.value[t]
        if rows.rebalances[t]:
            held = book.shares * value_px
            v_pre = book.cash + held.sum(axis=1)
            impact = None if rows.impact is None else rows.impact[t]
            sel = _selected(xp, rows, book, held, v_pre, d)
            orders = _orders(xp, rows, book.shares, v_pre, held, value_px, t, d, impact, sel)
            if sel is None:  # every asset trades (the default rule)
                book.pending = orders
                if out.fills is not None:
                    book.pending_reason = xp.zeros_like(book.pending_reason)
            else:  # the others keep what they hold and what they have pending
                book.pending = xp.where(sel, orders, book.pending)
                if out.fills is not None:
                    book.pending_reason = xp.where(sel, 0, book.pending_reason).astype(xp.int8)
                if rows.signal:
                    book.target = xp.where(sel, rows.targets[:, d], book.target)
            book.any_pending = True
        if rows.exits[t]:
            leave = rows.out[d] & (book.shares != 0)
            book.pending = xp.where(leave, -book.shares, book.pending)
            if rows.signal:
                book.target = xp.where(leave, 0.0, book.target)
            if out.fills is not None:
                book.pending_reason = xp.where(leave, 2, book.pending_reason).astype(xp.int8)
            book.any_pending = True
        if book.any_pending:
            nav_pre = book.cash + (book.shares * value_px).sum(axis=1)
            dust = xp.abs(book.pending * value_px) <= 1e-10 * xp.abs(nav_pre)[:, None]
            book.pending = xp.where(dust, 0.0, book.pending)
            book.any_pending = bool(xp.any(book.pending != 0))
        if book.any_pending:
            _fill(xp, rows, book, out, t, rebalanced=bool(rows.rebalances[t]))
            traded = True
    if rows.delisting[t]:
        _delist(xp, rows, book, out, t)
    mark_px = rows.mark[t]
    if rows.has_borrow:
        charge = ((xp.maximum(-book.shares, 0.0) * mark_px) * rows.borrow).sum(axis=1)
        book.cash = book.cash - charge
        out.borrow[:, t] = charge
    held_value = book.shares * mark_px
    out.nav[:, t] = book.cash + held_value.sum(axis=1)
    if out.weights is not None:
        out.weights[:, t] = held_value / xp.where(out.nav[:, t] != 0, out.nav[:, t],
                                                  1.0)[:, None]
    return not traded and not rows.delisting[t]


def _fill(xp: ModuleType, rows: _Rows, book: _Book, out: _Records, t: int, *,
          rebalanced: bool) -> None:
    """Execute the pending orders at bar ``t`` (what the participation cap allows)."""
    px = rows.safe[t]
    order = book.pending * rows.tradable[t]
    if rows.cap is not None:
        order = xp.clip(order, -rows.cap[t], rows.cap[t])
    notional = xp.abs(order) * px
    if rows.impact is None:
        slip_cost = notional * rows.slip
    else:
        slip_cost = notional * (rows.slip + rows.impact[t] * xp.sqrt(notional))
    comm = (notional + xp.where(order > 0, slip_cost, -slip_cost)) * rows.commission
    slip_sum = slip_cost.sum(axis=1)
    comm_sum = comm.sum(axis=1)
    book.cash = book.cash - (order * px).sum(axis=1) - slip_sum - comm_sum
    book.shares = book.shares + order
    book.pending = book.pending - order
    book.any_pending = bool(xp.any(book.pending != 0))
    out.commission[:, t] += comm_sum
    out.slippage[:, t] += slip_sum
    out.traded[:, t] += notional.sum(axis=1)
    if out.fills is not None:
        reason = xp.where(book.pending_reason == 0, 0 if rebalanced else 1,
                          book.pending_reason)
        _record(out.fills, t, order[0], px, comm[0], slip_cost[0], reason[0])
        book.pending_reason = xp.where(book.pending != 0, xp.maximum(book.pending_reason, 1),
                                       0).astype(xp.int8)


def _delist(xp: ModuleType, rows: _Rows, book: _Book, out: _Records, t: int) -> None:
    """Sell what is held of the assets whose last price is at row ``t``, at that close
    (paying the costs, or none when the run pays delistings out: ``rows.delist_cost``)."""
    a_len = book.shares.shape[1]
    gone_d = xp.asarray(np.flatnonzero(rows.delist == t))
    px_g = rows.close[t][gone_d]
    qty = -book.shares[:, gone_d]
    notional = xp.abs(qty) * px_g
    slip_cost = notional * rows.slip * rows.delist_cost
    comm_vec = rows.commission if rows.commission.ndim == 0 else rows.commission[gone_d]
    comm = (notional + xp.where(qty > 0, slip_cost, -slip_cost)) * comm_vec * rows.delist_cost
    book.cash = (book.cash - (qty * px_g).sum(axis=1) - slip_cost.sum(axis=1)
                 - comm.sum(axis=1))
    out.commission[:, t] += comm.sum(axis=1)
    out.slippage[:, t] += slip_cost.sum(axis=1)
    out.traded[:, t] += notional.sum(axis=1)
    if out.fills is not None:
        qty_all = xp.zeros((a_len,))
        qty_all[gone_d] = qty[0]
        px_all, comm_all, slip_all = (xp.zeros((a_len,)) for _ in range(3))
        px_all[gone_d], comm_all[gone_d], slip_all[gone_d] = px_g, comm[0], slip_cost[0]
        _record(out.fills, t, qty_all, px_all, comm_all, slip_all,
                xp.full((a_len,), 3, dtype=xp.int8))
    book.shares[:, gone_d] = 0.0
    book.pending[:, gone_d] = 0.0


def _skip_quiet(xp: ModuleType, rows: _Rows, book: _Book, out: _Records, t0: int,
                t1: int) -> int:
    """Record the bars ``t0 <= t < t1`` that come before the first one that would trade.

    Called only while no order is pending. With the book fixed, the decisions of every bar of
    the block (post-trade NAV, orders, the dust filter) are computed at once with the bar
    loop's operations, element for element, so a bar found quiet gets exactly the NAV, weights
    and book the loop would leave. A bar is not quiet when an order survives the dust filter,
    a held asset is outside the universe, or an asset delists at it. Returns how many bars
    were recorded (0 when bar ``t0`` itself trades).
    """
    rebalance, exits = rows.rebalances[t0:t1], rows.exits[t0:t1]
    touched = np.flatnonzero(rebalance | exits)
    busy = rows.delisting[t0:t1] | rows.paying[t0:t1]
    shares, cash = book.shares, book.cash
    pend = None
    if touched.size:
        at = touched + t0
        dec = at - rows.shift
        value = rows.value[xp.asarray(at)]                        # (n, A)
        held = shares[:, None, :] * value                         # (C, n, A)
        nav_pre = cash[:, None] + held.sum(axis=-1)               # (C, n)
        reb = np.flatnonzero(rebalance[touched])
        if reb.size == touched.size:  # every touched bar rebalances (a daily schedule)
            pend = _orders(xp, rows, shares[:, None, :], nav_pre, held, value,
                           xp.asarray(at), xp.asarray(dec), None)
        else:  # the others keep the (zero) pending orders
            pend = xp.broadcast_to(book.pending[:, None, :], held.shape).copy()
            if reb.size:
                r = xp.asarray(reb)
                pend[:, r] = _orders(xp, rows, shares[:, None, :], nav_pre[:, r], held[:, r],
                                     value[r], xp.asarray(at[reb]), xp.asarray(dec[reb]), None)
        dust = xp.abs(pend * value) <= 1e-10 * xp.abs(nav_pre)[..., None]
        pend = xp.where(dust, 0.0, pend)
        trades = (pend != 0).any(axis=(0, 2))
        if exits[touched].any():
            trades |= (rows.out[xp.asarray(dec)] & (shares != 0)[:, None, :]).any(axis=(0, 2))
        busy[touched] |= _host(trades)
    first = np.flatnonzero(busy)
    n = int(first[0]) if first.size else t1 - t0
    if n == 0:
        return 0
    done = np.flatnonzero(touched < n)
    if done.size and pend is not None:  # the loop keeps the last quiet bar's (zero) orders
        book.pending = pend[:, done[-1]].copy()
        if out.fills is not None and rebalance[:n].any():
            book.pending_reason = xp.zeros_like(book.pending_reason)
    held_value = shares[:, None, :] * rows.mark[t0:t0 + n]
    nav = cash[:, None] + held_value.sum(axis=-1)
    out.nav[:, t0:t0 + n] = nav
    if out.weights is not None:
        out.weights[:, t0:t0 + n] = held_value / xp.where(nav != 0, nav, 1.0)[..., None]
    return n


def _selected(xp: ModuleType, rows: _Rows, book: _Book, held: Any, v_pre: Any,
              d: int) -> Any:
    """``(C, A)`` bool: the assets a rebalance decided at row ``d`` trades under the trade rule,
    or None for every asset (``trade_on="schedule"`` without a band)."""
    if not rows.signal and rows.band == 0:
        return None
    w = rows.targets[:, d]
    sel = None
    if rows.band > 0:  # drifted: |held - w V_pre| > band |V_pre|
        sel = xp.abs(held - w * v_pre[:, None]) > rows.band * xp.abs(v_pre)[:, None]
    if rows.signal:
        changed = w != book.target
        sel = changed if sel is None else sel | changed
    return sel


def _orders(xp: ModuleType, rows: _Rows, shares: Any, v_pre: Any, held: Any, value: Any,
            t: Any, d: Any, impact: Any, sel: Any = None) -> Any:
    """Rebalance orders: target weight x post-trade NAV / price - held shares (none where there
    is no price), for bar ``t`` deciding at row ``d``.

    One bar: ``shares``/``held``/``value`` ``(C, A)`` or ``(A,)``, ``v_pre`` ``(C,)``, ``t``
    and ``d`` integers. A block of bars (no impact): the same with a bar axis before the asset
    axis, and ``t``/``d`` index arrays. ``sel`` (``(C, A)`` bool, one bar): only these assets
    trade, so only their costs enter the post-trade NAV (the caller keeps the others' orders).
    """
    w = rows.targets[:, d]
    tradable = rows.tradable[t] if sel is None else rows.tradable[t] * sel
    v_post = _solve_post_trade_nav(xp, v_pre, w, held, tradable, rows.buy_rate,
                                   rows.sell_rate, rows.commission, rows.slip, impact)
    desired = w * v_post[..., None] / xp.where(value > 0, value, 1.0)
    return xp.where(value > 0, desired, shares) - shares


def _host(x: Any) -> npt.NDArray[Any]:
    """A device array as a host (numpy) array."""
    return np.asarray(x.get() if hasattr(x, "get") else x)


def _record(fills: list[Fills], t: int, qty: Any, price: Any, comm: Any, slip: Any,
            reason: Any) -> None:
    """Append row ``t``'s non-zero fills (``(A,)`` arrays of combo 0) to ``fills``."""
    q = _host(qty)
    idx = np.flatnonzero(q)
    if idx.size:
        fills.append((t, idx, q[idx], _host(price)[idx], _host(comm)[idx], _host(slip)[idx],
                      _host(reason)[idx].astype(np.int8)))
