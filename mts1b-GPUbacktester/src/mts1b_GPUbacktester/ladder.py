"""Parameter ladders: every combination of a grid, in memory-bounded tiles, optionally parallel.

``run_ladder(factor, grid={"p_fast": [...], "p_slow": [...]}, constraint=..., universe=...)``
evaluates every combination that passes ``constraint`` and returns a :class:`LadderResult`
whose ``table`` has one row of metrics per combination.

Two modes:

``mode="portfolio"`` (default)
    each combination is a full :func:`~mts1b_GPUbacktester.run_single` portfolio (factor ->
    sizing -> engine), simulated ``tile_size`` combinations at a time in one vectorized pass;
    the table has quantkit's metrics of each portfolio's daily returns.
``mode="per_asset"``
    each (combination, asset) is its own all-in / all-out account trading the factor's sign,
    as vectorbt's ``Portfolio.from_signals`` treats each column; costs are ``cost_bps`` plus
    fixed ``slippage``. The table summarises the accounts of each combination;
    ``keep="returns"`` also keeps the ``(combos, assets)`` total-return matrix.

Fast path: a factor registered with a ladder evaluator
(``mts1b_quantkit.factors.register(name, ladder=LadderEvaluator(...))``; quantkit's
``f_sma_cross`` / ``f_sma_cross_fast`` have one) computes what all the combinations share once
(each moving average of a crossover grid, say) and gives their signals tile by tile. In per-asset
mode the ladder hands it blocks of assets with every combination of a chunk (by default all of
them), so each window is computed once per asset block for all tiles, as in the
:func:`sma_cross_ladder` kernel; in portfolio mode it evaluates each tile's combinations over
all assets. Any other factor is evaluated combination by combination through quantkit. The
ladder knows no factor by name: it asks quantkit for the factor's evaluator (``get_ladder``).

Memory: one tile of signals (``tile_size`` combinations x ``T`` x the asset block) at a time per
worker, plus, on the fast path, what the evaluator keeps for an asset block (the block is sized
so that this and the tile stay within ``MEMORY_MB``) and the chunk's ``(combos, assets)``
results; the table grows by one row per combination.

Executors: ``"local"`` (this process), ``"process"`` (a pool of local processes, ``workers``
of them), ``"ray"`` (tasks on a Ray cluster; ``ray.init`` is called if needed, with
``ray_init`` arguments, e.g. ``{"local_mode": True}``).
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from multiprocessing.context import BaseContext
from typing import TYPE_CHECKING, Any, Unpack

import numpy as np
import numpy.typing as npt
from mts1b_foundation import UniversePanel
from mts1b_platform.logging import get_logger

from mts1b_GPUbacktester.backend import Backend, cupy_status, resolve_backend
from mts1b_GPUbacktester.data import MarketArrays, market_arrays, resolve_universe
from mts1b_GPUbacktester.engine import _simulate, compute_targets, size_targets
from mts1b_GPUbacktester.errors import BacktestConfigError
from mts1b_GPUbacktester.kernels import (
    cost_rates,
    per_asset_context,
    per_asset_log_growth,
)
from mts1b_GPUbacktester.schedule import rebalance_rows
from mts1b_GPUbacktester.sim import CostModel
from mts1b_GPUbacktester.spec import RunSettings, RunSpec, bps_to_rate

if TYPE_CHECKING:
    import pandas as pd
    from mts1b_quantkit.factors import LadderEvaluator

__all__ = [
    "MEMORY_MB",
    "LadderResult",
    "expand_grid",
    "run_ladder",
    "sma_cross_ladder",
]

FloatArray = npt.NDArray[np.float64]

_log = get_logger(__name__)

#: the working memory a ladder aims at per worker on its fast path, in MiB: an asset block
#: holds what the factor's evaluator keeps for it (``bytes_per_asset``) plus one tile of
#: signals, and a chunk of combinations holds its ``(combos, assets)`` results
MEMORY_MB = 32.0

PORTFOLIO_METRICS = ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "volatility",
                     "calmar", "turnover")


def expand_grid(grid: Mapping[str, Sequence[Any]],
                constraint: Callable[[dict[str, Any]], bool] | None = None
                ) -> list[dict[str, Any]]:
    """Every combination of ``grid`` (in ``itertools.product`` order) passing ``constraint``."""
    if not grid:
        raise BacktestConfigError("grid is empty", field="grid", value={})
    names = list(grid)
    for k in names:
        if isinstance(grid[k], str) or not isinstance(grid[k], Sequence | np.ndarray):
            raise BacktestConfigError(f"grid[{k!r}] must be a list of values", field="grid",
                                      value=k)
    combos = [dict(zip(names, values, strict=True))
              for values in itertools.product(*(list(grid[k]) for k in names))]
    if constraint is not None:
        combos = [c for c in combos if constraint(c)]
    if not combos:
        raise BacktestConfigError("no combination of the grid passes the constraint",
                                  field="constraint", value=repr(constraint))
    return combos


# --------------------------------------------------------------------------------------------
# per-asset accounts of many combinations, an asset block at a time
# --------------------------------------------------------------------------------------------

def _block_width(a_len: int, rows: int, tile_size: int, bytes_per_asset: int,
                 memory_mb: float) -> int:
    """Assets per block: what the evaluator keeps per asset plus one tile of boolean signals,
    within ``memory_mb`` (at least one asset, at most all)."""
    per_asset = bytes_per_asset + tile_size * rows
    return int(max(1, min(a_len, memory_mb * 2**20 // max(per_asset, 1))))


def _accounts(values: Callable[[int, int], Any], n_combos: int, ctx: Any, mask: Any,
              tile_size: int, be: Backend) -> tuple[FloatArray, FloatArray]:
    """Total return and trade count, ``(n_combos, a)`` each, of the per-asset accounts whose
    signals ``values(lo, hi)`` gives a tile at a time: booleans ("long"), or factor values,
    long where positive. ``mask`` (``(T, a)`` or None): no position outside the universe."""
    xp = be.xp
    a_len = ctx.log_exec.shape[1]
    total = np.empty((n_combos, a_len))
    trades = np.empty((n_combos, a_len))
    for p0 in range(0, n_combos, tile_size):
        p1 = min(p0 + tile_size, n_combos)
        signal = values(p0, p1)
        if signal.dtype != bool:
            signal = signal > 0
        if mask is not None:
            signal &= mask
        growth, n_in, n_out = per_asset_log_growth(signal, ctx, xp=xp)
        total[p0:p1] = be.to_numpy(xp.expm1(growth))
        trades[p0:p1] = be.to_numpy(n_in + n_out)
    return total, trades


def sma_cross_ladder(close: FloatArray, pairs: Sequence[tuple[int, int]], *,
                     exec_price: FloatArray | None = None, shift: int = 0,
                     cost_bps: float = 10.0, slippage_bps: float = 0.0, lag: int = 0,
                     min_periods: int | None = None,
                     mask: npt.NDArray[np.bool_] | None = None,
                     backend: str | Backend = "auto", asset_block: int | None = None,
                     tile_size: int = 32, memory_mb: float | None = None,
                     compensated: bool = False) -> tuple[FloatArray, FloatArray]:
    """Total return and trade count of every (pair, asset) SMA-crossover account.

    ``close`` is ``(T, A)``; each pair ``(fast, slow)`` is long while
    ``SMA_fast > SMA_slow`` and flat otherwise, one all-in account per asset (see
    :func:`~mts1b_GPUbacktester.kernels.per_asset_log_growth`), paying ``cost_bps`` (+
    ``slippage_bps``) per side. ``lag``/``min_periods`` pick the SMA convention (see
    :func:`~mts1b_GPUbacktester.kernels.rolling_mean_stack`): ``lag=0`` with full windows is
    vectorbt's ``MA``; ``lag=1, min_periods=1`` is the migration guide's ``f_sma_cross``.
    ``exec_price``/``shift``: trade at ``exec_price[t + shift]`` (default: the close, same bar,
    as ``from_signals``). ``mask``: ``(T, A)``, no position outside the universe.

    Returns ``(total_return, trades)``, both ``(len(pairs), A)`` float64 numpy arrays.

    How it is fast: assets are processed in blocks; for a block every distinct window's SMA is
    computed once (quantkit's ``sma_cross_signals``: one prefix sum for all windows, a plain
    running sum unless ``compensated``, see
    :func:`~mts1b_GPUbacktester.kernels.rolling_mean_stack`), then each
    pair is one comparison of two of those arrays, ``tile_size`` pairs at a time, and each
    account's return comes from its entry/exit transitions alone. Memory: the block's SMAs
    (windows x T x block x 8 bytes, the block sized to stay within ``memory_mb``, default
    :data:`MEMORY_MB`) plus one tile of boolean signals; it does not grow with the number of
    pairs. ``run_ladder`` runs the same loop for any factor with a ladder evaluator.
    """
    from mts1b_quantkit.factors import sma_cross_signals

    be = backend if isinstance(backend, Backend) else resolve_backend(
        backend, cells=close.shape[0] * close.shape[1] * max(len(pairs), 1))
    close = np.asarray(close, dtype=np.float64)
    exe = close if exec_price is None else np.asarray(exec_price, dtype=np.float64)
    buy, sell = cost_rates(bps_to_rate(cost_bps), bps_to_rate(slippage_bps))
    n_pairs, (t_len, a_len) = len(pairs), close.shape
    n_windows = len({int(w) for pair in pairs for w in pair})
    width = asset_block or _block_width(a_len, t_len, tile_size, n_windows * t_len * 8,
                                        MEMORY_MB if memory_mb is None else memory_mb)
    total = np.empty((n_pairs, a_len))
    trades = np.empty((n_pairs, a_len))
    for lo in range(0, a_len, width):
        cols = slice(lo, min(lo + width, a_len))
        ctx = per_asset_context(exe[:, cols], close[:, cols], shift=shift, buy_rate=buy,
                                sell_rate=sell, xp=be.xp)
        values = sma_cross_signals(be.asarray(close[:, cols]), pairs, lag=lag,
                                   min_periods=min_periods, compensated=compensated)
        block_mask = None if mask is None else be.asarray(mask[:, cols])
        total[:, cols], trades[:, cols] = _accounts(values, n_pairs, ctx, block_mask,
                                                    tile_size, be)
        del values
    return total, trades


class _AssetBlock:
    """What a ladder evaluator's ``prepare`` sees: the panel's fields for a block of its assets
    (columns ``cols``), as arrays of the run's backend (numpy, or cupy on the device), converted
    on first use; ``symbols``, ``dates`` and ``shape`` of the block."""

    def __init__(self, panel: UniversePanel, cols: slice, be: Backend) -> None:
        self._panel, self._cols, self._be = panel, cols, be
        self._cache: dict[str, Any] = {}
        self.symbols = panel.symbols[cols]
        self.dates = panel.dates
        self.shape = (panel.shape[0], len(self.symbols))

    def field(self, name: str) -> Any:
        """A field of the block (standard or extra, or ``mask``); PanelError if absent."""
        if name not in self._cache:
            source = self._panel.mask if name == "mask" else self._panel.field(name)
            self._cache[name] = self._be.asarray(source[:, self._cols])
        return self._cache[name]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or (name != "mask" and name not in self._panel.field_names):
            raise AttributeError(name)
        return self.field(name)


# --------------------------------------------------------------------------------------------
# units of work: a range of combinations over a range of assets
# --------------------------------------------------------------------------------------------

#: combinations ``[lo, hi)`` of the job over assets ``[c0, c1)``
_Unit = tuple[int, int, int, int]


@dataclass
class _Job:
    """Everything a worker needs to run units (pickled once per worker)."""

    factor: Any
    factor_name: str | None
    evaluator: LadderEvaluator | None
    combos: list[dict[str, Any]]
    mode: str
    panel: UniversePanel
    market: MarketArrays
    row0: int
    rebalance: npt.NDArray[np.bool_]
    sizing: dict[str, Any]
    costs: CostModel
    initial_nav: float
    backend: str
    tile_size: int
    asset_block: int | None
    keep: str | None
    cost_bps: float = 10.0
    slippage_bps: float = 0.0
    trade_on: str = "schedule"
    band: float = 0.0
    periods_per_year: float = 252.0


def _units(job: _Job, executor: str, workers: int) -> list[_Unit]:
    """The job's units, in order.

    Without an evaluator, and in portfolio mode, a unit is one tile of combinations over every
    asset (the factor sees the whole panel). On the per-asset fast path a unit is a chunk of
    combinations (as many as keep their ``(combos, assets)`` results within ``MEMORY_MB``:
    all of them for ordinary grids) over one block of assets, so the evaluator computes what the
    chunk shares once per block; a pool gets at least one block per worker.
    """
    n, (t_len, a_len) = len(job.combos), job.panel.shape
    tile = job.tile_size
    ev = job.evaluator
    if job.mode != "per_asset" or ev is None:
        return [(lo, min(lo + tile, n), 0, a_len) for lo in range(0, n, tile)]
    chunk = max(tile, int(MEMORY_MB * 2**20 // max(16 * a_len, 1)))
    units: list[_Unit] = []
    for lo in range(0, n, chunk):
        hi = min(lo + chunk, n)
        width = a_len
        if ev.per_asset:
            kept = ev.bytes_per_asset(job.combos[lo:hi], t_len) if ev.bytes_per_asset else 0
            width = job.asset_block or _block_width(a_len, t_len, tile, kept, MEMORY_MB)
            if executor != "local":
                width = min(width, -(-a_len // workers))
        units += [(lo, hi, c0, min(c0 + width, a_len)) for c0 in range(0, a_len, width)]
    return units


_WORKER_JOB: _Job | None = None


def _init_worker(job: _Job) -> None:
    global _WORKER_JOB
    _WORKER_JOB = job


def _run_unit_in_worker(unit: _Unit) -> dict[str, Any]:
    if _WORKER_JOB is None:  # pragma: no cover - the pool initializer always sets it
        raise RuntimeError("worker started without a ladder job")
    return _run_unit(_WORKER_JOB, unit)


def _run_unit(job: _Job, unit: _Unit) -> dict[str, Any]:
    lo, hi, c0, c1 = unit
    be = resolve_backend(job.backend, cells=job.panel.shape[0] * (c1 - c0)
                         * min(hi - lo, job.tile_size))
    if job.mode == "per_asset":
        return _unit_per_asset(job, unit, be)
    return _tile_portfolio(job, job.combos[lo:hi], be)


def _unit_per_asset(job: _Job, unit: _Unit, be: Backend) -> dict[str, Any]:
    """``(combos, assets)`` total returns and trade counts of a unit's accounts."""
    lo, hi, c0, c1 = unit
    market, cols, combos = job.market, slice(c0, c1), job.combos[lo:hi]
    buy, sell = cost_rates(bps_to_rate(job.cost_bps), bps_to_rate(job.slippage_bps))
    ctx = per_asset_context(market.exec_price[:, cols], market.close[:, cols],
                            shift=market.shift, buy_rate=buy, sell_rate=sell, xp=be.xp)
    if job.evaluator is not None:
        values = job.evaluator.prepare(_AssetBlock(job.panel, cols, be), combos)
    else:  # combination by combination; the unit spans every asset
        from mts1b_quantkit.factors import evaluate

        def values(a: int, b: int) -> Any:
            return be.asarray(np.stack([evaluate(job.factor, job.panel, **c) > 0
                                        for c in combos[a:b]]))

    total, trades = _accounts(values, hi - lo, ctx, be.asarray(market.in_universe[:, cols]),
                              job.tile_size, be)
    return {"total": total, "trades": trades}


def _tile_portfolio(job: _Job, combos: list[dict[str, Any]], be: Backend) -> dict[str, Any]:
    from mts1b_quantkit import metrics as qm

    market = job.market
    if job.evaluator is not None:  # the tile's values at once, over every asset
        values = be.to_numpy(job.evaluator.prepare(
            _AssetBlock(job.panel, slice(None), be), combos)(0, len(combos)))
        scores = (values.astype(np.float64) * 2.0 - 1.0 if values.dtype == bool
                  else np.asarray(values, dtype=np.float64))
        targets = np.stack([size_targets(job.panel, s, job.sizing, market.returns)
                            for s in scores])
    else:
        targets = np.stack([compute_targets(job.panel, job.factor, c, job.sizing,
                                            market.returns) for c in combos])
    out = _simulate(be, market, targets, job.rebalance, job.costs, job.row0, job.initial_nav,
                    record_weights=True, record_fills=False, trade_on=job.trade_on,
                    band=job.band)
    nav = be.to_numpy(out.nav)[:, job.row0:]          # (c, T')
    held = be.to_numpy(out.weights)[:, job.row0:]     # (c, T', A)
    prev = np.concatenate([np.full((nav.shape[0], 1), job.initial_nav), nav[:, :-1]], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rets = np.where(prev != 0, nav / prev - 1.0, 0.0).T   # (T', c)
    asset_rets = market.returns[job.row0:]
    ppy = job.periods_per_year  # the panel calendar's, as BacktestResult annualises
    table = {
        "total_return": np.asarray(qm.cum_returns_final(rets)),
        "cagr": np.asarray(qm.cagr(rets, periods_per_year=ppy)),
        "sharpe": np.asarray(qm.sharpe(rets, periods_per_year=ppy)),
        "sortino": np.asarray(qm.sortino(rets, periods_per_year=ppy)),
        "max_drawdown": np.asarray(qm.max_drawdown(rets)),
        "volatility": np.asarray(qm.volatility(rets, periods_per_year=ppy)),
        "calmar": np.asarray(qm.calmar(rets, periods_per_year=ppy)),
        # the same definition as BacktestResult.turnover: quantkit's, on the held weights
        "turnover": np.array([qm.turnover(w, asset_rets).mean() for w in held]),
        "commission": be.to_numpy(out.commission)[:, job.row0:].sum(axis=1),
    }
    result: dict[str, Any] = {"table": table}
    if job.keep == "returns":
        result["returns"] = rets
    return result


def _per_asset_table(total: FloatArray, trades: FloatArray) -> dict[str, Any]:
    with warnings.catch_warnings():  # a combination where no asset had an account: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return {
            "total_return_mean": np.nanmean(total, axis=1),
            "total_return_median": np.nanmedian(total, axis=1),
            "win_rate": np.nanmean(np.where(np.isfinite(total), total > 0, np.nan), axis=1),
            "trades_mean": np.nanmean(trades, axis=1),
        }


class _Collect:
    """Gathers the units' results as they arrive, into one part per chunk of combinations:
    ``(lo, {"table": ..., "total_return" | "returns": ...})``. A per-asset chunk is summarised
    (and its matrices dropped, unless kept) once all its asset blocks are in."""

    def __init__(self, job: _Job) -> None:
        self._job = job
        self._open: dict[int, tuple[FloatArray, FloatArray, list[int]]] = {}
        # an asset never in the universe while the window is open has no account at all
        self._never = ~np.asarray(job.market.in_universe).any(axis=0)
        self.parts: list[tuple[int, dict[str, Any]]] = []

    def __call__(self, unit: _Unit, result: dict[str, Any]) -> None:
        lo, hi, c0, c1 = unit
        if self._job.mode != "per_asset":
            self.parts.append((lo, result))
            return
        a_len = self._job.panel.shape[1]
        total, trades, left = self._open.setdefault(
            lo, (np.empty((hi - lo, a_len)), np.empty((hi - lo, a_len)), [a_len]))
        total[:, c0:c1] = result["total"]
        trades[:, c0:c1] = result["trades"]
        left[0] -= c1 - c0
        if left[0]:
            return
        del self._open[lo]
        total[:, self._never] = np.nan
        trades[:, self._never] = np.nan
        part: dict[str, Any] = {"table": _per_asset_table(total, trades)}
        if self._job.keep == "returns":
            part["total_return"] = total
        self.parts.append((lo, part))


# --------------------------------------------------------------------------------------------
# progress and executors
# --------------------------------------------------------------------------------------------

class _Progress:
    """A tqdm bar over combinations (rate and ETA), or nothing when disabled. A unit over some
    of the assets counts as that share of its combinations (whole combinations are shown)."""

    def __init__(self, total: int, n_assets: int, enabled: bool, desc: str) -> None:
        self._bar: Any = None
        self._assets = max(n_assets, 1)
        self._cells = self._shown = 0
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, unit="combo", desc=desc, dynamic_ncols=True,
                             smoothing=0.1)

    def done(self, unit: _Unit) -> None:
        lo, hi, c0, c1 = unit
        self._cells += (hi - lo) * (c1 - c0)
        whole = self._cells // self._assets
        if self._bar is not None and whole > self._shown:
            self._bar.update(whole - self._shown)
        self._shown = whole

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _bounded(units: list[_Unit], limit: int, done: Callable[[_Unit, dict[str, Any]], None],
             submit: Callable[[_Unit], Any],
             wait_some: Callable[[list[Any]], list[tuple[Any, dict[str, Any]]]]) -> None:
    """Run units through a pool with at most ``limit`` in flight (bounded memory however many
    units there are): ``submit(unit)`` returns a handle, ``wait_some(handles)`` blocks until
    at least one is done and returns ``(handle, result)`` for those that are; ``done(unit,
    result)`` takes each result. The process pool and Ray differ only in submit and wait."""
    queue = iter(units)
    pending = {submit(u): u for u in itertools.islice(queue, limit)}
    while pending:
        for handle, result in wait_some(list(pending)):
            done(pending.pop(handle), result)
            nxt = next(queue, None)
            if nxt is not None:
                pending[submit(nxt)] = nxt


def _pool_context(backend: str) -> BaseContext | None:
    """The process pool's start method: the platform default (fork on Linux), except when
    the workers may use CUDA. Asking whether a device exists initialises CUDA in this process,
    and a CUDA context does not survive fork, so then the workers are spawned (the factor must
    then be importable, as for Ray). Untested on a GPU: none was available."""
    if backend == "cupy" or (backend == "auto" and cupy_status()[0] is not None):
        return multiprocessing.get_context("spawn")
    return None


def _execute(job: _Job, units: list[_Unit], executor: str, workers: int,
             done: Callable[[_Unit, dict[str, Any]], None],
             ray_init: Mapping[str, Any] | None) -> None:
    if executor == "local":
        for unit in units:
            done(unit, _run_unit(job, unit))
        return
    if executor == "process":
        with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker,
                                 initargs=(job,), mp_context=_pool_context(job.backend)) as pool:

            def wait_pool(futures: list[Any]) -> list[tuple[Any, dict[str, Any]]]:
                finished, _ = wait(futures, return_when=FIRST_COMPLETED)
                return [(f, f.result()) for f in finished]

            _bounded(units, 2 * workers, done,
                     lambda unit: pool.submit(_run_unit_in_worker, unit), wait_pool)
            return
    if executor == "ray":
        try:
            import ray
        except ImportError as exc:
            raise BacktestConfigError(
                "executor='ray' needs Ray: pip install 'ray>=2.9,<3' (the ray extra of "
                "mts1b-GPUbacktester)",
                field="executor", value="ray") from exc
        if not ray.is_initialized():
            ray.init(**dict(ray_init or {}))
        job_ref = ray.put(job)
        remote = ray.remote(_run_unit)

        def wait_ray(refs: list[Any]) -> list[tuple[Any, dict[str, Any]]]:
            finished, _ = ray.wait(refs, num_returns=1)
            return [(r, ray.get(r)) for r in finished]

        _bounded(units, 2 * workers, done, lambda unit: remote.remote(job_ref, unit), wait_ray)
        return
    raise BacktestConfigError(f"executor must be 'local', 'process' or 'ray'; got {executor!r}",
                              field="executor", value=executor)


# --------------------------------------------------------------------------------------------
# the public entry point
# --------------------------------------------------------------------------------------------

@dataclass
class LadderResult:
    """The outcome of :func:`run_ladder`.

    ``table``: one row per combination (the parameters, then the metrics), in grid order.
    ``total_return``: ``(combos, assets)`` matrix (per-asset mode with ``keep="returns"``).
    ``returns``: ``(T, combos)`` daily portfolio returns (portfolio mode, ``keep="returns"``).
    ``spec``: the :class:`~mts1b_GPUbacktester.spec.RunSpec` every combination ran under;
    ``periods_per_year``: what the portfolio metrics are annualised with.
    """

    table: pd.DataFrame
    mode: str
    backend: dict[str, str | None]
    elapsed_s: float
    fast_path: bool
    symbols: tuple[str, ...]
    dates: npt.NDArray[np.datetime64]
    total_return: FloatArray | None = None
    returns: FloatArray | None = None
    spec: RunSpec | None = None
    periods_per_year: float = 252.0

    def best(self, metric: str | None = None, *, ascending: bool = False) -> pd.Series:
        """The row with the highest ``metric`` (``sharpe`` in portfolio mode,
        ``total_return_mean`` in per-asset mode)."""
        key = metric or ("sharpe" if self.mode == "portfolio" else "total_return_mean")
        col = self.table[key]
        pos = col.idxmin() if ascending else col.idxmax()
        return self.table.loc[pos]

    def __len__(self) -> int:
        return len(self.table)


#: ``run_ladder``'s own arguments (beside the settings of a RunSpec)
_RUN_LADDER_ARGS = ("factor", "grid", "universe", "start", "end", "constraint", "mode",
                    "tile_size", "executor", "workers", "progress", "keep", "asset_block",
                    "ray_init", "store")


def run_ladder(factor: Callable[..., Any] | str, grid: Mapping[str, Sequence[Any]], *,
               universe: Any, start: Any = None, end: Any = None,
               constraint: Callable[[dict[str, Any]], bool] | None = None,
               mode: str = "portfolio", tile_size: int | None = None,
               executor: str = "local", workers: int | None = None, progress: bool = True,
               keep: str | None = None, asset_block: int | None = None,
               ray_init: Mapping[str, Any] | None = None, store: Any = None,
               spec: RunSpec | None = None, **settings: Unpack[RunSettings]) -> LadderResult:
    """Evaluate ``factor`` for every combination of ``grid`` that passes ``constraint``.

    ``universe``/``start``/``end`` and the settings (``spec=`` and/or keyword arguments:
    ``rebal``, ``trade_on``, ``band``, ``sizing``, ``cost_bps``, ``fill``, ``slippage``,
    ``participation``, ``borrow_rate``, ``initial_nav``, ``backend``, ``calendar``,
    ``periods_per_year``, ``warmup_days``; see :class:`~mts1b_GPUbacktester.spec.RunSpec`)
    mean what they mean in :func:`~mts1b_GPUbacktester.run_single`; portfolio metrics are
    annualised with the panel calendar's periods per year. Per-asset mode takes one
    ``cost_bps`` and fixed ``slippage`` only (its accounts hold from entry to exit, so
    ``trade_on`` does not apply; ``band`` must be 0); ``benchmark`` and ``lookahead_check``
    are not used by a ladder. Any other keyword is a BacktestConfigError listing the
    accepted ones. ``tile_size`` combinations are processed together (default: 128 in
    per-asset mode, 16 in portfolio mode); ``executor`` runs them in this process, in a
    process pool of ``workers`` (default: the CPU count) or on Ray. ``progress`` shows a bar
    with the rate and ETA. ``keep="returns"`` keeps the per-combination return records.

    A factor registered with a ladder evaluator (``register(name, ladder=...)`` in quantkit)
    takes the fast path (``result.fast_path``); ``asset_block`` then fixes the number of assets
    per block in per-asset mode (default: sized to :data:`MEMORY_MB`).
    """
    from mts1b_quantkit.factors import get_ladder

    run = RunSpec.build(spec, settings, where="run_ladder", also=_RUN_LADDER_ARGS)
    if mode not in ("portfolio", "per_asset"):
        raise BacktestConfigError(f"mode must be 'portfolio' or 'per_asset'; got {mode!r}",
                                  field="mode", value=mode)
    if mode == "per_asset" and (
            run.participation is not None or run.borrow_rate is not None
            or run.slippage_model.impact_k or run.commission_bps is None or run.band
            or run.delisting != "sale"):
        raise BacktestConfigError(
            "per_asset mode supports one cost_bps and fixed slippage (bps) only; use "
            "mode='portfolio' for per-symbol costs, participation caps, impact, borrow, "
            "band and delisting='payout'", field="mode", value=mode)
    combos = expand_grid(grid, constraint)
    panel, row0 = resolve_universe(universe, start, end, warmup_days=run.warmup_days,
                                   store=store, calendar=run.calendar)
    ppy, _ = run.periods_per_year_for(panel)
    name = factor if isinstance(factor, str) else getattr(factor, "__name__", None)
    evaluator = get_ladder(factor)
    costs, impact_window = run.cost_model(panel.symbols, periods_per_year=ppy)
    market = market_arrays(panel, run.fill, impact_window=impact_window)
    if mode == "per_asset" and row0:
        market = _open_at(market, row0)
        row0 = 0
    n_workers = max(1, workers or os.cpu_count() or 1)
    size = tile_size or (128 if mode == "per_asset" else 16)
    if size < 1:
        raise BacktestConfigError(f"tile_size must be >= 1; got {size}", field="tile_size",
                                  value=size)
    chosen = resolve_backend(run.backend, cells=panel.shape[0] * panel.shape[1] * size)
    # a factor with an evaluator travels to workers by name: it is not called there
    job = _Job(factor=name if evaluator is not None and name else factor, factor_name=name,
               evaluator=evaluator, combos=combos, mode=mode, panel=panel, market=market,
               row0=row0, rebalance=rebalance_rows(panel.dates, run.rebal, start=row0),
               sizing=dict(run.sizing), costs=costs, initial_nav=run.initial_nav,
               backend=chosen.name, tile_size=size, asset_block=asset_block, keep=keep,
               cost_bps=run.commission_bps or 0.0, slippage_bps=run.slippage_model.bps,
               trade_on=run.trade_on, band=run.band, periods_per_year=ppy)
    started = time.perf_counter()
    units = _units(job, executor, n_workers)
    collect = _Collect(job)
    bar = _Progress(len(combos), panel.shape[1], progress, f"ladder {name or 'factor'}")

    def done(unit: _Unit, result: dict[str, Any]) -> None:
        collect(unit, result)
        bar.done(unit)

    try:
        _execute(job, units, executor, n_workers, done, ray_init)
    finally:
        bar.close()
    parts = sorted(collect.parts, key=lambda p: p[0])
    columns: dict[str, list[Any]] = {}
    for _, part in parts:
        for key, values in part["table"].items():
            columns.setdefault(key, []).append(np.asarray(values))
    import pandas as pd  # the table is a DataFrame; imported here, not when the module loads

    table = pd.DataFrame(combos)
    for key, chunks in columns.items():
        table[key] = np.concatenate(chunks)
    total = returns = None
    if keep == "returns":
        if mode == "per_asset":
            total = np.concatenate([p["total_return"] for _, p in parts], axis=0)
        else:
            returns = np.concatenate([p["returns"] for _, p in parts], axis=1)
    elapsed = time.perf_counter() - started
    _log.info("ladder done", factor=name, combos=len(combos), mode=mode, executor=executor,
              backend=chosen.name, backend_reason=chosen.reason,
              fast_path=evaluator is not None, seconds=round(elapsed, 3))
    return LadderResult(table=table, mode=mode, backend=chosen.describe(),
                        elapsed_s=elapsed, fast_path=evaluator is not None,
                        symbols=panel.symbols, dates=panel.dates[row0:], total_return=total,
                        returns=returns, spec=run, periods_per_year=ppy)


def _open_at(market: MarketArrays, row0: int) -> MarketArrays:
    """Per-asset accounts trade from ``row0`` on: earlier rows stay in the arrays as factor
    history (the SMA windows see them) but allow no position and no trade."""
    mask = np.asarray(market.in_universe).copy()
    mask[:row0] = False
    exec_price = market.exec_price.copy()
    exec_price[:row0] = np.nan
    return replace(market, in_universe=mask, exec_price=exec_price)
