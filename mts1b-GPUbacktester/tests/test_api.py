"""The public surface is pinned: adding or removing a name is a deliberate change."""

from __future__ import annotations

import mts1b_GPUbacktester


def test_public_names_are_pinned() -> None:
    assert mts1b_GPUbacktester.__all__ == [
        "Backend",
        "BackendUnavailable",
        "BacktestConfigError",
        "BacktestError",
        "BacktestResult",
        "LadderResult",
        "RunSpec",
        "WalkForwardResult",
        "__version__",
        "cupy_status",
        "expand_grid",
        "resolve_backend",
        "run_ladder",
        "run_single",
        "run_walk_forward",
        "run_weights",
        "sma_cross_ladder",
    ]
    for name in mts1b_GPUbacktester.__all__:
        assert hasattr(mts1b_GPUbacktester, name), name


def test_errors_have_stable_codes() -> None:
    from mts1b_foundation import MtsError

    assert mts1b_GPUbacktester.BacktestConfigError.code == "GPUBACKTESTER.CONFIG"
    assert mts1b_GPUbacktester.BackendUnavailable.code == "GPUBACKTESTER.BACKEND"
    assert issubclass(mts1b_GPUbacktester.BacktestError, MtsError)
    assert issubclass(mts1b_GPUbacktester.BacktestConfigError, ValueError)
