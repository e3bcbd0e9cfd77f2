"""The portfolio simulation: its inputs, its outputs, its trading rules, and two engines.

:func:`simulate` trades target weights bar by bar with commissions, slippage, participation caps
with carry-over, borrow, universe exits and delistings. It knows nothing about dates, symbols or
factors: inputs are ``(T, A)`` arrays (dates x assets) with a leading combination axis ``C`` for
the targets; NaN means "no price". Two engines implement it with the same semantics:

``"compiled"`` (:mod:`mts1b_GPUbacktester.sim_compiled`)
    one loop over bars, combinations and assets compiled by numba in nopython mode and cached on
    disk. The CPU engine: it takes no Python step per bar and allocates nothing panel-sized but
    its outputs. numba is imported on the first call, never by ``import mts1b_GPUbacktester``.
``"reference"`` (:mod:`mts1b_GPUbacktester.sim_reference`)
    a loop over bars vectorized over combinations and assets, written once against an array
    namespace ``xp`` (numpy or cupy). It is the cupy (GPU) path and the reference the compiled
    engine is tested against.

Both sum with numpy's pairwise order, so they agree to the last bit in most runs and to a few
units in the last place otherwise (see ``tests/test_sim_compiled.py``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from mts1b_GPUbacktester.errors import BacktestConfigError
from mts1b_GPUbacktester.kernels import ffill_rows

__all__ = [
    "ENGINES",
    "REASONS",
    "TRADE_ON",
    "CostModel",
    "FillLedger",
    "SimInputs",
    "SimOutput",
    "TradeOn",
    "check_trade_rule",
    "dividend_rows",
    "simulate",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

#: reason codes of :class:`FillLedger` (``reason`` indexes this tuple)
REASONS = ("rebalance", "carry", "universe_exit", "delisted")

TradeOn = Literal["schedule", "signal_change"]
#: when an asset is traded on a rebalance row (see :func:`simulate`)
TRADE_ON: tuple[str, ...] = ("schedule", "signal_change")

#: the engines :func:`simulate` can run
ENGINES: tuple[str, ...] = ("compiled", "reference")


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
    ``periods_per_year``: bars per year of the panel's calendar (252 exchange, 260 ``24/5``,
    365 ``24/7``; :meth:`RunSpec.periods_per_year_for
    <mts1b_GPUbacktester.spec.RunSpec.periods_per_year_for>` decides it for a run).
    ``delisting_costs``: a held asset that delists is sold at its last close paying the
    commission and slippage (True: a forced sale, the default) or paid out at that close with
    no cost (False: a corporate action, as zipline's auto-close and the paper venue do).
    """

    commission: Any = 0.0
    slippage: float = 0.0
    impact_k: float = 0.0
    participation: float | None = None
    borrow: Any = 0.0
    periods_per_year: float = 252
    delisting_costs: bool = True


@dataclass(frozen=True)
class SimInputs:
    """Arrays for :func:`simulate` (``T`` rows, ``A`` assets, ``C`` combos), on the engine's
    device (numpy for the compiled engine; numpy or cupy for the reference).

    ``exec_price[t]``: price trades at row ``t`` fill at (NaN: no trade possible).
    ``mark_price[t]``: forward-filled close used to value positions at the end of row ``t``;
    ``None``: the last finite positive ``close`` at or before ``t`` (what
    :func:`~mts1b_GPUbacktester.data.market_arrays` would give), derived without a panel-sized
    array by the compiled engine.
    ``close``: the closes, for delisting sales (and for the marks when ``mark_price`` is None).
    ``targets``: ``(C, T, A)`` target weights by *decision* row; read only on rebalance rows.
    ``rebalance``: ``(T,)`` bool, decision rows that read new targets.
    ``in_universe``: ``(T, A)`` bool; a held asset outside the universe at a decision row is
    exited even between rebalances.
    ``delist_row``: ``(A,)`` last row with a price for assets that stop trading before the
    end (``T`` otherwise); the position is closed at that row's close.
    ``shift``: rows between a decision and its execution (0 for close fills, 1 otherwise).
    ``start``: the first row that decides.
    ``volume``, ``adv``, ``sigma``: ``(T, A)`` for the participation cap and the impact model
    (``None`` when unused).
    ``dividend``: ``(T, A)`` cash paid per share held at the close of ``t - 1``, on its ex-date
    row ``t`` (NaN as 0), credited to cash before that row trades; ``None``: no cash dividends
    (the prices then carry them, back-adjusted). Give it only with prices that are not adjusted
    for dividends, or they count twice. Why it exists: a broker pays a dividend in cash, and a
    back-adjusted price reinvests it in the asset instead, so a book that holds the cash until
    its next rebalance (the paper path, issue #20) differs from one that does not.
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
    dividend: Any = None


class FillLedger:
    """Every fill of combination 0, in the order they happened: by row; within a row the
    order fills (by asset) before the delisting sales (by asset).

    Columns (each ``(n,)``, numpy, built on first access): ``row`` (simulation row, less
    ``origin``), ``asset`` (column), ``shares`` (signed), ``price``, ``commission``,
    ``slippage``, ``reason`` (index into :data:`REASONS`).

    Why it is stored this way: a daily rebalance of a drifting book fills most cells of the
    panel, so the ledger can be the largest record of a run. It keeps 20 bytes a fill (28 with
    a slippage model), in the parts the engine wrote them in: one integer ``key`` holds the
    row, the asset and the reason (``(row * A + asset) * 4 + reason``, int32 while that fits);
    the price is not stored because it is, by the engine's rules, ``exec_price[row, asset]``
    for an order fill and ``close[row, asset]`` for a delisting sale (the ledger holds
    references to those two input arrays, not copies); without a slippage model every fill's
    slippage is 0.
    """

    def __init__(self, parts: Sequence[tuple[Any, ...]], exec_price: Any, close: Any, *,
                 n_assets: int, has_slippage: bool, origin: int = 0) -> None:
        """``parts``: ``(key, shares, commission, slippage)`` tuples of ``(n_k,)`` numpy
        arrays (``slippage`` is ignored unless ``has_slippage``); ``exec_price``/``close``:
        the run's ``(T, A)`` arrays (host or device)."""
        self._parts = tuple(parts)
        self._exec_price = exec_price
        self._close = close
        self._n_assets = int(n_assets)
        self._has_slippage = has_slippage
        self.origin = int(origin)

    def __len__(self) -> int:
        return sum(int(p[0].shape[0]) for p in self._parts)

    def shifted(self, origin: int) -> FillLedger:
        """The same fills with rows counted from simulation row ``origin`` (no copy)."""
        return FillLedger(self._parts, self._exec_price, self._close, n_assets=self._n_assets,
                          has_slippage=self._has_slippage, origin=self.origin + origin)

    def _column(self, k: int, dtype: Any) -> npt.NDArray[Any]:
        if not self._parts:
            return np.zeros(0, dtype=dtype)
        if len(self._parts) == 1:
            return np.asarray(self._parts[0][k], dtype=dtype)
        return np.concatenate([np.asarray(p[k], dtype=dtype) for p in self._parts])

    @functools.cached_property
    def _cell(self) -> npt.NDArray[np.int64]:
        return self._column(0, np.int64) >> 2

    @functools.cached_property
    def _sim_row(self) -> npt.NDArray[np.intp]:
        return (self._cell // max(self._n_assets, 1)).astype(np.intp)

    @functools.cached_property
    def row(self) -> npt.NDArray[np.intp]:
        return self._sim_row - self.origin if self.origin else self._sim_row

    @functools.cached_property
    def asset(self) -> npt.NDArray[np.intp]:
        return (self._cell % max(self._n_assets, 1)).astype(np.intp)

    @functools.cached_property
    def reason(self) -> npt.NDArray[np.int8]:
        return (self._column(0, np.int64) & 3).astype(np.int8)

    @functools.cached_property
    def shares(self) -> FloatArray:
        return self._column(1, np.float64)

    @functools.cached_property
    def commission(self) -> FloatArray:
        return self._column(2, np.float64)

    @functools.cached_property
    def slippage(self) -> FloatArray:
        if not self._has_slippage:
            return np.zeros(len(self))
        return self._column(3, np.float64)

    @functools.cached_property
    def price(self) -> FloatArray:
        rows, cols = self._sim_row, self.asset
        out: FloatArray = np.where(self.reason == REASONS.index("delisted"),
                                   _gather(self._close, rows, cols),
                                   _gather(self._exec_price, rows, cols))
        return out


def fill_key_dtype(t_len: int, a_len: int) -> type[np.signedinteger[Any]]:
    """The integer type of :class:`FillLedger` keys for a ``(T, A)`` run: int32 while
    ``T * A * 4`` fits in it, else int64."""
    return np.int32 if t_len * a_len * 4 < 2**31 else np.int64


def _gather(values: Any, rows: npt.NDArray[np.intp], cols: npt.NDArray[np.intp]) -> FloatArray:
    """``values[rows, cols]`` as a host array (``values`` numpy, or a device array: the index
    arrays go to the device and only the ``(n,)`` result comes back)."""
    got = values[rows, cols]
    return np.asarray(got.get() if hasattr(got, "get") else got, dtype=np.float64)


@dataclass
class SimOutput:
    """Per-row records of a simulation, as arrays of the backend (``(C, T)`` unless noted).

    Rows before ``start`` hold ``initial_nav`` and zeros.
    """

    nav: Any
    commission: Any
    slippage: Any
    borrow: Any
    traded: Any               # gross traded notional per row
    weights: Any = None       # (C, T, A) end-of-row holdings / NAV, when recorded
    fills: FillLedger | None = None   # combo 0's fills, when recorded


def check_trade_rule(trade_on: Any, band: Any) -> tuple[str, float]:
    """``(trade_on, band)`` validated; :class:`BacktestConfigError` naming the argument and
    its value otherwise. ``band`` is an absolute weight drift: a finite number ``>= 0``."""
    if not isinstance(trade_on, str) or trade_on not in TRADE_ON:
        raise BacktestConfigError(f"trade_on must be one of {TRADE_ON}; got {trade_on!r}",
                                  field="trade_on", value=repr(trade_on))
    if isinstance(band, bool) or not isinstance(band, int | float | np.integer | np.floating):
        raise BacktestConfigError(f"band must be a number (an absolute weight drift, e.g. "
                                  f"0.02); got {band!r}", field="band", value=repr(band))
    if not math.isfinite(float(band)) or band < 0:
        raise BacktestConfigError(f"band must be a finite weight drift >= 0; got {band!r}",
                                  field="band", value=float(band))
    return trade_on, float(band)


def simulate(inp: SimInputs, costs: CostModel, *, initial_nav: float = 1.0,
             xp: ModuleType = np, record_weights: bool = False, record_fills: bool = False,
             trade_on: str = "schedule", band: float = 0.0,
             engine: str | None = None) -> SimOutput:
    """Trade target weights bar by bar; combinations ``C`` are independent books.

    Each row ``t`` (from ``inp.start``) is one bar:

    0. Cash dividends (``inp.dividend``) of the shares held are credited to cash.
    1. Orders decided at row ``d = t - shift`` execute at ``exec_price[t]``. On a rebalance row
       the assets chosen by the trade rule (below) are ordered to
       ``target weight * post-trade NAV / price - held shares`` (the NAV net of this trade's
       own costs: ``V = V_pre - sum_i cost_i(w_i V - held_i)`` over the chosen assets, solved
       exactly without impact and by fixed-point iteration with it); the other assets keep
       what they hold and any order still pending. Between rebalances only held assets outside
       the universe get an exit order, and earlier unfilled remainders carry on. A cell
       without a tradable price does not trade; its order waits. The participation cap limits
       each fill to ``participation * volume``; the remainder waits for the next bar. Orders
       worth less than 1e-10 of the NAV are float residue and are dropped.
    2. A delisted asset (last price at this row) still held is sold at this row's close.
    3. Borrow is charged on short market value.
    4. NAV is cash plus shares at ``mark_price`` (the last known close).

    Trade rule, evaluated on rebalance rows (``rebal`` dates):

    ``trade_on="schedule"``, ``band=0`` (the default)
        every asset is traded back to its target weight.
    ``trade_on="schedule"``, ``band > 0``
        an asset is traded to its target only when its weight has drifted more than ``band``
        from it: ``|held_i - w_i V_pre| > band * |V_pre|``.
    ``trade_on="signal_change"``
        an asset is traded only when its target differs from the target it was last traded
        to (initially 0; an exit from the universe resets it to 0), and otherwise drifts: a
        signal-hold book, as backtrader strategies and vectorbt's ``from_signals`` trade.
        ``band > 0`` also trades an asset whose weight drifted more than ``band``; ``band=0``
        adds nothing.

    NaN policy: NaN targets mean weight 0; NaN prices never trade; valuation uses the last
    known price.

    ``engine``: ``"compiled"`` (numba) or ``"reference"``; ``None`` picks the compiled engine
    for numpy arrays and the reference for any other ``xp`` (cupy).
    """
    trade_on, band = check_trade_rule(trade_on, band)
    if engine is None:
        engine = "compiled" if xp is np else "reference"
    if engine not in ENGINES:
        raise BacktestConfigError(f"engine must be one of {ENGINES}; got {engine!r}",
                                  field="engine", value=repr(engine))
    if engine == "compiled":
        if xp is not np:
            raise BacktestConfigError("the compiled engine runs on numpy arrays; use "
                                      "engine='reference' with cupy", field="engine",
                                      value=engine)
        from mts1b_GPUbacktester.sim_compiled import simulate_compiled  # imports numba

        return simulate_compiled(inp, costs, initial_nav=initial_nav,
                                 record_weights=record_weights, record_fills=record_fills,
                                 trade_on=trade_on, band=band)
    from mts1b_GPUbacktester.sim_reference import simulate_reference

    return simulate_reference(inp, costs, initial_nav=initial_nav, xp=xp,
                              record_weights=record_weights, record_fills=record_fills,
                              trade_on=trade_on, band=band)


def dividend_rows(dividend: Any, t_len: int, a_len: int
                  ) -> tuple[FloatArray | None, npt.NDArray[np.bool_]]:
    """``(dividend per share with NaN as 0, (T,) rows where some asset pays)`` on the host;
    ``(None, no paying row)`` for ``None`` (no panel-sized array for a run without them)."""
    if dividend is None:
        return None, np.zeros(t_len, dtype=bool)
    host = dividend.get() if hasattr(dividend, "get") else dividend
    div: FloatArray = np.nan_to_num(np.asarray(host, dtype=np.float64), nan=0.0)
    if div.shape != (t_len, a_len):
        raise BacktestConfigError(f"dividend has shape {div.shape}; the run is "
                                  f"{(t_len, a_len)}", field="dividend", value=div.shape)
    return div, (div != 0).any(axis=1)


def forward_filled_close(close: Any) -> FloatArray:
    """``(T, A)`` last finite positive close at or before each row (NaN before the first).

    Host numpy; two panel-sized arrays at the peak (the row index and the result).
    """
    close = np.asarray(close, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(close) & (close > 0)
    last = ffill_rows(valid)
    del valid
    missing = last < 0
    np.maximum(last, 0, out=last)
    mark: FloatArray = np.take_along_axis(close, last, axis=0)
    del last
    mark[missing] = np.nan
    return mark
