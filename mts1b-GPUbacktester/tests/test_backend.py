"""Backend dispatch, and the cupy path (skipped with the reason when there is no GPU)."""

from __future__ import annotations

import numpy as np
import pytest
from mts1b_foundation import UniversePanel
from mts1b_GPUbacktester import (
    BackendUnavailable,
    BacktestConfigError,
    cupy_status,
    resolve_backend,
    run_ladder,
    run_weights,
)
from mts1b_GPUbacktester.backend import AUTO_GPU_MIN_CELLS

CUPY, WHY = cupy_status()
needs_gpu = pytest.mark.skipif(CUPY is None, reason=f"no usable GPU: {WHY}")


def test_numpy_is_always_available_and_says_why() -> None:
    be = resolve_backend("numpy")
    assert be.name == "numpy" and be.xp is np and "requested" in be.reason


def test_auto_records_its_reason() -> None:
    be = resolve_backend("auto", cells=10)
    assert be.reason.startswith("auto: ")
    if CUPY is None:
        assert be.name == "numpy" and WHY in be.reason
    else:
        assert be.name == "numpy" and "below" in be.reason
        assert resolve_backend("auto", cells=AUTO_GPU_MIN_CELLS).name == "cupy"


def test_unknown_backend_is_a_config_error() -> None:
    with pytest.raises(BacktestConfigError) as err:
        resolve_backend("tpu")
    assert err.value.context["value"] == "tpu"


@pytest.mark.skipif(CUPY is not None, reason="a GPU is present")
def test_cupy_without_a_device_raises_with_the_reason() -> None:
    with pytest.raises(BackendUnavailable) as err:
        resolve_backend("cupy")
    assert WHY in str(err.value)


def test_results_record_the_backend(panel: UniversePanel) -> None:
    res = run_weights(panel, np.full(panel.shape, 1 / panel.shape[1]), backend="auto")
    assert res.backend["backend"] in ("numpy", "cupy")
    assert res.backend["reason"]


@pytest.mark.gpu
@needs_gpu
def test_cupy_engine_agrees_with_numpy(panel_factory) -> None:  # type: ignore[no-untyped-def]
    panel = panel_factory(400, 30, seed=4)
    rng = np.random.default_rng(0)
    w = rng.normal(size=panel.shape)
    w /= np.abs(w).sum(axis=1, keepdims=True)
    kwargs = dict(rebal="weekly", cost_bps=7, slippage={"model": "sqrt", "k": 0.5},
                  participation=0.2, borrow_rate=0.03)
    cpu = run_weights(panel, w, backend="numpy", **kwargs)  # type: ignore[arg-type]
    gpu = run_weights(panel, w, backend="cupy", **kwargs)  # type: ignore[arg-type]
    assert gpu.backend["backend"] == "cupy"
    np.testing.assert_allclose(gpu.equity.to_numpy(), cpu.equity.to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(gpu.weights_array, cpu.weights_array, atol=1e-9)


@pytest.mark.gpu
@needs_gpu
def test_cupy_ladders_agree_with_numpy(panel_factory) -> None:  # type: ignore[no-untyped-def]
    panel = panel_factory(400, 30, seed=4)
    grid = {"p_fast": [3, 5, 10], "p_slow": [20, 40]}
    for mode in ("per_asset", "portfolio"):
        cpu = run_ladder("f_sma_cross", grid, universe=panel, mode=mode, backend="numpy",
                         progress=False)
        gpu = run_ladder("f_sma_cross", grid, universe=panel, mode=mode, backend="cupy",
                         progress=False)
        np.testing.assert_allclose(gpu.table.to_numpy(float), cpu.table.to_numpy(float),
                                   rtol=1e-9, atol=1e-12)
