"""The cupy code path, run on the CPU through the strict stand-in (tests/fake_cupy.py).

The stand-in is installed as ``cupy`` (the ``fake_cupy`` fixture), so ``backend="cupy"`` goes
through ``cupy_status``, ``resolve_backend``, ``Backend.asarray``/``to_numpy`` and every kernel
line that only runs with ``xp=cupy``. A host/device mix-up anywhere raises ``TypeError`` as it
would on a GPU. Results must equal the numpy backend to 1e-9 (the backends' contract); with
the stand-in's CPU arithmetic they are in fact identical.

The first tests check the stand-in itself: a stand-in that quietly accepted numpy arrays would
make every parity test below pass for nothing.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mts1b_foundation import UniversePanel
from mts1b_GPUbacktester import (
    BacktestResult,
    cupy_status,
    resolve_backend,
    run_ladder,
    run_single,
    run_weights,
    sma_cross_ladder,
)
from mts1b_GPUbacktester.backend import AUTO_GPU_MIN_CELLS, Backend
from mts1b_GPUbacktester.kernels import (
    per_asset_context,
    per_asset_log_growth,
    rolling_mean_stack,
)
from mts1b_quantkit.factors import get

IMPLICIT = r"Implicit conversion to a NumPy array is not allowed\. Please use `\.get\(\)`"


# --------------------------------------------------------------------------------------------
# the stand-in is as strict as cupy where it matters
# --------------------------------------------------------------------------------------------

def test_device_arrays_refuse_implicit_conversion(fake_cupy: ModuleType) -> None:
    host = np.arange(6.0).reshape(2, 3)
    dev = fake_cupy.asarray(host)
    assert not isinstance(dev, np.ndarray)
    for leak in (lambda: np.asarray(dev), lambda: np.array(dev), lambda: pd.Series(dev),
                 lambda: pd.DataFrame(dev), lambda: np.concatenate([dev]),
                 lambda: np.where(dev > 1, 1.0, 0.0), lambda: np.ones(3)[fake_cupy.arange(2)]):
        with pytest.raises(TypeError, match=IMPLICIT):
            leak()
    with pytest.raises(TypeError):
        np.isnan(dev)  # numpy ufuncs refuse device arrays (cupy would dispatch; see module)
    with pytest.raises(TypeError):
        float(dev)  # only a one-element array reads back as a scalar
    for not_on_a_gpu in (None, np.array(["a"]), np.array(["2020-01-01"], "datetime64[D]")):
        with pytest.raises(ValueError, match="Unsupported dtype"):
            fake_cupy.asarray(not_on_a_gpu)
    got = dev.get()
    assert isinstance(got, np.ndarray)
    np.testing.assert_array_equal(got, host)
    got[0, 0] = 99.0  # .get() is a copy, not a view of the device
    assert float(dev[0, 0]) == 0.0
    host[0, 1] = 99.0  # asarray copied the host array to the device
    assert float(dev[0, 1]) == 1.0


def test_device_operations_refuse_host_arrays(fake_cupy: ModuleType) -> None:
    dev = fake_cupy.asarray(np.ones((2, 3)))
    host = np.ones((2, 3))
    for mix in (lambda: dev + host, lambda: host + dev, lambda: dev & (host > 0),
                lambda: fake_cupy.where(host > 0, dev, 0.0),
                lambda: fake_cupy.maximum(dev, host),
                lambda: fake_cupy.cumsum(dev, axis=0, out=host)):
        with pytest.raises(TypeError):
            mix()
    with pytest.raises(ValueError, match="cannot be used for fill"):
        dev[0] = host[0]  # a basic slice takes no host array (cupy's fill)
    # what cupy accepts: scalars (numpy's too), host index arrays, one-element read-backs
    scaled = np.float64(2.0) * dev + 1
    assert isinstance(scaled, fake_cupy.ndarray)
    picked = dev[np.array([1]), np.array([2])]
    assert isinstance(picked, fake_cupy.ndarray) and picked.shape == (1,)
    assert isinstance(dev[0, 0], fake_cupy.ndarray)  # a 0-d device array, not a float
    assert bool(fake_cupy.all(dev == 1.0)) and float(dev.sum()) == 6.0
    dev[np.array([0])] = np.array([[5.0, 5.0, 5.0]])  # an advanced index copies the value
    np.testing.assert_array_equal(fake_cupy.asnumpy(dev)[0], [5.0, 5.0, 5.0])


def test_views_and_out_write_through(fake_cupy: ModuleType) -> None:
    csum = fake_cupy.zeros((4, 2))
    fake_cupy.cumsum(fake_cupy.asarray(np.ones((3, 2))), axis=0, out=csum[1:])
    np.testing.assert_array_equal(csum.get()[:, 0], [0.0, 1.0, 2.0, 3.0])
    flags = fake_cupy.zeros((2, 3), dtype=bool)
    flags[:1] |= fake_cupy.asarray(np.array([[True, False, True]]))
    np.testing.assert_array_equal(flags.get()[0], [True, False, True])


# --------------------------------------------------------------------------------------------
# backend selection finds the stand-in like a real install
# --------------------------------------------------------------------------------------------

def test_cupy_status_and_resolve_backend_take_the_stand_in(
        fake_cupy: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    module, why = cupy_status()
    assert module is fake_cupy
    assert why == f"cupy {fake_cupy.__version__} on {fake_cupy.DEVICE_NAME}"
    be = resolve_backend("cupy")
    assert be.name == "cupy" and be.xp is fake_cupy and why in be.reason
    # with a device present, auto still takes the compiled CPU engine: no GPU measurement in
    # bench/RESULTS.md shows cupy faster ...
    assert AUTO_GPU_MIN_CELLS is None
    assert resolve_backend("auto", cells=10**10).name == "numba"
    # ... and once one is recorded, auto takes cupy from that size on
    import mts1b_GPUbacktester.backend as backend_module

    monkeypatch.setattr(backend_module, "AUTO_GPU_MIN_CELLS", 2_000_000)
    assert resolve_backend("auto", cells=2_000_000).name == "cupy"
    small = resolve_backend("auto", cells=10)
    assert small.name == "numba" and "below" in small.reason
    dev = be.asarray(np.ones(3))
    assert isinstance(dev, fake_cupy.ndarray)
    back = be.to_numpy(dev)
    assert isinstance(back, np.ndarray) and back.tolist() == [1.0, 1.0, 1.0]


# --------------------------------------------------------------------------------------------
# the engine on the cupy path equals the numpy backend
# --------------------------------------------------------------------------------------------

def _with(panel: UniversePanel, **fields: Any) -> UniversePanel:
    base = {k: np.array(panel.field(k)) for k in ("open", "high", "low", "close", "volume")}
    mask = fields.pop("mask", None)
    base.update(fields)
    return UniversePanel(panel.dates, panel.symbols, mask=mask, **base)


def _messy(panel: UniversePanel) -> UniversePanel:
    """Gaps, a delisting and a universe exit: every special case of the engine."""
    close, opens = np.array(panel.close), np.array(panel.open)
    close[40:44, 0] = np.nan
    opens[40:44, 0] = np.nan
    close[150:, 1] = np.nan
    opens[150:, 1] = np.nan
    mask = np.ones(panel.shape, bool)
    mask[90:, 2] = False
    return _with(panel, close=close, open=opens, mask=mask)


def _assert_same_run(dev: BacktestResult, cpu: BacktestResult) -> None:
    assert dev.backend["backend"] == "cupy" and cpu.backend["backend"] == "numpy"
    np.testing.assert_allclose(dev.equity.to_numpy(), cpu.equity.to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(dev.weights_array, cpu.weights_array, rtol=0, atol=1e-9)
    np.testing.assert_allclose(dev.costs.to_numpy(), cpu.costs.to_numpy(), rtol=1e-9,
                               atol=1e-9)
    dt, ct = dev.trades, cpu.trades
    assert len(dt) == len(ct) > 0
    assert (dt["date"] == ct["date"]).all() and (dt["symbol"] == ct["symbol"]).all()
    assert (dt["reason"] == ct["reason"]).all()
    np.testing.assert_allclose(dt["shares"], ct["shares"], rtol=1e-9)


ENGINE_CASES = {
    "daily_next_open": dict(rebal="daily"),
    "weekly_impact_cap_borrow": dict(rebal="weekly", cost_bps=7,
                                     slippage={"model": "sqrt", "k": 0.5},
                                     participation=0.2, borrow_rate=0.03),
    "monthly_next_close_fixed_slippage": dict(rebal="monthly", fill="next_close", slippage=5),
    "close_fill_per_symbol_costs": dict(rebal="weekly", fill="close",
                                        cost_bps={"S00": 3.0, "S01": 20.0},
                                        borrow_rate={"S03": 0.1}),
}


@pytest.mark.parametrize("case", sorted(ENGINE_CASES))
@pytest.mark.parametrize("messy", [False, True], ids=["clean", "gaps_delist_exit"])
def test_run_weights_on_the_cupy_path_equals_numpy(fake_cupy: ModuleType, panel_factory: Any,
                                                   case: str, messy: bool) -> None:
    panel = panel_factory(220, 8, seed=4)
    if messy:
        panel = _messy(panel)
    rng = np.random.default_rng(0)
    w = rng.normal(size=panel.shape)
    w /= np.abs(w).sum(axis=1, keepdims=True)
    w[160:200] = 0.0  # a stretch in cash: quiet rebalance bars, checked a block at a time
    kwargs: dict[str, Any] = {**ENGINE_CASES[case], "benchmark": False}
    cpu = run_weights(panel, w, backend="numpy", **kwargs)
    dev = run_weights(panel, w, backend="cupy", **kwargs)
    _assert_same_run(dev, cpu)
    if messy:
        assert {"delisted", "universe_exit"} <= set(dev.trades["reason"])


def test_run_single_on_the_cupy_path_equals_numpy(fake_cupy: ModuleType,
                                                  panel_factory: Any) -> None:
    panel = _messy(panel_factory(260, 6, seed=9))
    kwargs: dict[str, Any] = dict(factor="f_sma_cross", params={"p_fast": 5, "p_slow": 20},
                                  universe=panel, start=panel.dates[30], rebal="weekly",
                                  participation=0.5, benchmark=False)
    cpu = run_single(backend="numpy", **kwargs)
    dev = run_single(backend="cupy", **kwargs)
    _assert_same_run(dev, cpu)
    assert fake_cupy.DEVICE_NAME in dev.backend["reason"]


def test_auto_takes_the_cupy_path_for_large_problems(fake_cupy: ModuleType, panel: UniversePanel,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import mts1b_GPUbacktester.backend as backend_module

    monkeypatch.setattr(backend_module, "AUTO_GPU_MIN_CELLS", 1)
    w = np.full(panel.shape, 1.0 / panel.shape[1])
    dev = run_weights(panel, w, backend="auto", benchmark=False)
    assert dev.backend["backend"] == "cupy" and dev.backend["reason"].startswith("auto: cupy")
    _assert_same_run(dev, run_weights(panel, w, backend="numpy", benchmark=False))


# --------------------------------------------------------------------------------------------
# the ladders (every mode, fast and generic paths) and the kernels on the cupy path
# --------------------------------------------------------------------------------------------

GRID = {"p_fast": [3, 5, 8], "p_slow": [10, 21]}


def _slow_sma_cross(panel, /, p_fast=20, p_slow=50):  # type: ignore[no-untyped-def]
    """quantkit's factor behind another name: the ladder takes the generic path."""
    return get("f_sma_cross")(panel, p_fast=p_fast, p_slow=p_slow)


@pytest.mark.parametrize("mode", ["per_asset", "portfolio"])
@pytest.mark.parametrize("factor", ["f_sma_cross", _slow_sma_cross], ids=["fast", "generic"])
def test_ladders_on_the_cupy_path_equal_numpy(fake_cupy: ModuleType, panel_factory: Any,
                                              mode: str, factor: Any) -> None:
    panel = _messy(panel_factory(220, 7, seed=4))
    kwargs: dict[str, Any] = dict(universe=panel, start=panel.dates[25], mode=mode,
                                  tile_size=4, keep="returns", progress=False)
    if mode == "portfolio":
        kwargs.update(rebal="weekly", participation=0.5, borrow_rate=0.02)
    cpu = run_ladder(factor, GRID, backend="numpy", **kwargs)
    dev = run_ladder(factor, GRID, backend="cupy", **kwargs)
    assert dev.backend["backend"] == "cupy" and dev.fast_path == (factor == "f_sma_cross")
    metrics = [c for c in cpu.table.columns if c not in GRID]
    np.testing.assert_allclose(dev.table[metrics].to_numpy(float),
                               cpu.table[metrics].to_numpy(float), rtol=1e-9, atol=1e-12)
    for got, want in ((dev.total_return, cpu.total_return), (dev.returns, cpu.returns)):
        assert (got is None) == (want is None)
        if want is not None:
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_sma_cross_ladder_blocks_masks_and_shift_on_the_cupy_path(fake_cupy: ModuleType,
                                                                    panel: UniversePanel) -> None:
    close = np.array(panel.close)
    close[50:55, 1] = np.nan
    mask = np.ones(panel.shape, bool)
    mask[100:, 3] = False
    pairs = [(3, 10), (5, 10), (5, 21), (8, 21), (10, 40)]
    kwargs: dict[str, Any] = dict(exec_price=np.array(panel.open), shift=1, cost_bps=5,
                                  slippage_bps=2, lag=1, min_periods=1, mask=mask,
                                  asset_block=4, tile_size=2)
    be = Backend("cupy", fake_cupy, "the stand-in, handed over directly")
    want = sma_cross_ladder(close, pairs, backend="numpy", **kwargs)
    got = sma_cross_ladder(close, pairs, backend=be, **kwargs)
    for g, w in zip(got, want, strict=True):
        assert isinstance(g, np.ndarray)
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("lag", "min_periods"), [(0, None), (1, 1), (2, 3), (0, 50)])
def test_rolling_mean_stack_on_the_device(fake_cupy: ModuleType, panel: UniversePanel,
                                          lag: int, min_periods: int | None) -> None:
    close = np.array(panel.close)
    close[10:13, 0] = np.nan
    windows = [1, 3, 10, 40]
    want = rolling_mean_stack(close, windows, lag=lag, min_periods=min_periods)
    got = rolling_mean_stack(fake_cupy.asarray(close), windows, lag=lag,
                             min_periods=min_periods, xp=fake_cupy)
    assert isinstance(got, fake_cupy.ndarray)
    np.testing.assert_allclose(got.get(), want, rtol=1e-9, atol=1e-12, equal_nan=True)


def test_per_asset_log_growth_on_the_device(fake_cupy: ModuleType, panel: UniversePanel) -> None:
    close = np.array(panel.close)
    close[30:33, 2] = np.nan
    close[200:, 4] = np.nan  # delisted: the open account is closed at the last close
    rng = np.random.default_rng(3)
    signal = rng.random((3, *close.shape)) > 0.4
    args: dict[str, Any] = dict(shift=1, buy_rate=1e-3, sell_rate=2e-3)
    want = per_asset_log_growth(signal, per_asset_context(close, close, **args))
    ctx = per_asset_context(close, close, xp=fake_cupy, **args)
    got = per_asset_log_growth(fake_cupy.asarray(signal), ctx, xp=fake_cupy)
    for g, w in zip(got, want, strict=True):
        assert isinstance(g, fake_cupy.ndarray)
        np.testing.assert_allclose(g.get(), w, rtol=1e-9, atol=1e-12)


def test_process_pool_spawns_its_workers_when_they_may_use_cuda(fake_cupy: ModuleType) -> None:
    """CUDA does not survive fork: with a device present (here the stand-in), a pool whose
    workers may use cupy is started with spawn; numpy-only pools keep the platform default."""
    from mts1b_GPUbacktester.ladder import _pool_context

    for backend in ("cupy", "auto"):
        ctx = _pool_context(backend)
        assert ctx is not None and ctx.get_start_method() == "spawn"
    assert _pool_context("numpy") is None


def test_process_pool_keeps_the_default_without_a_device() -> None:
    from mts1b_GPUbacktester.backend import cupy_status
    from mts1b_GPUbacktester.ladder import _pool_context

    if cupy_status()[0] is not None:
        pytest.skip("a CUDA device is present")
    assert _pool_context("auto") is None and _pool_context("numpy") is None
