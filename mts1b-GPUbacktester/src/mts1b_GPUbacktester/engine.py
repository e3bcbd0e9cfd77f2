"""``run_single``: one backtest of a factor (or of given target weights) on a universe.

The pipeline: universe -> panel (datalake) -> factor scores (quantkit ``evaluate``) -> target
weights (quantkit ``sizing.size``) -> the engine (:func:`mts1b_GPUbacktester.sim.simulate`:
the compiled CPU engine by default, the reference engine on numpy or cupy when asked for) ->
:class:`~mts1b_GPUbacktester.result.BacktestResult`.

How the run trades is one :class:`~mts1b_GPUbacktester.spec.RunSpec`: ``run_single`` and
``run_weights`` build it from their keyword arguments (the migration guide's
``rebal=..., sizing=..., cost_bps=...``), or take ``spec=`` (keyword arguments then override its
fields). A keyword that is neither an argument nor a setting is a
:class:`~mts1b_GPUbacktester.errors.BacktestConfigError` listing the accepted ones. The result
keeps the spec (``result.spec``) and the periods per year its metrics annualise with.

Trading rule (``trade_on=``, ``band=``), evaluated on the ``rebal`` dates:

``trade_on="schedule"`` (default)
    every asset is traded back to its target weight on every rebalance date; with ``band > 0``
    only the assets whose weight drifted more than ``band`` (absolute) from the target.
``trade_on="signal_change"``
    an asset is traded only when its target changes, and otherwise drifts (backtrader's and
    vectorbt ``from_signals``' position holding); ``band > 0`` also trades an asset that
    drifted more than ``band``.

Fill conventions (``fill=``):

``"next_open"`` (default)
    the signal uses data up to the close of ``t``; the trade fills at the open of ``t + 1``
    (backtrader's market order).
``"close"``
    the trade fills at the close of ``t`` itself (vectorbt's ``from_signals`` default; opt-in,
    because it assumes you can trade at the price your signal just used).
``"next_close"``
    the trade fills at the close of ``t + 1``.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Unpack

import numpy as np
import numpy.typing as npt
from mts1b_foundation import UniversePanel, to_day
from mts1b_platform.logging import get_logger

from mts1b_GPUbacktester.backend import Backend, resolve_backend
from mts1b_GPUbacktester.data import MarketArrays, market_arrays, resolve_universe, universe_label
from mts1b_GPUbacktester.errors import BacktestConfigError
from mts1b_GPUbacktester.result import BacktestResult
from mts1b_GPUbacktester.schedule import rebalance_rows
from mts1b_GPUbacktester.sim import (
    CostModel,
    FillLedger,
    SimInputs,
    SimOutput,
    simulate,
)
from mts1b_GPUbacktester.spec import DEFAULT_SIZING, RunSettings, RunSpec

__all__ = [
    "DEFAULT_SIZING",
    "SlippageSpec",
    "compute_targets",
    "cost_model",
    "run_single",
    "run_weights",
    "size_targets",
]

FloatArray = npt.NDArray[np.float64]
_log = get_logger(__name__)
SlippageSpec = float | Mapping[str, Any] | None

def _is_pandas(obj: Any, kind: str) -> bool:
    """Whether ``obj`` is a pandas ``kind`` (``"Series"``, ``"DataFrame"``), without importing
    pandas: an object can only be a pandas one if pandas is already loaded, and a backtest on
    numpy arrays should not pay the half second pandas takes to import."""
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(obj, getattr(pd, kind))


def cost_model(symbols: Sequence[str], *, cost_bps: float | Mapping[str, float] = 10.0,
               slippage: SlippageSpec = None, participation: float | None = None,
               borrow_rate: float | Mapping[str, float] | None = None,
               periods_per_year: float = 252.0) -> tuple[CostModel, int | None]:
    """The engine's :class:`CostModel` from cost settings, and the impact window (or None):
    :meth:`RunSpec.cost_model <mts1b_GPUbacktester.spec.RunSpec.cost_model>` of a spec with
    these settings (validated there; the one place bps become rates)."""
    spec = RunSpec(cost_bps=cost_bps, slippage=slippage, participation=participation,
                   borrow_rate=borrow_rate)
    return spec.cost_model(symbols, periods_per_year=periods_per_year)


def compute_targets(panel: UniversePanel, factor: Callable[..., Any] | str,
                    params: Mapping[str, Any] | None, sizing: Mapping[str, Any] | None,
                    returns: FloatArray, *, lookahead_check: bool = False) -> FloatArray:
    """``(T, A)`` target weights: the factor's scores sized by quantkit, zero outside the
    universe. With ``lookahead_check`` the factor is first run through quantkit's
    ``check_lookahead`` and a factor that reads the future is refused."""
    return size_targets(panel, _factor_scores(panel, factor, params,
                                              lookahead_check=lookahead_check),
                        sizing, returns)


def _factor_scores(panel: UniversePanel, factor: Callable[..., Any] | str,
                   params: Mapping[str, Any] | None, *, lookahead_check: bool) -> Any:
    """The factor's scores on ``panel`` (quantkit ``evaluate``), after the optional
    look-ahead check."""
    from mts1b_quantkit.factors import check_lookahead, evaluate

    kwargs = dict(params or {})
    if lookahead_check:
        report = check_lookahead(factor, panel, **kwargs)
        if not report.ok:
            raise BacktestConfigError(f"look-ahead check failed: {report}", field="factor",
                                      value=str(report))
    return evaluate(factor, panel, **kwargs)


def size_targets(panel: UniversePanel, scores: Any, sizing: Mapping[str, Any] | None,
                 returns: FloatArray) -> FloatArray:
    """``(T, A)`` target weights from scores: quantkit's ``size``, NaN as 0, zero outside the
    universe. The one place scores become targets (``run_single`` and the ladders)."""
    from mts1b_quantkit.sizing import size

    spec = dict(DEFAULT_SIZING if sizing is None else sizing)
    weights = np.asarray(size(scores, spec, mask=panel.mask, returns=returns), dtype=np.float64)
    del scores  # the caller's reference may be the last: one (T, A) array less from here
    out: FloatArray = np.where(panel.mask, weights, 0.0)
    return np.nan_to_num(out, copy=False, nan=0.0)  # in place: one (T, A) array, not two


def _benchmark(benchmark: Any, panel: UniversePanel, market: MarketArrays, row0: int,
               store: Any) -> tuple[FloatArray | None, str | None]:
    """Daily benchmark returns over rows ``row0..``: a symbol of the panel (or one the
    datalake can load), a pandas Series of prices, or ``"equal_weight"`` (the default): the
    universe's daily-rebalanced equal-weight return."""
    dates = panel.dates[row0:]
    if benchmark is False:
        return None, None
    if benchmark is None or benchmark == "equal_weight":
        # the mean return of the assets in the universe each day (``market.returns`` is finite
        # everywhere); summed 64 rows at a time so no (T, A) temporary is made
        mask, rets = market.in_universe[row0:], market.returns[row0:]
        counts = mask.sum(axis=1)
        sums = np.empty(len(counts))
        for lo in range(0, len(counts), 64):
            sums[lo:lo + 64] = np.where(mask[lo:lo + 64], rets[lo:lo + 64], 0.0).sum(axis=1)
        with np.errstate(invalid="ignore"):
            ew = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
        return ew, "equal-weight universe"
    if isinstance(benchmark, str) and benchmark in panel.symbols:
        return market.returns[row0:, panel.column(benchmark)].copy(), benchmark
    if not (isinstance(benchmark, str) or _is_pandas(benchmark, "Series")):
        raise BacktestConfigError("benchmark must be None, False, 'equal_weight', a symbol or a "
                                  "pandas Series of prices", field="benchmark",
                                  value=repr(benchmark)[:200])
    import pandas as pd  # aligning a price series on the panel's dates (calendars differ)

    if isinstance(benchmark, str):
        from mts1b_datalake import build_panel

        other = build_panel([benchmark], dates[0].astype(dt.date) - dt.timedelta(days=10),
                            dates[-1].astype(dt.date), store=store)
        prices = pd.Series(np.asarray(other.close)[:, 0],
                           index=pd.DatetimeIndex(other.dates.astype("datetime64[ns]")))
        name = benchmark
    else:
        prices = benchmark.astype(float)
        prices.index = pd.DatetimeIndex(prices.index).tz_localize(None).normalize()
        name = str(benchmark.name or "benchmark")
    idx = pd.DatetimeIndex(dates.astype("datetime64[ns]"))
    aligned = prices.sort_index().reindex(idx.union(prices.index)).ffill().reindex(idx)
    before = prices[prices.index < idx[0]]
    first = before.iloc[-1] if len(before) else np.nan
    px = aligned.to_numpy()
    prev = np.concatenate([[first], px[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(np.isfinite(px) & np.isfinite(prev) & (prev != 0), px / prev - 1.0, 0.0)
    return r, name


#: ``run_weights``' own arguments (beside the settings of a RunSpec)
_RUN_WEIGHTS_ARGS = ("panel", "targets", "row0", "store", "config")
#: ``run_single``'s own arguments (beside the settings of a RunSpec)
_RUN_SINGLE_ARGS = ("factor", "params", "universe", "start", "end", "weights", "store")


def run_weights(panel: UniversePanel, targets: FloatArray, *, row0: int = 0,
                spec: RunSpec | None = None, store: Any = None,
                config: Mapping[str, Any] | None = None,
                **settings: Unpack[RunSettings]) -> BacktestResult:
    """Backtest given ``(T, A)`` target weights (one row per decision date) on ``panel``.

    This is :func:`run_single` without the factor and sizing steps; the settings mean the
    same (``spec=`` and/or keyword arguments: ``rebal``, ``fill``, ``cost_bps``,
    ``trade_on``...). Rows before ``row0`` are history only: trading starts at ``row0``.
    ``config``: extra entries for ``result.config``. NaN targets mean weight 0.
    """
    run = RunSpec.build(spec, settings, where="run_weights", also=_RUN_WEIGHTS_ARGS)
    targets = np.asarray(targets, dtype=np.float64)
    if targets.shape != panel.shape:
        raise BacktestConfigError(f"targets have shape {targets.shape}; the panel is "
                                  f"{panel.shape}", field="targets", value=targets.shape)
    ppy = run.periods_per_year_for(panel)
    costs, impact_window = run.cost_model(panel.symbols, periods_per_year=ppy[0])
    market = market_arrays(panel, run.fill, impact_window=impact_window)
    return _backtest(panel, targets, market, costs, run, row0=row0, store=store,
                     periods_per_year=ppy, config=dict(config or {}))


def _backtest(panel: UniversePanel, targets: FloatArray, market: MarketArrays,
              costs: CostModel, spec: RunSpec, *, row0: int, store: Any,
              periods_per_year: tuple[float, str], config: dict[str, Any],
              backend: Backend | None = None) -> BacktestResult:
    """Simulate ``targets`` under ``spec`` and assemble the :class:`BacktestResult`:
    ``result.config`` is the spec's settings as plain values, then ``config``;
    ``periods_per_year`` is ``(value, where it came from)``."""
    be = backend or resolve_backend(spec.backend, cells=panel.shape[0] * panel.shape[1])
    rebalance = rebalance_rows(panel.dates, spec.rebal, start=row0)
    out = _simulate(be, market, targets[None], rebalance, costs, row0, spec.initial_nav,
                    record_weights=True, record_fills=True, trade_on=spec.trade_on,
                    band=spec.band)
    _log.debug("backtest simulated", dates=panel.shape[0] - row0, assets=panel.shape[1],
               fill=market.fill, backend=be.name, backend_reason=be.reason,
               periods_per_year=periods_per_year[0])
    bench, bench_name = _benchmark(spec.benchmark, panel, market, row0, store)
    nav = be.to_numpy(out.nav)[0, row0:]
    # fill rows counted from the first trading day, like every other record
    if out.fills is None:  # pragma: no cover - _simulate was asked to record them
        raise RuntimeError("the engine returned no fill ledger")
    fills: FillLedger = out.fills.shifted(row0)
    return BacktestResult(
        dates=panel.dates[row0:], symbols=panel.symbols, nav=nav, initial_nav=spec.initial_nav,
        weights=be.to_numpy(out.weights)[0, row0:], target_weights=targets[row0:],
        asset_returns=market.returns[row0:], fills=fills,
        commission=be.to_numpy(out.commission)[0, row0:],
        slippage=be.to_numpy(out.slippage)[0, row0:],
        borrow=be.to_numpy(out.borrow)[0, row0:], traded=be.to_numpy(out.traded)[0, row0:],
        benchmark_returns=bench, benchmark_name=bench_name, backend=be.describe(),
        config={**spec.to_dict(), **config}, spec=spec, periods_per_year=periods_per_year[0],
        periods_per_year_source=periods_per_year[1], calendar=panel.calendar or spec.calendar,
    )


def _simulate(be: Backend, market: MarketArrays, targets: FloatArray,
              rebalance: npt.NDArray[np.bool_], costs: CostModel, row0: int,
              initial_nav: float, *, record_weights: bool, record_fills: bool,
              trade_on: str = "schedule", band: float = 0.0) -> SimOutput:
    """Run the backend's engine on a run's arrays: the compiled engine on the host arrays as
    they are (it derives the marks itself), or the reference engine on the backend's device.

    ``targets``: ``(C, T, A)``; ``rebalance``: ``(T,)`` decision rows (host)."""
    if be.compiled:
        inp = SimInputs(
            exec_price=market.exec_price, mark_price=None, close=market.close,
            targets=targets, rebalance=rebalance, in_universe=market.in_universe,
            delist_row=market.delist_row, shift=market.shift, start=row0,
            volume=market.volume, adv=market.adv, sigma=market.sigma, dividend=market.dividend)
        return simulate(inp, costs, initial_nav=initial_nav, record_weights=record_weights,
                        record_fills=record_fills, trade_on=trade_on, band=band,
                        engine="compiled")
    xp = be.xp
    inp = SimInputs(
        exec_price=be.asarray(market.exec_price), mark_price=be.asarray(market.mark_price),
        close=be.asarray(market.close), targets=be.asarray(targets), rebalance=rebalance,
        in_universe=be.asarray(market.in_universe), delist_row=market.delist_row,
        shift=market.shift, start=row0, volume=be.asarray(market.volume),
        adv=None if market.adv is None else be.asarray(market.adv),
        sigma=None if market.sigma is None else be.asarray(market.sigma),
        dividend=None if market.dividend is None else be.asarray(market.dividend),
    )
    device_costs = CostModel(
        commission=be.asarray(costs.commission), slippage=costs.slippage,
        impact_k=costs.impact_k, participation=costs.participation,
        borrow=be.asarray(costs.borrow), periods_per_year=costs.periods_per_year,
        delisting_costs=costs.delisting_costs)
    return simulate(inp, device_costs, initial_nav=initial_nav, xp=xp,
                    record_weights=record_weights, record_fills=record_fills,
                    trade_on=trade_on, band=band, engine="reference")


def run_single(factor: Callable[..., Any] | str | None = None,
               params: Mapping[str, Any] | None = None,
               universe: Any = None, start: Any = None, end: Any = None, *,
               weights: Any = None, store: Any = None, spec: RunSpec | None = None,
               **settings: Unpack[RunSettings]) -> BacktestResult:
    """Backtest one factor with one parameter set on one universe.

    Parameters
    ----------
    factor, params:
        a factor function or registered name (``mts1b_quantkit.factors.get("f_sma_cross")``)
        and its parameters. Alternatively ``weights=``: ``(T, A)`` target weights (array or
        DataFrame aligned with the panel; NaN means 0) and no factor.
    universe, start, end:
        anything ``mts1b_datalake.build_panel`` takes (a universe name such as
        ``"us-large-cap"``, a ``universe("us-large-cap", n=50)`` object, a list of symbols),
        or a :class:`~mts1b_foundation.UniversePanel`; trading runs from the first row
        ``>= start`` to ``end``. Factors see ``warmup_days`` of history before ``start``.
    store:
        the datalake store to load from (default: the default store).
    spec:
        a :class:`~mts1b_GPUbacktester.spec.RunSpec`; keyword settings below override its
        fields.

    Settings (keyword arguments, or the fields of ``spec``; see
    :class:`~mts1b_GPUbacktester.spec.RunSpec`):

    ``rebal``
        ``"daily" | "weekly" | "monthly"`` or a sequence of rebalance dates: when targets are
        read.
    ``trade_on``
        ``"schedule"`` (default): on each rebalance date every asset is traded back to its
        target. ``"signal_change"``: an asset is traded only when its target changes and
        otherwise drifts (hold until the signal changes, as backtrader and vectorbt's
        ``from_signals``).
    ``band``
        absolute weight drift (e.g. ``0.02``): with ``"schedule"``, only assets whose weight
        is more than ``band`` from the target are traded; with ``"signal_change"``, such
        assets are traded too. ``0`` (default): no band.
    ``sizing``
        a :func:`mts1b_quantkit.sizing.size` spec (default
        ``{"method": "equal_weight_long", "gross": 1.0}``).
    ``cost_bps``
        commission per unit traded, in basis points (scalar or ``{symbol: bps}``).
    ``fill``
        ``"next_open"`` (default), ``"close"`` or ``"next_close"`` (see the module docs).
    ``slippage``
        basis points (fixed), or ``{"model": "sqrt", "k": 1.0, "window": 20}``: the price moves
        ``k * sigma * sqrt(shares / ADV)`` against the trade (sigma and ADV over the previous
        ``window`` days).
    ``participation``
        cap on each fill as a fraction of the bar's volume; the unfilled rest carries over.
    ``borrow_rate``
        annual borrow cost on short market value (scalar or ``{symbol: rate}``), accrued per
        row at ``rate / periods_per_year``.
    ``initial_nav``
        starting cash.
    ``backend``
        ``"auto" | "numba" | "numpy" | "cupy"``: ``"numba"`` is the compiled CPU engine and
        what ``"auto"`` picks (unless a GPU measurement in ``bench/RESULTS.md`` showed cupy
        faster at the run's size); ``"numpy"`` the reference engine; ``"cupy"`` the reference
        engine on a GPU. The result's ``backend`` says which ran and why.
    ``calendar``
        the panel's calendar when it is loaded from the datalake (default: by the instruments'
        asset class: equities ``XNYS``, FX ``24/5``, crypto ``24/7``).
    ``periods_per_year``
        rows per year for annualising metrics and accruing borrow (default: the panel's,
        from its calendar: 252, 260 or 365; 252 for a panel that states none).
    ``lookahead_check``
        run quantkit's look-ahead guard on the factor first and refuse a factor that peeks.
    ``benchmark``
        ``None`` (the universe's equal-weight return), a symbol, a pandas Series of prices, or
        ``False`` for none.
    ``warmup_days``
        calendar days of history before ``start`` (default 400).

    Any other keyword is a :class:`~mts1b_GPUbacktester.errors.BacktestConfigError` that lists
    the accepted ones (the closest first). Dates in range errors are the ones given here.

    Honest data: no trade fills on a NaN price (the order waits); an asset that leaves the
    universe is sold; an asset whose prices stop before the end (delisted) is closed at its
    last close.
    """
    run = RunSpec.build(spec, settings, where="run_single", also=_RUN_SINGLE_ARGS)  # no data yet
    if universe is None:
        raise BacktestConfigError("universe is required", field="universe", value=None)
    if weights is not None and factor is not None:
        raise BacktestConfigError("give either factor or weights, not both",
                                  field="weights", value="both")
    if weights is None and factor is None:
        raise BacktestConfigError("factor (or weights) is required", field="factor",
                                  value=None)
    panel, row0 = resolve_universe(universe, start, end, warmup_days=run.warmup_days,
                                   store=store, calendar=run.calendar)
    ppy = run.periods_per_year_for(panel)
    costs, impact_window = run.cost_model(panel.symbols, periods_per_year=ppy[0])
    # The factor runs first, while no other (T, A) array of the run exists: its temporaries
    # are the largest of the run. Its scores are held in a list so that size_targets holds
    # the last reference and drops it before building the targets.
    scores = [] if factor is None else [_factor_scores(panel, factor, params,
                                                       lookahead_check=run.lookahead_check)]
    market = market_arrays(panel, run.fill, impact_window=impact_window)
    targets = (_align_weights(weights, panel) if factor is None
               else size_targets(panel, scores.pop(), run.sizing, market.returns))
    name = factor if isinstance(factor, str) else getattr(factor, "__name__", None)
    return _backtest(
        panel, targets, market, costs, run, row0=row0, store=store, periods_per_year=ppy,
        config={"factor": name, "params": dict(params or {}),
                "universe": universe_label(universe),
                "start": None if start is None else str(to_day(start)),
                "end": None if end is None else str(to_day(end))},
    )


def _align_weights(weights: Any, panel: UniversePanel) -> FloatArray:
    if _is_pandas(weights, "DataFrame"):
        import pandas as pd

        idx = pd.DatetimeIndex(panel.dates.astype("datetime64[ns]"))
        frame = weights.copy()
        frame.index = pd.DatetimeIndex(frame.index).tz_localize(None).normalize()
        frame = frame.reindex(index=idx, columns=list(panel.symbols))
        return np.nan_to_num(np.asarray(frame.to_numpy(dtype=np.float64), dtype=np.float64),
                             nan=0.0)
    arr = np.asarray(weights, dtype=np.float64)
    if arr.shape != panel.shape:
        raise BacktestConfigError(f"weights have shape {arr.shape}; the panel is {panel.shape}",
                                  field="weights", value=arr.shape)
    return np.nan_to_num(arr, nan=0.0)
