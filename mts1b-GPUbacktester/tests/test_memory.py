"""Memory of a run beyond its inputs, in panel-sized arrays (``T * A * 8`` bytes): a bound.

Measured with ``tracemalloc``, which sees every numpy allocation (the compiled engine
allocates its outputs, ledger chunks and scratch through numpy, in Python, for that reason).
The inputs (the panel and the target weights) exist before the measurement starts. What a run
must keep: the held weights (one array), the assets' returns (one), the fill ledger (20 bytes
a fill, 28 with slippage, at most about one fill per cell), and small ``(T,)`` records.

The case is the worst one for the ledger: a daily rebalance of a drifting book that holds
every asset, so almost every cell of the panel fills. This is a structural bound, not a
timing: the same code allocates the same bytes on any machine.
"""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

import numpy as np
import pytest
from mts1b_foundation import UniversePanel
from mts1b_GPUbacktester import run_weights

BOUND = 6.0  # panel-sized arrays beyond the inputs (issue #16)


def _peak(fn: Any) -> tuple[float, Any]:
    """``(peak bytes traced while fn runs, its result)``."""
    gc.collect()
    tracemalloc.start()
    try:
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return float(peak), result


@pytest.fixture(scope="module")
def big(panel_factory_module: Any) -> tuple[UniversePanel, np.ndarray]:
    panel = panel_factory_module(600, 160, seed=12)
    rng = np.random.default_rng(0)
    w = rng.uniform(0.2, 1.0, panel.shape)
    return panel, w / w.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("kwargs", [{}, {"slippage": 5}, {"participation": 0.5,
                                                          "borrow_rate": 0.02},
                                    {"trade_on": "signal_change", "band": 0.001}],
                         ids=["plain", "slippage", "cap_borrow", "signal_band"])
def test_run_weights_peak_is_at_most_six_panel_arrays(big: tuple[UniversePanel, np.ndarray],
                                                      kwargs: dict[str, Any]) -> None:
    panel, w = big
    unit = panel.shape[0] * panel.shape[1] * 8
    run_weights(panel, w, backend="numba", **kwargs)  # warm: imports, numba's cache
    peak, res = _peak(lambda: run_weights(panel, w, backend="numba", **kwargs))
    if not kwargs:  # the worst case for the ledger: nearly every cell filled
        assert len(res.trades) > 0.95 * panel.shape[0] * panel.shape[1]
    assert peak / unit <= BOUND, f"peak {peak / unit:.2f} panel arrays"


def test_the_ledger_stores_twenty_bytes_a_fill(big: tuple[UniversePanel, np.ndarray]) -> None:
    """Key (row, asset, reason in one int32), shares, commission; no price, no zero slippage."""
    from mts1b_GPUbacktester.sim import FillLedger

    panel, w = big
    res = run_weights(panel, w, backend="numba")
    ledger: FillLedger = res._fills
    stored = sum(col.nbytes for part in ledger._parts for col in part)
    assert stored == 20 * len(ledger)
