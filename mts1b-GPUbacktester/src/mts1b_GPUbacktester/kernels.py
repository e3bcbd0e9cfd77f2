"""Compute kernels, written once against an array namespace ``xp`` (numpy or cupy).

Nothing here knows about dates, symbols, factors or pandas: inputs are ``(T, A)`` float64
arrays (dates x assets), optionally with a leading combo axis ``C``; NaN means "no price".
The dispatch layer (:mod:`mts1b_GPUbacktester.backend`) picks ``xp``; the engine and the ladder
prepare the inputs. Every function here uses only operations numpy and cupy share.

Kernels
-------
``rolling_mean_stack``
    Simple moving averages for many window lengths from one cumulative sum (the "cumsum
    trick"): O(T*A) per window instead of O(T*A*window).
``per_asset_log_growth``
    Closed-form all-in / all-out backtests of one boolean position matrix per combo, one
    independent account per asset (vectorbt's column semantics): the log growth of each
    account from its entry/exit transitions alone.
``simulate``
    The portfolio engine: a time loop over bars, vectorized over combos and assets, trading
    target weights with commissions, slippage, participation caps with carry-over, borrow,
    universe exits and delistings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "CostModel",
    "PerAssetContext",
    "SimInputs",
    "SimOutput",
    "cost_rates",
    "ffill_rows",
    "per_asset_context",
    "per_asset_log_growth",
    "rolling_mean_stack",
    "simulate",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]


# --------------------------------------------------------------------------------------------
# host-side helpers (numpy only; run once per panel, then moved to the device)
# --------------------------------------------------------------------------------------------

def ffill_rows(valid: BoolArray) -> IntArray:
    """``(T, A)`` index of the last row ``<= t`` where ``valid`` is True, ``-1`` before the first.

    Used to forward-fill prices for valuation and to find, for a cell that cannot trade, the
    last row at which it could.
    """
    t_len = valid.shape[0]
    rows = np.where(valid, np.arange(t_len, dtype=np.intp)[:, None], -1)
    np.maximum.accumulate(rows, axis=0, out=rows)
    return rows


def _take_rows(values: FloatArray, rows: IntArray) -> FloatArray:
    """``values[rows[t, a], a]``, NaN where ``rows`` is -1."""
    cols = np.arange(values.shape[1])[None, :]
    out: FloatArray = values[np.maximum(rows, 0), cols]
    return np.where(rows >= 0, out, np.nan)


# --------------------------------------------------------------------------------------------
# rolling means: the cumsum trick
# --------------------------------------------------------------------------------------------

def rolling_mean_stack(x: Any, windows: list[int], *, lag: int = 0,
                       min_periods: int | None = None, xp: ModuleType = np) -> Any:
    """Simple moving averages of ``x`` ``(T, A)`` for every window: ``(len(windows), T, A)``.

    The value at row ``t`` for window ``w`` is the mean of rows ``t-lag-w+1 .. t-lag`` (rows
    before 0 are simply absent). NaN policy: NaN when any value in the window is NaN, or when
    the window holds fewer than ``min_periods`` rows (default: ``w``, i.e. a full window).

    * ``lag=0, min_periods=None`` is pandas' ``rolling(w).mean()`` and vectorbt's ``MA`` (bit
      for bit: both subtract running sums that accumulate in the same order).
    * ``lag=1, min_periods=1`` is the migration guide's ``close[max(0, t-w):t].mean()``: the
      ``w`` bars *before* ``t``, partial windows at the start, NaN at ``t = 0``.

    Cost: one cumulative sum of ``x`` plus O(T*A) per window, whatever the window length.
    """
    t_len = x.shape[0]
    nan = xp.isnan(x)
    csum = xp.zeros((t_len + 1, *x.shape[1:]), dtype=xp.float64)
    xp.cumsum(xp.where(nan, 0.0, x), axis=0, out=csum[1:])
    ncnt = xp.zeros((t_len + 1, *x.shape[1:]), dtype=xp.int64)
    xp.cumsum(nan, axis=0, out=ncnt[1:])
    out = xp.empty((len(windows), *x.shape), dtype=xp.float64)
    for k, w in enumerate(windows):
        if w < 1:
            raise ValueError(f"window lengths must be >= 1; got {w}")
        need = w if min_periods is None else min_periods
        head = min(t_len, lag + w - 1)  # rows whose window is cut short by the first row
        if head < t_len:  # full windows: two shifted slices of the running sums
            top, bottom = slice(w, t_len - lag + 1), slice(0, t_len - lag + 1 - w)
            body = out[k, head:]
            if need > w:
                body[...] = xp.nan
            else:
                xp.subtract(csum[top], csum[bottom], out=body)
                xp.divide(body, float(w), out=body)
                body[(ncnt[top] - ncnt[bottom]) != 0] = xp.nan
        if head:
            hi = np.arange(head) - lag  # last row of each window (< 0: empty)
            lo = np.maximum(hi - w + 1, 0)
            length = np.maximum(hi - lo + 1, 0)
            top_d, lo_d = xp.asarray(np.maximum(hi + 1, 0)), xp.asarray(lo)
            sums = csum[top_d] - csum[lo_d]
            ok = xp.asarray(length >= need)[:, None] & ((ncnt[top_d] - ncnt[lo_d]) == 0)
            len_d = xp.asarray(np.maximum(length, 1).astype(np.float64))[:, None]
            out[k, :head] = xp.where(ok, sums / len_d, xp.nan)
    return out


# --------------------------------------------------------------------------------------------
# per-asset all-in / all-out accounts (the ladder's fast path)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PerAssetContext:
    """Everything about prices the per-asset kernel needs, prepared once per panel.

    Arrays live on the backend's device. ``shift`` is 0 when a decision at row ``d`` trades at
    row ``d`` (fill ``"close"``) and 1 when it trades at row ``d + 1`` (``"next_open"``,
    ``"next_close"``).
    """

    shift: int
    log_exec: Any          # (T, A) log execution price, 0 where no trade is possible
    carry_rows: Any        # (K,) rows of cells where no trade is possible ...
    carry_cols: Any        # (K,) ... their columns
    carry_src: Any         # (K,) last tradable row before each such cell (clipped at 0)
    carry_src_ok: Any      # (K,) False where there was no tradable row before
    log_final: Any         # (A,) log of the last valid close (the valuation at the end)
    delisted: Any          # (A,) True where the asset stops trading before the last row
    tradable: Any          # (T, A) bool, a trade is possible (finite positive exec price)
    log_in: float          # log(1 / (1 + buy cost rate)): the factor an entry keeps
    log_out: float         # log(1 - sell cost rate): the factor an exit keeps


def per_asset_context(exec_price: FloatArray, close: FloatArray, *, shift: int,
                      buy_rate: float, sell_rate: float, xp: ModuleType = np,
                      tradable: BoolArray | None = None) -> PerAssetContext:
    """Prepare :func:`per_asset_log_growth`'s inputs from host ``(T, A)`` price arrays.

    ``exec_price`` is the price each row trades at (close, or open for next-open fills);
    ``close`` values the accounts at the end (its last valid value per asset). ``tradable``
    (default: finite positive ``exec_price``) may further forbid trades, e.g. after a delisting.
    """
    ok = np.isfinite(exec_price) & (exec_price > 0)
    if tradable is not None:
        ok &= tradable
    with np.errstate(divide="ignore", invalid="ignore"):
        log_exec = np.where(ok, np.log(np.where(ok, exec_price, 1.0)), 0.0)
    last = ffill_rows(ok)
    rows, cols = np.nonzero(~ok)
    src = last[rows, cols]
    valid_close = np.isfinite(close) & (close > 0)
    last_close_row = ffill_rows(valid_close)[-1]
    final = _take_rows(close, last_close_row[None, :])[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_final = np.where(np.isfinite(final), np.log(np.where(np.isfinite(final), final,
                                                                  1.0)), 0.0)
    delisted = (last_close_row >= 0) & (last_close_row < close.shape[0] - 1)
    return PerAssetContext(
        shift=shift,
        log_exec=xp.asarray(log_exec),
        carry_rows=xp.asarray(rows), carry_cols=xp.asarray(cols),
        carry_src=xp.asarray(np.maximum(src, 0)), carry_src_ok=xp.asarray(src >= 0),
        log_final=xp.asarray(log_final), delisted=xp.asarray(delisted),
        tradable=xp.asarray(ok),
        log_in=-math.log1p(buy_rate), log_out=math.log1p(-sell_rate),
    )


def per_asset_log_growth(signal: Any, ctx: PerAssetContext,
                         xp: ModuleType = np) -> tuple[Any, Any, Any]:
    """Log growth of all-in / all-out accounts, one per (combo, asset).

    ``signal``: ``(C, T, A)`` bool, "be long after the decision at row ``d``". Each asset is
    its own account: it buys with all its cash at the execution price when the signal turns
    on (paying the buy cost rate on top: ``shares = cash / (price * (1 + rate))``, as vectorbt's
    ``from_signals`` with ``size=inf``) and sells everything when it turns off (receiving
    ``price * (1 - rate)``). A cell with no tradable price keeps the previous position (no trade
    on a NaN price); an account still long at the end is valued at the last valid close, and
    a delisted asset is closed there, paying the sell rate.

    Returns ``(log_growth, entries, exits)``, each ``(C, A)``; the account's total return is
    ``expm1(log_growth)``. Cost: a few passes over the boolean matrix plus work proportional to
    the number of trades (the log price at a run's exit minus the one at its entry).
    """
    n_combo, t_len, a_len = signal.shape
    k = ctx.shift
    pos = xp.empty(signal.shape, dtype=bool)
    pos[:, :k] = False
    pos[:, k:] = signal[:, : t_len - k] if k else signal
    if ctx.carry_rows.shape[0]:
        held = pos[:, ctx.carry_src, ctx.carry_cols] & ctx.carry_src_ok
        pos[:, ctx.carry_rows, ctx.carry_cols] = held
    flips = pos[:, 1:] != pos[:, :-1]
    # flat indices are much cheaper than a 3-d nonzero; unravel by hand
    f = xp.flatnonzero(flips)
    per_combo = (t_len - 1) * a_len
    c_idx, rest = f // per_combo, f % per_combo
    cell = rest + a_len                     # (row, asset) of the flip in a (T, A) array
    a_idx = cell % a_len
    entering = pos.reshape(-1)[c_idx * (t_len * a_len) + cell]
    flat = c_idx * a_len + a_idx
    size = n_combo * a_len
    # entering a run subtracts its log entry price, leaving it adds its log exit price
    lp = ctx.log_exec.reshape(-1)[cell]
    growth = xp.bincount(flat, weights=xp.where(entering, -lp, lp), minlength=size)
    n_in = xp.bincount(flat, weights=entering.astype(xp.float64), minlength=size)
    n_flips = xp.bincount(flat, minlength=size).astype(xp.float64)
    growth = growth.reshape(n_combo, a_len)
    n_in = n_in.reshape(n_combo, a_len)
    n_out = n_flips.reshape(n_combo, a_len) - n_in
    first = pos[:, 0].astype(xp.float64)
    growth = growth - first * ctx.log_exec[0]
    n_in = n_in + first
    last = pos[:, -1].astype(xp.float64)
    growth = growth + last * ctx.log_final
    forced = last * ctx.delisted
    n_out = n_out + forced
    growth = growth + n_in * ctx.log_in + n_out * ctx.log_out
    return growth, n_in, n_out


# --------------------------------------------------------------------------------------------
# the portfolio engine
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CostModel:
    """Trading frictions.

    ``commission``: fraction of traded notional (``cost_bps / 1e4``), scalar or per asset.
    ``slippage``: fixed fraction the execution price moves against the trade.
    ``impact_k``: square-root impact coefficient: the price moves by
    ``impact_k * sigma * sqrt(shares / ADV)`` against the trade (``sigma`` and ``ADV`` from
    :class:`SimInputs`, measured on rows strictly before the trade). 0 disables it.
    ``participation``: at most this fraction of the bar's volume trades per asset and bar; the
    rest of the order carries over to the next bar. ``None`` disables the cap.
    ``borrow``: annual borrow rate on short market value, scalar or per asset, charged per bar
    at ``rate / periods_per_year``.
    """

    commission: Any = 0.0
    slippage: float = 0.0
    impact_k: float = 0.0
    participation: float | None = None
    borrow: Any = 0.0
    periods_per_year: int = 252


def cost_rates(commission: Any, slippage: float) -> tuple[Any, Any]:
    """``(buy_rate, sell_rate)``: cost per unit of notional at the unslipped price
    (``commission`` a float or a per-asset array).

    A buy pays ``price * (1 + slippage)`` plus commission on that slipped notional; a sell
    receives ``price * (1 - slippage)`` less commission (vectorbt's convention).
    """
    return ((1 + slippage) * (1 + commission) - 1, 1 - (1 - slippage) * (1 - commission))


@dataclass(frozen=True)
class SimInputs:
    """Device arrays for :func:`simulate` (``T`` rows, ``A`` assets, ``C`` combos).

    ``exec_price[t]``: price trades at row ``t`` fill at (NaN: no trade possible).
    ``mark_price[t]``: forward-filled close used to value positions at the end of row ``t``.
    ``targets``: ``(C, T, A)`` target weights by *decision* row; read only on rebalance rows.
    ``rebalance``: ``(T,)`` bool, decision rows that set new targets.
    ``in_universe``: ``(T, A)`` bool; a held asset outside the universe at a decision row is
    exited even between rebalances.
    ``delist_row``: ``(A,)`` last row with a price for assets that stop trading before the
    end (``T`` otherwise); the position is closed at that row's close.
    ``volume``, ``adv``, ``sigma``: ``(T, A)`` for the participation cap and the impact model
    (``None`` when unused).
    """

    exec_price: Any
    mark_price: Any
    close: Any
    targets: Any
    rebalance: Any
    in_universe: Any
    delist_row: Any
    shift: int
    start: int = 0
    volume: Any = None
    adv: Any = None
    sigma: Any = None


#: one row's fills: (row, asset indices, shares, prices, commissions, slippage, reason codes);
#: every element after the row is an ``(n,)`` numpy array
Fills = tuple[int, IntArray, FloatArray, FloatArray, FloatArray, FloatArray,
              npt.NDArray[np.int8]]

#: reason codes in :attr:`SimOutput.fills`
REASONS = ("rebalance", "carry", "universe_exit", "delisted")


@dataclass
class SimOutput:
    """Per-row records of a simulation, as arrays of the backend (``(C, T)`` unless noted)."""

    nav: Any
    commission: Any
    slippage: Any
    borrow: Any
    traded: Any               # gross traded notional per row
    weights: Any = None       # (C, T, A) end-of-row holdings / NAV, when recorded
    fills: list[Fills] | None = None   # combo 0's fills, one entry per row that traded




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
    """
    if impact is None:
        v = v_pre
        buying = None
        for _ in range(6):
            x = (w * v[:, None] - held) * tradable
            now = x > 0
            if buying is not None and bool(xp.all(now == buying)):
                return v
            buying = now
            rate = xp.where(now, buy_rate, -sell_rate) * tradable  # cost = rate * trade value
            v = (v_pre + (rate * held).sum(axis=1)) / (1.0 + (rate * w).sum(axis=1))
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


def simulate(inp: SimInputs, costs: CostModel, *, initial_nav: float = 1.0,
             xp: ModuleType = np, record_weights: bool = False,
             record_fills: bool = False) -> SimOutput:
    """Trade target weights bar by bar; vectorized over combos ``C`` and assets ``A``.

    Each row ``t`` (from ``inp.start``) is one bar:

    1. Orders decided at row ``d = t - shift`` execute at ``exec_price[t]``: on a rebalance row,
       every asset's order is ``target weight * post-trade NAV / price - held shares`` (the NAV
       net of this trade's own costs, see :func:`_solve_post_trade_nav`); otherwise only held
       assets outside the universe get an exit order, and earlier unfilled remainders carry on.
       A cell without a tradable price does not trade; its order waits. The participation cap
       limits each fill to ``participation * volume``; the remainder waits for the next bar.
       Orders worth less than 1e-10 of the NAV are float residue and are dropped.
    2. A delisted asset (last price at this row) still held is sold at this row's close.
    3. Borrow is charged on short market value.
    4. NAV is cash plus shares at ``mark_price`` (the last known close).

    NaN policy: NaN targets mean weight 0; NaN prices never trade; valuation uses the last
    known price. Everything that does not depend on the path (tradability, valuation prices,
    caps, impact coefficients) is computed for all rows before the loop.
    """
    targets = inp.targets
    n_combo, t_len, a_len = targets.shape
    commission = xp.asarray(costs.commission, dtype=xp.float64)
    slip = float(costs.slippage)
    buy_rate, sell_rate = cost_rates(commission, slip)
    borrow = xp.asarray(costs.borrow, dtype=xp.float64) / costs.periods_per_year
    has_borrow = bool(xp.any(borrow != 0))
    rebalance = np.asarray(_host(inp.rebalance), dtype=bool)
    delist_host = np.asarray(_host(inp.delist_row))
    delist_rows = {int(r) for r in delist_host if r < t_len}

    # -- path-independent arrays, (T, A) -------------------------------------------------------
    rows = xp.arange(t_len)[:, None]
    price = inp.exec_price
    tradable_all = xp.isfinite(price) & (price > 0) & (rows <= xp.asarray(delist_host)[None, :])
    prev_mark = xp.full((t_len, a_len), xp.nan)
    prev_mark[1:] = inp.mark_price[:-1]
    value_all = xp.where(tradable_all, price, prev_mark)
    value_all = xp.where(xp.isfinite(value_all), value_all, 0.0)
    safe_all = xp.where(tradable_all, price, 1.0)
    tradable_f = tradable_all.astype(xp.float64)
    mark_all = xp.where(xp.isfinite(inp.mark_price), inp.mark_price, 0.0)
    out_all = ~inp.in_universe
    weights_all = xp.where(inp.in_universe[None] & xp.isfinite(targets), targets, 0.0)
    out_rows = np.asarray(_host(out_all.any(axis=1)))
    cap_all = None
    if costs.participation is not None and inp.volume is not None:
        cap_all = costs.participation * xp.nan_to_num(inp.volume, nan=0.0)
    impact_all = None
    if costs.impact_k > 0 and inp.adv is not None and inp.sigma is not None:
        adv_value = inp.adv * safe_all
        impact_all = costs.impact_k * inp.sigma * xp.sqrt(
            xp.where(adv_value > 0, 1.0 / xp.where(adv_value > 0, adv_value, 1.0), 0.0))
        impact_all = xp.where(xp.isfinite(impact_all), impact_all, 0.0)

    shares = xp.zeros((n_combo, a_len))
    cash = xp.full((n_combo,), float(initial_nav))
    pending = xp.zeros((n_combo, a_len))
    pending_reason = xp.zeros((n_combo, a_len), dtype=xp.int8)
    nav = xp.full((n_combo, t_len), float(initial_nav))
    comm_rec = xp.zeros((n_combo, t_len))
    slip_rec = xp.zeros((n_combo, t_len))
    borrow_rec = xp.zeros((n_combo, t_len))
    traded_rec = xp.zeros((n_combo, t_len))
    weights = xp.zeros((n_combo, t_len, a_len)) if record_weights else None
    fills: list[Fills] | None = [] if record_fills else None
    any_pending = False

    for t in range(inp.start, t_len):
        d = t - inp.shift
        if d >= inp.start:
            value_px = value_all[t]
            if rebalance[d]:
                w = weights_all[:, d]
                held = shares * value_px
                v_pre = cash + held.sum(axis=1)
                impact = None if impact_all is None else impact_all[t]
                v_post = _solve_post_trade_nav(xp, v_pre, w, held, tradable_f[t], buy_rate,
                                               sell_rate, commission, slip, impact)
                desired = w * v_post[:, None] / xp.where(value_px > 0, value_px, 1.0)
                pending = xp.where(value_px > 0, desired, shares) - shares
                if fills is not None:
                    pending_reason = xp.zeros_like(pending_reason)
                any_pending = True
            if out_rows[d]:
                out = out_all[d] & (shares != 0)
                pending = xp.where(out, -shares, pending)
                if fills is not None:
                    pending_reason = xp.where(out, 2, pending_reason).astype(xp.int8)
                any_pending = True
            if any_pending:
                nav_pre = cash + (shares * value_px).sum(axis=1)
                dust = xp.abs(pending * value_px) <= 1e-10 * xp.abs(nav_pre)[:, None]
                pending = xp.where(dust, 0.0, pending)
                any_pending = bool(xp.any(pending != 0))
            if any_pending:
                px = safe_all[t]
                order = pending * tradable_f[t]
                if cap_all is not None:
                    order = xp.clip(order, -cap_all[t], cap_all[t])
                notional = xp.abs(order) * px
                if impact_all is None:
                    slip_cost = notional * slip
                else:
                    slip_cost = notional * (slip + impact_all[t] * xp.sqrt(notional))
                comm = (notional + xp.where(order > 0, slip_cost, -slip_cost)) * commission
                slip_sum = slip_cost.sum(axis=1)
                comm_sum = comm.sum(axis=1)
                cash = cash - (order * px).sum(axis=1) - slip_sum - comm_sum
                shares = shares + order
                pending = pending - order
                any_pending = bool(xp.any(pending != 0))
                comm_rec[:, t] += comm_sum
                slip_rec[:, t] += slip_sum
                traded_rec[:, t] += notional.sum(axis=1)
                if fills is not None:
                    reason = xp.where(pending_reason == 0,
                                      0 if rebalance[d] else 1, pending_reason)
                    _record(fills, t, order[0], px, comm[0], slip_cost[0], reason[0])
                    pending_reason = xp.where(pending != 0, xp.maximum(pending_reason, 1),
                                              0).astype(xp.int8)
        if t in delist_rows:
            gone = np.flatnonzero(delist_host == t)
            gone_d = xp.asarray(gone)
            px_g = inp.close[t][gone_d]
            qty = -shares[:, gone_d]
            notional = xp.abs(qty) * px_g
            slip_cost = notional * slip
            comm_vec = commission if commission.ndim == 0 else commission[gone_d]
            comm = (notional + xp.where(qty > 0, slip_cost, -slip_cost)) * comm_vec
            cash = cash - (qty * px_g).sum(axis=1) - slip_cost.sum(axis=1) - comm.sum(axis=1)
            comm_rec[:, t] += comm.sum(axis=1)
            slip_rec[:, t] += slip_cost.sum(axis=1)
            traded_rec[:, t] += notional.sum(axis=1)
            if fills is not None:
                qty_all = xp.zeros((a_len,))
                qty_all[gone_d] = qty[0]
                px_all, comm_all, slip_all = (xp.zeros((a_len,)) for _ in range(3))
                px_all[gone_d], comm_all[gone_d], slip_all[gone_d] = px_g, comm[0], slip_cost[0]
                _record(fills, t, qty_all, px_all, comm_all, slip_all,
                        xp.full((a_len,), 3, dtype=xp.int8))
            shares[:, gone_d] = 0.0
            pending[:, gone_d] = 0.0
        mark_px = mark_all[t]
        if has_borrow:
            charge = ((xp.maximum(-shares, 0.0) * mark_px) * borrow).sum(axis=1)
            cash = cash - charge
            borrow_rec[:, t] = charge
        held_value = shares * mark_px
        nav[:, t] = cash + held_value.sum(axis=1)
        if weights is not None:
            weights[:, t] = held_value / xp.where(nav[:, t] != 0, nav[:, t], 1.0)[:, None]
    return SimOutput(nav=nav, commission=comm_rec, slippage=slip_rec, borrow=borrow_rec,
                     traded=traded_rec, weights=weights, fills=fills)


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
