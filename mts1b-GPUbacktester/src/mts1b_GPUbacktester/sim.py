"""The portfolio engine: a time loop over bars, vectorized over combos and assets.

:func:`simulate` trades target weights with commissions, slippage, participation caps with
carry-over, borrow, universe exits and delistings. Like :mod:`mts1b_GPUbacktester.kernels` it
is written once against an array namespace ``xp`` (numpy or cupy) and knows nothing about
dates, symbols or factors: inputs are ``(T, A)`` arrays with a leading combo axis ``C`` for the
targets; NaN means "no price".
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from mts1b_GPUbacktester.kernels import cost_rates

__all__ = ["REASONS", "CostModel", "Fills", "SimInputs", "SimOutput", "simulate"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]


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
