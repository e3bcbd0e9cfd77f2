"""evaluate() for both factor contracts, the built-in factors, and the look-ahead guard."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from mts1b_foundation import UniversePanel
from mts1b_quantkit import factors as qf
from mts1b_quantkit.errors import FactorError


def _real_panel(sp500_close, t_len: int = 320, a_len: int = 30) -> UniversePanel:  # type: ignore[no-untyped-def]
    sub = sp500_close.iloc[:t_len, :a_len]
    close = sub.to_numpy()
    return UniversePanel(sub.index.to_numpy(), list(sub.columns), open=close, high=close * 1.01,
                         low=close * 0.99, close=close, volume=np.ones_like(close))


@pytest.mark.parametrize(("a_len", "p_fast", "p_slow"), [(8, 20, 50), (1, 5, 13), (3, 1, 2)])
def test_sma_cross_fast_is_identical_to_the_seed_loop(a_len, p_fast, p_slow, panel_factory) -> None:  # type: ignore[no-untyped-def]
    panel = panel_factory(a_len=a_len, seed=a_len)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the built-in silences the guide's empty-slice warning
        seed = qf.evaluate("f_sma_cross", panel, p_fast=p_fast, p_slow=p_slow)
    fast = qf.evaluate("f_sma_cross_fast", panel, p_fast=p_fast, p_slow=p_slow)
    np.testing.assert_array_equal(seed, fast)
    assert set(np.unique(seed)) <= {-1.0, 1.0}


def test_sma_cross_fast_identical_on_real_prices(sp500_close) -> None:  # type: ignore[no-untyped-def]
    panel = _real_panel(sp500_close, 400, 60)
    np.testing.assert_array_equal(qf.evaluate("f_sma_cross", panel),
                                  qf.evaluate("f_sma_cross_fast", panel))


def test_sma_cross_fast_averages_like_the_loop(panel) -> None:  # type: ignore[no-untyped-def]
    """The means agree with the guide's loop to 1e-12 (the loop rounds at each addition; the
    compensated prefix sums are within a few ulp of the exact mean, checked with math.fsum)."""
    import math

    close = panel.close
    got = qf.shift(qf.rolling_mean(close, 7, min_periods=1, skipna=False), 1)
    for t in (1, 3, 7, 50, 259):
        loop = close[max(0, t - 7):t].mean(axis=0)
        np.testing.assert_allclose(got[t], loop, rtol=1e-12, atol=0, equal_nan=True)
        window = close[max(0, t - 7):t]
        exact = [math.fsum(window[:, a]) / len(window) for a in range(close.shape[1])]
        np.testing.assert_allclose(got[t], exact, rtol=5e-16, atol=0, equal_nan=True)


def test_cross_sectional_factor_is_evaluated_point_in_time(panel) -> None:  # type: ignore[no-untyped-def]
    def f_xs(panel, /, h=21):  # type: ignore[no-untyped-def]
        return qf.zscore_cross_sectional(panel.close[-1] / panel.close[-h] - 1)

    got = qf.evaluate(f_xs, panel, h=10)
    close = panel.close
    ref = qf.zscore_cross_sectional(close / qf.shift(close, 9) - 1)
    np.testing.assert_allclose(got, ref, rtol=1e-13, equal_nan=True)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    assert np.isnan(got[:9]).all()  # not enough history: IndexError -> NaN rows
    np.testing.assert_array_equal(qf.evaluate("f_xs_momentum", panel, h=10), got)


def test_cross_sectional_factor_sees_only_the_past(panel) -> None:  # type: ignore[no-untyped-def]
    seen: list[int] = []

    def f_probe(p, /):  # type: ignore[no-untyped-def]
        seen.append(len(p))
        assert p.dates[-1] == panel.dates[len(p) - 1]
        with pytest.raises(ValueError, match="read-only"):
            p.close[0, 0] = 1.0
        return p.close[-1]

    out = qf.evaluate(f_probe, panel)
    assert sorted(seen) == list(range(1, len(panel) + 1))
    np.testing.assert_array_equal(out, panel.close)


def test_evaluate_rejects_wrong_shapes(panel) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FactorError, match=r"expected \(T, A\)"):
        qf.evaluate(lambda p, /: p.close[:, :3], panel)
    with pytest.raises(FactorError, match="IndexError"):
        qf.evaluate(lambda p, /: p.close[-1000], panel)


def test_evaluate_accepts_registered_names_and_params(panel) -> None:  # type: ignore[no-untyped-def]
    out = qf.evaluate("f_momentum_12_1", panel, h_long=60, h_skip=5)
    assert out.shape == panel.shape and out.dtype == np.float64
    assert np.isnan(out[:60]).all() and np.isfinite(out[61:, 0]).all()


@pytest.mark.parametrize("name", ["f_sma_cross", "f_sma_cross_fast", "f_momentum_12_1",
                                  "f_reversal", "f_low_volatility", "f_rsi_reversion",
                                  "f_xs_momentum"])
def test_builtin_factors_pass_the_lookahead_guard(name, sp500_close) -> None:  # type: ignore[no-untyped-def]
    panel = _real_panel(sp500_close, 300, 25)
    params = {"h_long": 120, "h_skip": 10} if name == "f_momentum_12_1" else {}
    report = qf.check_lookahead(name, panel, cuts=6, **params)
    assert report.ok, str(report)
    assert bool(report) and "no look-ahead" in str(report)


def _peeking_factors():  # type: ignore[no-untyped-def]
    def f_tomorrow(panel, /):  # type: ignore[no-untyped-def]
        nxt = np.full(panel.shape, np.nan)
        nxt[:-1] = panel.close[1:]  # shifted closes: reads t + 1
        return nxt / panel.close - 1

    def f_centred(panel, /):  # type: ignore[no-untyped-def]
        pd = pytest.importorskip("pandas")
        return pd.DataFrame(panel.close).rolling(11, center=True).mean().to_numpy()

    def f_full_sample_z(panel, /):  # type: ignore[no-untyped-def]
        c = panel.close
        return (c - np.nanmean(c, axis=0)) / np.nanstd(c, axis=0)

    def f_xs_peek(panel, /):  # type: ignore[no-untyped-def] - cross-section of the last row
        return 2.0 * panel.close[-1]  # only the last row it is given: honest

    return {"shift": f_tomorrow, "centred": f_centred, "normalised": f_full_sample_z,
            "honest_xs": f_xs_peek}


@pytest.mark.parametrize("kind", ["shift", "centred", "normalised"])
def test_lookahead_guard_catches_peeking_factors(kind, panel) -> None:  # type: ignore[no-untyped-def]
    report = qf.check_lookahead(_peeking_factors()[kind], panel)
    assert not report.ok
    assert report.changed_rows
    assert all(0 <= r < len(panel) for r in report.changed_rows)
    assert "LOOK-AHEAD" in str(report)
    assert report.details and all(len(d) == 3 for d in report.details)


def test_lookahead_guard_reports_the_rows_that_changed(panel) -> None:  # type: ignore[no-untyped-def]
    report = qf.check_lookahead(_peeking_factors()["shift"], panel, cuts=[100, 200])
    assert report.cuts == (100, 200)
    assert report.changed_rows == (99, 199)  # the last row before each cut needs row t + 1


def test_lookahead_guard_passes_honest_cross_sectional_factor(panel) -> None:  # type: ignore[no-untyped-def]
    assert qf.check_lookahead(_peeking_factors()["honest_xs"], panel, cuts=4).ok


def test_lookahead_guard_bad_cuts(panel) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FactorError, match="cut"):
        qf.check_lookahead("f_reversal", panel, cuts=[0])
