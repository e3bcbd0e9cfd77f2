"""Compute kernels, written once against an array namespace ``xp`` (numpy or cupy).

Nothing here knows about dates, symbols, factors or pandas: inputs are ``(T, A)`` float64
arrays (dates x assets), optionally with a leading combo axis ``C``; NaN means "no price".
The dispatch layer (:mod:`mts1b_GPUbacktester.backend`) picks ``xp``; the engine and the ladder
prepare the inputs. Every function here uses only operations numpy and cupy share.

Kernels
-------
``rolling_mean_stack``
    Simple moving averages for many window lengths from one prefix sum (quantkit's
    ``rolling_means``, the one home of rolling windows): O(T*A) per window instead of
    O(T*A*window).
``per_asset_log_growth``
    Closed-form all-in / all-out backtests of one boolean position matrix per combo, one
    independent account per asset (vectorbt's column semantics): the log growth of each
    account from its entry/exit transitions alone.
``cost_rates``
    Buy and sell cost rates from a commission and a fixed slippage (vectorbt's convention).

The portfolio engine (a loop over bars) is :mod:`mts1b_GPUbacktester.sim`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
from mts1b_quantkit.factors.rolling import rolling_means

__all__ = [
    "PerAssetContext",
    "cost_rates",
    "ffill_rows",
    "per_asset_context",
    "per_asset_log_growth",
    "rolling_mean_stack",
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
# rolling means: quantkit's primitive, with the ladder's NaN convention
# --------------------------------------------------------------------------------------------

def rolling_mean_stack(x: Any, windows: list[int], *, lag: int = 0,
                       min_periods: int | None = None, xp: ModuleType = np,
                       compensated: bool = False) -> Any:
    """Simple moving averages of ``x`` ``(T, A)`` for every window: ``(len(windows), T, A)``.

    The value at row ``t`` for window ``w`` is the mean of rows ``t-lag-w+1 .. t-lag`` (rows
    before 0 are simply absent). NaN policy: NaN when any value in the window is missing (NaN or
    +/-inf), or when the window holds fewer than ``min_periods`` rows (default: ``w``, i.e. a
    full window; a ``min_periods`` above ``w`` makes that window NaN throughout).

    * ``lag=0, min_periods=None`` is pandas' ``rolling(w).mean()`` and vectorbt's ``MA``.
    * ``lag=1, min_periods=1`` is the migration guide's ``close[max(0, t-w):t].mean()``: the
      ``w`` bars *before* ``t``, partial windows at the start, NaN at ``t = 0``.

    This is :func:`mts1b_quantkit.factors.rolling.rolling_means` with ``skipna=False`` (its one
    home): one prefix sum of ``x`` for all the windows, then O(T*A) per window whatever its
    length. By default the prefix is a plain running sum, whose means are vectorbt's ``MA`` and
    this kernel's earlier ones bit for bit: SMA-crossover decisions at ties (two averages equal
    to the last bit, frequent with prices in cents) are then theirs. ``compensated=True`` carries
    the running sum's rounding error as well, for means within a few ulp of the exact ones on
    series of any length. ``x`` is moved into ``xp`` (numpy, or cupy for device arrays) first.
    """
    bad = [w for w in windows if int(w) < 1]
    if bad:
        raise ValueError(f"window lengths must be >= 1; got {bad[0]}")
    return rolling_means(xp.asarray(x), windows, lag=lag, min_periods=min_periods, skipna=False,
                         compensated=compensated)


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
# trading costs
# --------------------------------------------------------------------------------------------

def cost_rates(commission: Any, slippage: float) -> tuple[Any, Any]:
    """``(buy_rate, sell_rate)``: cost per unit of notional at the unslipped price
    (``commission`` a float or a per-asset array).

    A buy pays ``price * (1 + slippage)`` plus commission on that slipped notional; a sell
    receives ``price * (1 - slippage)`` less commission (vectorbt's convention).
    """
    return ((1 + slippage) * (1 + commission) - 1, 1 - (1 - slippage) * (1 - commission))
