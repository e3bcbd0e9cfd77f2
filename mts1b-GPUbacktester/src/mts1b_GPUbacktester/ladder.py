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

Fast path: for ``f_sma_cross`` / ``f_sma_cross_fast`` the signals of a whole tile come from one
cumulative sum per asset block (:func:`~mts1b_GPUbacktester.kernels.rolling_mean_stack`), every
window length computed once and every (fast, slow) pair compared vectorized; any other factor
is evaluated combination by combination through quantkit.

Memory: only one tile's arrays (per worker) exist at a time - ``tile_size`` combinations x
``T`` x ``A`` (x ``asset_block`` / ``A`` in per-asset mode) - whatever the number of
combinations; the table grows by one row per combination.

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
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from multiprocessing.context import BaseContext
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from mts1b_foundation import UniversePanel
from mts1b_platform.logging import get_logger

from mts1b_GPUbacktester.backend import Backend, cupy_status, resolve_backend
from mts1b_GPUbacktester.data import MarketArrays, market_arrays, resolve_universe
from mts1b_GPUbacktester.engine import (
    DEFAULT_SIZING,
    SlippageSpec,
    _simulate,
    compute_targets,
    cost_model,
    size_targets,
)
from mts1b_GPUbacktester.errors import BacktestConfigError
from mts1b_GPUbacktester.kernels import (
    cost_rates,
    per_asset_context,
    per_asset_log_growth,
    rolling_mean_stack,
)
from mts1b_GPUbacktester.schedule import RebalanceSpec, rebalance_rows
from mts1b_GPUbacktester.sim import CostModel

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "SMA_CROSS_FACTORS",
    "LadderResult",
    "expand_grid",
    "run_ladder",
    "sma_cross_ladder",
]

FloatArray = npt.NDArray[np.float64]

_log = get_logger(__name__)

#: factor names whose ladders take the cumsum fast path (the migration guide's SMA crossover:
#: +1 when the mean of the ``p_fast`` closes before ``t`` exceeds the ``p_slow`` one, else -1)
SMA_CROSS_FACTORS = frozenset({"f_sma_cross", "f_sma_cross_fast"})

PORTFOLIO_METRICS = ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "volatility",
                     "calmar", "turnover")


def _is_builtin_sma_cross(factor: Callable[..., Any] | str) -> bool:
    """True for quantkit's own ``f_sma_cross`` / ``f_sma_cross_fast`` (by name or object).

    The fast path reimplements their maths, so a different function registered under one of
    those names (``register(..., replace=True)``) must take the generic path.
    """
    from mts1b_quantkit.factors import get

    func = get(factor) if isinstance(factor, str) else factor
    return (getattr(func, "__name__", None) in SMA_CROSS_FACTORS
            and str(getattr(func, "__module__", "")).startswith("mts1b_quantkit."))


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
# the SMA-crossover fast path
# --------------------------------------------------------------------------------------------

def sma_cross_ladder(close: FloatArray, pairs: Sequence[tuple[int, int]], *,
                     exec_price: FloatArray | None = None, shift: int = 0,
                     cost_bps: float = 10.0, slippage_bps: float = 0.0, lag: int = 0,
                     min_periods: int | None = None,
                     mask: npt.NDArray[np.bool_] | None = None,
                     backend: str | Backend = "auto", asset_block: int | None = None,
                     tile_size: int = 32, memory_mb: float = 32.0
                     ) -> tuple[FloatArray, FloatArray]:
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
    computed once from one cumulative sum, then each pair is one comparison of two of those
    arrays into a preallocated boolean tile, and each account's return comes from its
    entry/exit transitions alone. Memory: the block's SMAs (windows x T x block x 8 bytes,
    the block sized to stay within ``memory_mb``) plus one tile of ``tile_size`` boolean
    signals; it does not grow with the number of pairs.
    """
    be = backend if isinstance(backend, Backend) else resolve_backend(
        backend, cells=close.shape[0] * close.shape[1] * max(len(pairs), 1))
    xp = be.xp
    close = np.asarray(close, dtype=np.float64)
    exe = close if exec_price is None else np.asarray(exec_price, dtype=np.float64)
    buy, sell = cost_rates(cost_bps / 1e4, slippage_bps / 1e4)
    n_pairs, (t_len, a_len) = len(pairs), close.shape
    windows, index = _window_index(pairs)
    if asset_block is None:
        per_asset = len(windows) * t_len * 8 + tile_size * t_len  # SMAs + one signal tile
        asset_block = int(max(1, min(a_len, memory_mb * 2**20 // max(per_asset, 1))))
    total = np.empty((n_pairs, a_len))
    trades = np.empty((n_pairs, a_len))
    for lo in range(0, a_len, asset_block):
        cols = slice(lo, min(lo + asset_block, a_len))
        ctx = per_asset_context(exe[:, cols], close[:, cols], shift=shift, buy_rate=buy,
                                sell_rate=sell, xp=xp)
        stack = rolling_mean_stack(be.asarray(close[:, cols]), windows, lag=lag,
                                   min_periods=min_periods, xp=xp)
        block_mask = None if mask is None else be.asarray(mask[:, cols])
        signal = xp.empty((min(tile_size, n_pairs), *stack.shape[1:]), dtype=bool)
        for p0 in range(0, n_pairs, tile_size):
            n = min(tile_size, n_pairs - p0)
            for k in range(n):
                i, j = index[p0 + k]
                xp.greater(stack[i], stack[j], out=signal[k])
            if block_mask is not None:
                signal[:n] &= block_mask
            growth, n_in, n_out = per_asset_log_growth(signal[:n], ctx, xp=xp)
            total[p0:p0 + n, cols] = be.to_numpy(xp.expm1(growth))
            trades[p0:p0 + n, cols] = be.to_numpy(n_in + n_out)
        del stack, signal
    return total, trades


def _window_index(pairs: Sequence[tuple[int, int]]) -> tuple[list[int], npt.NDArray[np.intp]]:
    """The distinct window lengths of ``pairs`` (sorted: one SMA each) and, per pair, the
    positions of its fast and slow windows in that list (``(len(pairs), 2)``)."""
    windows = sorted({int(w) for pair in pairs for w in pair})
    where = {w: k for k, w in enumerate(windows)}
    index = np.array([(where[int(f)], where[int(s)]) for f, s in pairs], dtype=np.intp)
    return windows, index.reshape(len(pairs), 2)


def _sma_pairs(combos: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """``(p_fast, p_slow)`` of each combination (the factor's defaults where absent)."""
    return [(int(c.get("p_fast", 20)), int(c.get("p_slow", 50))) for c in combos]


# --------------------------------------------------------------------------------------------
# tiles
# --------------------------------------------------------------------------------------------

@dataclass
class _Job:
    """Everything a worker needs to run tiles (pickled once per worker)."""

    factor: Any
    factor_name: str | None
    mode: str
    panel: UniversePanel
    market: MarketArrays
    row0: int
    rebalance: npt.NDArray[np.bool_]
    sizing: dict[str, Any]
    costs: CostModel
    initial_nav: float
    backend: str
    fast: bool
    asset_block: int | None
    keep: str | None
    cost_bps: float = 10.0
    slippage_bps: float = 0.0


_WORKER_JOB: _Job | None = None


def _init_worker(job: _Job) -> None:
    global _WORKER_JOB
    _WORKER_JOB = job


def _run_tile_in_worker(combos: list[dict[str, Any]]) -> dict[str, Any]:
    if _WORKER_JOB is None:  # pragma: no cover - the pool initializer always sets it
        raise RuntimeError("worker started without a ladder job")
    return _run_tile(_WORKER_JOB, combos)


def _signals_fast(job: _Job, combos: list[dict[str, Any]], be: Backend) -> Any:
    """``(c, T, A)`` booleans "fast SMA above slow SMA" for a tile, from one cumsum."""
    xp = be.xp
    windows, index = _window_index(_sma_pairs(combos))
    stack = rolling_mean_stack(be.asarray(job.market.close), windows, lag=1, min_periods=1,
                               xp=xp)
    out = xp.empty((len(index), *stack.shape[1:]), dtype=bool)
    for k, (i, j) in enumerate(index):
        xp.greater(stack[i], stack[j], out=out[k])
    return out


def _run_tile(job: _Job, combos: list[dict[str, Any]]) -> dict[str, Any]:
    be = resolve_backend(job.backend, cells=job.panel.shape[0] * job.panel.shape[1]
                         * len(combos))
    if job.mode == "per_asset":
        return _tile_per_asset(job, combos, be)
    return _tile_portfolio(job, combos, be)


def _tile_per_asset(job: _Job, combos: list[dict[str, Any]], be: Backend) -> dict[str, Any]:
    market = job.market
    if job.fast:
        total, trades = sma_cross_ladder(
            market.close, _sma_pairs(combos), exec_price=market.exec_price, shift=market.shift,
            cost_bps=job.cost_bps, slippage_bps=job.slippage_bps, lag=1, min_periods=1,
            mask=market.in_universe, backend=be, asset_block=job.asset_block)
    else:
        from mts1b_quantkit.factors import evaluate

        buy, sell = cost_rates(job.cost_bps / 1e4, job.slippage_bps / 1e4)
        ctx = per_asset_context(market.exec_price, market.close, shift=market.shift,
                                buy_rate=buy, sell_rate=sell, xp=be.xp)
        signal = np.stack([evaluate(job.factor, job.panel, **c) > 0 for c in combos])
        signal &= market.in_universe
        growth, n_in, n_out = per_asset_log_growth(be.asarray(signal), ctx, xp=be.xp)
        total = be.to_numpy(be.xp.expm1(growth))
        trades = be.to_numpy(n_in + n_out)
    # an asset never in the universe while the window is open has no account at all
    never = ~np.asarray(market.in_universe).any(axis=0)
    total[:, never] = np.nan
    trades[:, never] = np.nan
    with warnings.catch_warnings():  # a combination where no asset had an account: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        table = {
            "total_return_mean": np.nanmean(total, axis=1),
            "total_return_median": np.nanmedian(total, axis=1),
            "win_rate": np.nanmean(np.where(np.isfinite(total), total > 0, np.nan), axis=1),
            "trades_mean": np.nanmean(trades, axis=1),
        }
    out: dict[str, Any] = {"table": table}
    if job.keep == "returns":
        out["total_return"] = total
    return out


def _tile_portfolio(job: _Job, combos: list[dict[str, Any]], be: Backend) -> dict[str, Any]:
    from mts1b_quantkit import metrics as qm

    market = job.market
    if job.fast:
        scores = be.to_numpy(_signals_fast(job, combos, be)).astype(np.float64) * 2.0 - 1.0
        targets = np.stack([size_targets(job.panel, s, job.sizing, market.returns)
                            for s in scores])
    else:
        targets = np.stack([compute_targets(job.panel, job.factor, c, job.sizing,
                                            market.returns) for c in combos])
    out = _simulate(be, market, targets, job.rebalance, job.costs, job.row0, job.initial_nav,
                    record_weights=True, record_fills=False)
    nav = be.to_numpy(out.nav)[:, job.row0:]          # (c, T')
    held = be.to_numpy(out.weights)[:, job.row0:]     # (c, T', A)
    prev = np.concatenate([np.full((nav.shape[0], 1), job.initial_nav), nav[:, :-1]], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rets = np.where(prev != 0, nav / prev - 1.0, 0.0).T   # (T', c)
    asset_rets = market.returns[job.row0:]
    table = {
        "total_return": np.asarray(qm.cum_returns_final(rets)),
        "cagr": np.asarray(qm.cagr(rets)),
        "sharpe": np.asarray(qm.sharpe(rets)),
        "sortino": np.asarray(qm.sortino(rets)),
        "max_drawdown": np.asarray(qm.max_drawdown(rets)),
        "volatility": np.asarray(qm.volatility(rets)),
        "calmar": np.asarray(qm.calmar(rets)),
        # the same definition as BacktestResult.turnover: quantkit's, on the held weights
        "turnover": np.array([qm.turnover(w, asset_rets).mean() for w in held]),
        "commission": be.to_numpy(out.commission)[:, job.row0:].sum(axis=1),
    }
    result: dict[str, Any] = {"table": table}
    if job.keep == "returns":
        result["returns"] = rets
    return result


# --------------------------------------------------------------------------------------------
# progress and executors
# --------------------------------------------------------------------------------------------

class _Progress:
    """A tqdm bar over combinations (rate and ETA), or nothing when disabled."""

    def __init__(self, total: int, enabled: bool, desc: str) -> None:
        self._bar: Any = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, unit="combo", desc=desc, dynamic_ncols=True,
                             smoothing=0.1)

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _tiles(combos: list[dict[str, Any]], size: int) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    for lo in range(0, len(combos), size):
        yield lo, combos[lo:lo + size]


def _bounded(combos: list[dict[str, Any]], tile_size: int, limit: int, progress: _Progress,
             submit: Callable[[list[dict[str, Any]]], Any],
             wait_some: Callable[[list[Any]], list[tuple[Any, dict[str, Any]]]]
             ) -> list[tuple[int, dict[str, Any]]]:
    """Run tiles through a pool with at most ``limit`` in flight (bounded memory however many
    tiles there are): ``submit(tile)`` returns a handle, ``wait_some(handles)`` blocks until
    at least one is done and returns ``(handle, result)`` for those that are. The process
    pool and Ray differ only in these two functions."""
    results: list[tuple[int, dict[str, Any]]] = []
    tiles = _tiles(combos, tile_size)
    pending = {submit(tile): (lo, len(tile)) for lo, tile in itertools.islice(tiles, limit)}
    while pending:
        for handle, result in wait_some(list(pending)):
            lo, n = pending.pop(handle)
            results.append((lo, result))
            progress.update(n)
            nxt = next(tiles, None)
            if nxt is not None:
                pending[submit(nxt[1])] = (nxt[0], len(nxt[1]))
    return results


def _pool_context(backend: str) -> BaseContext | None:
    """The process pool's start method: the platform default (fork on Linux), except when
    the workers may use CUDA. Asking whether a device exists initialises CUDA in this process,
    and a CUDA context does not survive fork, so then the workers are spawned (the factor must
    then be importable, as for Ray). Untested on a GPU: none was available."""
    if backend == "cupy" or (backend == "auto" and cupy_status()[0] is not None):
        return multiprocessing.get_context("spawn")
    return None


def _execute(job: _Job, combos: list[dict[str, Any]], tile_size: int, executor: str,
             workers: int, progress: _Progress,
             ray_init: Mapping[str, Any] | None) -> list[tuple[int, dict[str, Any]]]:
    results: list[tuple[int, dict[str, Any]]] = []
    if executor == "local":
        for lo, tile in _tiles(combos, tile_size):
            results.append((lo, _run_tile(job, tile)))
            progress.update(len(tile))
        return results
    if executor == "process":
        with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker,
                                 initargs=(job,), mp_context=_pool_context(job.backend)) as pool:

            def wait_pool(futures: list[Any]) -> list[tuple[Any, dict[str, Any]]]:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                return [(f, f.result()) for f in done]

            return _bounded(combos, tile_size, 2 * workers, progress,
                            lambda tile: pool.submit(_run_tile_in_worker, tile), wait_pool)
    if executor == "ray":
        try:
            import ray
        except ImportError as exc:
            raise BacktestConfigError(
                "executor='ray' needs Ray: pip install 'mts1b-GPUbacktester[ray]'",
                field="executor", value="ray") from exc
        if not ray.is_initialized():
            ray.init(**dict(ray_init or {}))
        job_ref = ray.put(job)
        remote = ray.remote(_run_tile)

        def wait_ray(refs: list[Any]) -> list[tuple[Any, dict[str, Any]]]:
            done, _ = ray.wait(refs, num_returns=1)
            return [(r, ray.get(r)) for r in done]

        return _bounded(combos, tile_size, 2 * workers, progress,
                        lambda tile: remote.remote(job_ref, tile), wait_ray)
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

    def best(self, metric: str | None = None, *, ascending: bool = False) -> pd.Series:
        """The row with the highest ``metric`` (``sharpe`` in portfolio mode,
        ``total_return_mean`` in per-asset mode)."""
        key = metric or ("sharpe" if self.mode == "portfolio" else "total_return_mean")
        col = self.table[key]
        pos = col.idxmin() if ascending else col.idxmax()
        return self.table.loc[pos]

    def __len__(self) -> int:
        return len(self.table)


def run_ladder(factor: Callable[..., Any] | str, grid: Mapping[str, Sequence[Any]], *,
               universe: Any, start: Any = None, end: Any = None,
               constraint: Callable[[dict[str, Any]], bool] | None = None,
               mode: str = "portfolio", rebal: RebalanceSpec = "daily",
               sizing: Mapping[str, Any] | None = None, cost_bps: float = 10.0,
               fill: str = "next_open", slippage: SlippageSpec = None,
               participation: float | None = None,
               borrow_rate: float | Mapping[str, float] | None = None,
               initial_nav: float = 100_000.0, backend: str = "auto",
               tile_size: int | None = None, executor: str = "local",
               workers: int | None = None, progress: bool = True,
               keep: str | None = None, asset_block: int | None = None,
               ray_init: Mapping[str, Any] | None = None, store: Any = None,
               warmup_days: int = 400) -> LadderResult:
    """Evaluate ``factor`` for every combination of ``grid`` that passes ``constraint``.

    ``universe``/``start``/``end``/``rebal``/``sizing``/``cost_bps``/``fill``/``slippage``/
    ``participation``/``borrow_rate``/``initial_nav``/``backend`` mean what they mean in
    :func:`~mts1b_GPUbacktester.run_single` (per-asset mode takes ``cost_bps`` and fixed
    ``slippage`` only). ``tile_size`` combinations are processed together (default: 128 in
    per-asset mode, 16 in portfolio mode); ``executor`` runs tiles in this process, in a
    process pool of ``workers`` (default: the CPU count) or on Ray. ``progress`` shows a bar
    with the rate and ETA. ``keep="returns"`` keeps the per-combination return records.
    """
    if mode not in ("portfolio", "per_asset"):
        raise BacktestConfigError(f"mode must be 'portfolio' or 'per_asset'; got {mode!r}",
                                  field="mode", value=mode)
    combos = expand_grid(grid, constraint)
    panel, row0 = resolve_universe(universe, start, end, warmup_days=warmup_days, store=store)
    name = factor if isinstance(factor, str) else getattr(factor, "__name__", None)
    fast = _is_builtin_sma_cross(factor) and set(grid) <= {"p_fast", "p_slow"}
    slip_bps = 0.0
    if mode == "per_asset":
        if participation is not None or borrow_rate is not None or (
                slippage is not None and not isinstance(slippage, int | float)):
            raise BacktestConfigError(
                "per_asset mode supports cost_bps and fixed slippage (bps) only; use "
                "mode='portfolio' for participation caps, impact and borrow",
                field="mode", value=mode)
        slip_bps = float(slippage or 0.0)
    costs, impact_window = cost_model(panel.symbols, cost_bps=cost_bps, slippage=slippage,
                                      participation=participation, borrow_rate=borrow_rate)
    market = market_arrays(panel, fill, impact_window=impact_window)
    if mode == "per_asset" and row0:
        market = _open_at(market, row0)
        row0 = 0
    n_workers = max(1, workers or os.cpu_count() or 1)
    size = tile_size or (128 if mode == "per_asset" else 16)
    if size < 1:
        raise BacktestConfigError(f"tile_size must be >= 1; got {size}", field="tile_size",
                                  value=size)
    chosen = resolve_backend(backend, cells=panel.shape[0] * panel.shape[1] * size)
    job = _Job(factor=name if fast or isinstance(factor, str) else factor, factor_name=name,
               mode=mode, panel=panel, market=market, row0=row0,
               rebalance=rebalance_rows(panel.dates, rebal, start=row0),
               sizing=dict(DEFAULT_SIZING if sizing is None else sizing), costs=costs,
               initial_nav=initial_nav, backend=chosen.name, fast=fast,
               asset_block=asset_block, keep=keep, cost_bps=float(cost_bps),
               slippage_bps=slip_bps)
    started = time.perf_counter()
    bar = _Progress(len(combos), progress, f"ladder {name or 'factor'}")
    try:
        parts = _execute(job, combos, size, executor, n_workers, bar, ray_init)
    finally:
        bar.close()
    parts.sort(key=lambda p: p[0])
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
              backend=chosen.name, backend_reason=chosen.reason, fast_path=fast,
              seconds=round(elapsed, 3))
    return LadderResult(table=table, mode=mode, backend=chosen.describe(),
                        elapsed_s=elapsed, fast_path=fast,
                        symbols=panel.symbols, dates=panel.dates[row0:], total_return=total,
                        returns=returns)


def _open_at(market: MarketArrays, row0: int) -> MarketArrays:
    """Per-asset accounts trade from ``row0`` on: earlier rows stay in the arrays as factor
    history (the SMA windows see them) but allow no position and no trade."""
    mask = np.asarray(market.in_universe).copy()
    mask[:row0] = False
    exec_price = market.exec_price.copy()
    exec_price[:row0] = np.nan
    return replace(market, in_universe=mask, exec_price=exec_price)
