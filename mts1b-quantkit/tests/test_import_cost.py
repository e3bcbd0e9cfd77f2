"""What importing quantkit and computing a metric loads: structural checks, no timings.

Importing scipy.stats takes longer than any metric; pandas longer still. These tests pin that
``import mts1b_quantkit`` loads neither, that no submodule imports scipy when it loads, and that
the metrics (the backtester's summary included) run without it. Each check runs in a fresh
interpreter, because this test process has long since imported everything.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from mts1b_quantkit import metrics as qm
from scipy import special, stats

HEAVY = ("scipy", "pandas", "numba", "pyarrow", "duckdb", "plotly")


def _loaded_after(code: str) -> list[str]:
    """The heavy top-level modules present in ``sys.modules`` after ``code`` runs alone."""
    probe = (f"import sys\n{code}\nimport json\n"
             f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=120)
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


def test_import_mts1b_quantkit_loads_no_heavy_module() -> None:
    assert _loaded_after("import mts1b_quantkit") == []


def test_every_submodule_loads_without_scipy_or_pandas() -> None:
    code = ("import mts1b_quantkit as q\n"
            "for name in ('analytics', 'covariance', 'cv', 'factors', 'metrics', 'portfolio',"
            " 'sizing'):\n    getattr(q, name)")
    assert _loaded_after(code) == []


def test_metrics_run_without_scipy() -> None:
    code = ("import numpy as np\n"
            "from mts1b_quantkit import metrics\n"
            "r = np.random.default_rng(0).normal(0.0005, 0.01, 500)\n"
            "metrics.sharpe(r)\n"
            "metrics.sharpe(np.stack([r, r[::-1]], axis=1))\n"
            "metrics.summary(r, r[::-1])\n"
            "metrics.deflated_sharpe_ratio(r, n_trials=20, sharpe_variance=0.3)")
    assert _loaded_after(code) == []


@pytest.mark.parametrize("seed", range(5))
def test_skew_kurtosis_agree_with_scipy(seed: int) -> None:
    # Bit-for-bit with scipy 1.17 (the same steps in the same order); scipy 1.18 (Python 3.12+)
    # reordered its moments, which moves the last digit or two, hence a few ulp of tolerance.
    rng = np.random.default_rng(seed)
    for n in (3, 4, 17, 500, 5000):
        x = rng.standard_t(3 + seed, size=n) * 10.0 ** (seed - 2) + 50.0 * seed
        g3, g4 = qm._skew_kurtosis(x)
        assert g3 == pytest.approx(float(stats.skew(x)), rel=1e-13, abs=1e-13)
        assert g4 == pytest.approx(float(stats.kurtosis(x, fisher=False)), rel=1e-13)


def test_skew_kurtosis_of_a_constant_sample_is_nan_as_in_scipy() -> None:
    for x in (np.full(10, 3.0), np.array([1.0]), np.array([])):
        g3, g4 = qm._skew_kurtosis(x)
        assert math.isnan(g3) and math.isnan(g4)
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        assert math.isnan(float(stats.skew(np.full(10, 3.0))))


def test_normal_cdf_and_quantile_agree_with_scipy() -> None:
    z = np.concatenate([np.linspace(-10.0, 10.0, 20_001),
                        np.random.default_rng(1).normal(0.0, 3.0, 5_000)])
    ours = np.array([qm._norm_cdf(float(v)) for v in z])
    np.testing.assert_allclose(ours, special.ndtr(z), rtol=5e-15, atol=0.0)
    assert math.isnan(qm._norm_cdf(float("nan")))
    p = np.concatenate([np.linspace(1e-9, 1.0 - 1e-9, 20_001),
                        1.0 - 1.0 / np.arange(2, 100_000, 7)])
    ours = np.array([qm._norm_ppf(float(v)) for v in p])
    np.testing.assert_allclose(ours, special.ndtri(p), rtol=1e-14, atol=1e-15)
