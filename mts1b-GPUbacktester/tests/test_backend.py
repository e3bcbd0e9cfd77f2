"""Backend dispatch, and the cupy path (skipped with the reason when there is no GPU)."""

from __future__ import annotations

import re
from pathlib import Path

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
from mts1b_GPUbacktester import backend as backend_module
from mts1b_GPUbacktester.backend import AUTO_GPU_MIN_CELLS, NO_GPU_MEASUREMENT

CUPY, WHY = cupy_status()
needs_gpu = pytest.mark.skipif(CUPY is None, reason=f"no usable GPU: {WHY}")


def test_numpy_and_numba_are_always_available_and_say_why() -> None:
    be = resolve_backend("numpy")
    assert be.name == "numpy" and be.xp is np and "reference" in be.reason
    assert not be.compiled
    be = resolve_backend("numba")
    assert be.name == "numba" and be.xp is np and "compiled" in be.reason
    assert be.compiled


def test_auto_is_the_compiled_engine_without_a_gpu_measurement() -> None:
    """No GPU figure is recorded, so auto runs the compiled CPU engine at every size, with or
    without a device, and does not even import cupy."""
    assert AUTO_GPU_MIN_CELLS is None
    for cells in (10, 2_000_000, 10**10, None):
        be = resolve_backend("auto", cells=cells)
        assert be.name == "numba" and be.reason.startswith("auto: numba")
        assert NO_GPU_MEASUREMENT in be.reason


def test_auto_rule_agrees_with_bench_results() -> None:
    """bench/RESULTS.md states the size from which a GPU measurement shows cupy faster (or
    that there is none) in one line; the constant auto reads must say the same."""
    results = Path(__file__).resolve().parents[2] / "bench" / "RESULTS.md"
    if not results.exists():
        pytest.skip(f"{results} is not in this checkout (an installed wheel)")
    found = re.findall(r"^auto backend rule: AUTO_GPU_MIN_CELLS = (\S+)", results.read_text(),
                       flags=re.MULTILINE)
    assert len(found) == 1, "bench/RESULTS.md must state the auto backend rule once"
    recorded = None if found[0] == "None" else int(found[0].replace(",", ""))
    assert recorded == AUTO_GPU_MIN_CELLS


def test_auto_picks_cupy_only_above_a_recorded_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend_module, "AUTO_GPU_MIN_CELLS", 1_000)
    be = resolve_backend("auto", cells=10)
    assert be.name == "numba"
    if CUPY is None:
        assert WHY in be.reason
        assert resolve_backend("auto", cells=10_000).name == "numba"
    else:
        assert "below 1,000 cells" in be.reason
        assert resolve_backend("auto", cells=10_000).name == "cupy"


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
    assert res.backend["backend"] == "numba"
    assert res.backend["reason"].startswith("auto: numba")


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
