"""The rolling windows (mts1b_quantkit.factors.rolling): pandas parity with missing values and
infinities, the skipna=False convention, precision against exact sums on long series, the std's
exact recheck of nearly constant windows, point-in-time values, and layout independence."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from mts1b_quantkit.errors import FactorError
from mts1b_quantkit.factors import rolling as rw
from mts1b_quantkit.factors import shift

pd = pytest.importorskip("pandas")


def _walk(t_len: int, a_len: int, seed: int = 0, level: float = 50.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return level * np.exp(np.cumsum(rng.normal(0.0, 0.02, (t_len, a_len)), axis=0))


@pytest.fixture(scope="module")
def messy() -> np.ndarray:
    """A random-walk panel with a gap, a late listing, a long hole and +/-inf values."""
    x = _walk(400, 7, seed=3)
    x[10:14, 1] = np.nan
    x[:30, 2] = np.nan
    x[100, 3] = np.inf
    x[250, 3] = -np.inf
    x[200:260, 4] = np.nan
    return x


def assert_same(mine: np.ndarray, ref: object, rtol: float) -> None:
    ref = np.asarray(ref, dtype=float)
    assert mine.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(mine), np.isnan(ref))
    np.testing.assert_allclose(mine, ref, rtol=rtol, atol=0, equal_nan=True)


@pytest.mark.parametrize(("window", "min_periods"),
                         [(1, None), (3, None), (20, 5), (20, 1), (63, None), (500, 1), (20, 0)])
def test_windows_match_pandas_with_missing_values_and_infinities(messy, window,  # type: ignore[no-untyped-def]
                                                                 min_periods) -> None:
    """NaN and +/-inf are missing, as in pandas' rolling windows."""
    roll = pd.DataFrame(messy).rolling(window, min_periods=min_periods)
    assert_same(rw.rolling_sum(messy, window, min_periods=min_periods), roll.sum(), 1e-13)
    if min_periods == 0:  # a mean or a std needs one value: pandas treats 0 as 1
        return
    assert_same(rw.rolling_mean(messy, window, min_periods=min_periods), roll.mean(), 1e-13)
    assert_same(rw.rolling_min(messy, window, min_periods=min_periods), roll.min(), 0)
    assert_same(rw.rolling_max(messy, window, min_periods=min_periods), roll.max(), 0)
    # pandas' running update drifts on price levels (1e-8 was seen); see the exact test below
    assert_same(rw.rolling_std(messy, window, min_periods=min_periods), roll.std(), 1e-7)
    assert_same(rw.rolling_std(messy, window, min_periods=min_periods, ddof=0),
                roll.std(ddof=0), 1e-7)


def test_a_series_is_one_column(messy) -> None:  # type: ignore[no-untyped-def]
    col = messy[:, 1]
    for fn in (rw.rolling_sum, rw.rolling_mean, rw.rolling_std, rw.rolling_min, rw.rolling_max):
        got = fn(col, 9)
        assert got.shape == col.shape
        np.testing.assert_array_equal(got, fn(messy, 9)[:, 1])
    assert rw.rolling_means(col, [3, 9]).shape == (2, *col.shape)
    assert rw.rolling_mean(np.empty((0, 3)), 5).shape == (0, 3)
    assert rw.rolling_std(np.empty(0), 5).shape == (0,)


def test_skipna_false_is_the_loop_over_windows(messy) -> None:  # type: ignore[no-untyped-def]
    """skipna=False: a window with any missing value is NaN; min_periods counts rows."""
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        loop = np.array([messy[max(0, t - 6):t + 1].mean(axis=0) for t in range(len(messy))])
        loop_sum = np.array([messy[max(0, t - 6):t + 1].sum(axis=0) for t in range(len(messy))])
    loop[~np.isfinite(loop)] = np.nan
    loop_sum[~np.isfinite(loop_sum)] = np.nan
    loop[:2] = loop_sum[:2] = np.nan  # fewer than min_periods=3 rows
    assert_same(rw.rolling_mean(messy, 7, min_periods=3, skipna=False), loop, 1e-13)
    assert_same(rw.rolling_sum(messy, 7, min_periods=3, skipna=False), loop_sum, 1e-13)


def test_rolling_means_shares_one_prefix_and_lags(messy) -> None:  # type: ignore[no-untyped-def]
    windows = [1, 5, 20, 5]
    got = rw.rolling_means(messy, windows, lag=2, min_periods=3, skipna=False)
    assert got.shape == (4, *messy.shape)
    for k, w in enumerate(windows):
        want = shift(rw.rolling_mean(messy, w, min_periods=min(3, w), skipna=False), 2)
        if w < 3:  # min_periods above the window: never enough rows
            want = np.full(messy.shape, np.nan)
        np.testing.assert_array_equal(got[k], want)
    np.testing.assert_array_equal(rw.rolling_means(messy, [9])[0], rw.rolling_mean(messy, 9))


def test_bad_arguments_name_the_parameter() -> None:
    with pytest.raises(FactorError, match="window"):
        rw.rolling_std(np.ones(5), 0)
    with pytest.raises(FactorError, match="windows"):
        rw.rolling_means(np.ones(5), [3, 0])
    with pytest.raises(FactorError, match="lag"):
        rw.rolling_means(np.ones(5), [3], lag=-1)
    with pytest.raises(FactorError, match="min_periods"):
        rw.rolling_max(np.ones(5), 3, min_periods=4)
    with pytest.raises(FactorError, match="ddof"):
        rw.rolling_std(np.ones(5), 3, ddof=-1)
    with pytest.raises(FactorError, match="shape"):
        rw.rolling_mean(np.ones((2, 2, 2)), 2)


def _exact_window_sums(x: np.ndarray, window: int, rows: np.ndarray) -> np.ndarray:
    return np.array([math.fsum(x[max(0, t - window + 1):t + 1]) for t in rows])


@pytest.mark.parametrize("window", [5, 250])
def test_sums_stay_exact_on_a_long_drifting_series(window: int) -> None:
    """200,000 rows drifting from 10,000 to about 1: a running sum's error grows with its
    total, the compensated prefix sums stay within a few ulp of the exact window sums."""
    rng = np.random.default_rng(7)
    t_len = 200_000
    x = 1e4 * np.exp(np.cumsum(rng.normal(-4.6e-5, 0.01, t_len)))
    rows = np.sort(rng.choice(np.arange(window, t_len), 2_000, replace=False))
    exact = _exact_window_sums(x, window, rows)
    got = rw.rolling_sum(x, window)[rows]
    rel = np.abs(got - exact) / exact
    assert rel.max() <= 4 * np.finfo(float).eps
    # a plain running sum (compensated=False) loses digits with the series' length; its means
    # are those of numpy's cumsum, bit for bit
    plain = rw.rolling_means(x, [window], compensated=False)[0][rows]
    assert (np.abs(plain - exact / window) / (exact / window)).max() > 1e-11
    csum = np.concatenate([[0.0], np.cumsum(x)])
    assert plain.tobytes() == ((csum[rows + 1] - csum[rows + 1 - window]) / window).tobytes()


def test_sums_on_the_real_sp500_file(sp500_close) -> None:  # type: ignore[no-untyped-def]
    """The 505 stocks' closes: every window sum within 4 ulp of math.fsum (the sampled rows),
    the means within 1e-13 of pandas'."""
    close = sp500_close.to_numpy()
    got = rw.rolling_sum(close, 50)
    rng = np.random.default_rng(1)
    rows = rng.integers(49, close.shape[0], 300)
    cols = rng.integers(0, close.shape[1], 300)
    for t, a in zip(rows, cols, strict=True):
        window = close[t - 49:t + 1, a]
        if np.isfinite(window).all():
            exact = math.fsum(window)
            assert abs(got[t, a] - exact) <= 4 * np.finfo(float).eps * abs(exact)
        else:
            assert math.isnan(got[t, a])
    assert_same(rw.rolling_mean(close, 50), sp500_close.rolling(50).mean(), 1e-13)


def _exact_std(x: np.ndarray, window: int) -> np.ndarray:
    """Two-pass std of every full window in long double."""
    out = np.full(x.shape, np.nan)
    for t in range(window - 1, x.shape[0]):
        for a in range(x.shape[1]):
            v = x[t - window + 1:t + 1, a].astype(np.longdouble)
            if v.min() == v.max():
                out[t, a] = 0.0
            elif np.isfinite(v).all():
                m = v.sum() / window
                out[t, a] = float(np.sqrt(((v - m) ** 2).sum() / (window - 1)))
    return out


def test_std_is_near_exact_where_pandas_drifts() -> None:
    """Price levels with a stale stretch: within 1e-12 of a long-double two-pass std
    (typically 1e-16), constant windows exactly 0; pandas' running update drifts further."""
    x = _walk(1_500, 4, seed=11, level=400.0)
    x[500:600, 1] = x[499, 1]              # a stale price: constant windows
    for window in (5, 63):
        exact = _exact_std(x, window)
        got = rw.rolling_std(x, window)
        ok = np.isfinite(exact)
        zero = ok & (exact == 0)
        assert zero.any() and (got[zero] == 0).all()
        rel = np.abs(got - exact)[ok & ~zero] / exact[ok & ~zero]
        assert rel.max() < 1e-12 and np.median(rel) < 1e-15
        pandas = pd.DataFrame(x).rolling(window).std().to_numpy()
        pandas_rel = np.abs(pandas - exact)[ok & ~zero] / exact[ok & ~zero]
        assert pandas_rel.max() > 100 * rel.max()


def test_std_rechecks_nearly_constant_windows_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    """A level jump into a flat stretch leaves windows whose deviations vanish against their
    anchor: they are recomputed in two passes; with the recheck off they would not be 0."""
    x = np.concatenate([np.linspace(1.0, 2.0, 40), np.full(40, 1e6 + 0.1)])[:, None]
    got = rw.rolling_std(x, 10)
    np.testing.assert_array_equal(got[55:], 0.0)
    monkeypatch.setattr(rw, "STD_RECHECK", 0.0)
    assert (rw.rolling_std(x, 10)[55:] != 0).any()


@pytest.mark.parametrize("fn", [rw.rolling_sum, rw.rolling_mean, rw.rolling_std, rw.rolling_min,
                                rw.rolling_max])
def test_values_are_point_in_time_bit_for_bit(messy, fn) -> None:  # type: ignore[no-untyped-def]
    """Row t's value is the same bits whether or not later rows exist."""
    full = fn(messy, 20, min_periods=2)
    for cut in (1, 7, 20, 41, 199, 333):
        np.testing.assert_array_equal(fn(messy[:cut], 20, min_periods=2), full[:cut])


def test_layout_does_not_change_a_bit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A column's values do not depend on the other columns, on how many there are, nor on
    how the prefix sums are chunked or looped (so asset blocks and whole panels agree)."""
    x = _walk(700, 150, seed=5)
    x[::17, ::13] = np.nan
    fns = (lambda a: rw.rolling_means(a, [3, 40], lag=1, min_periods=1, skipna=False),
           lambda a: rw.rolling_std(a, 30), lambda a: rw.rolling_sum(a, 12))
    want = [fn(x) for fn in fns]
    for a0, a1 in ((0, 5), (40, 150), (149, 150)):
        for fn, w in zip(fns, want, strict=True):
            np.testing.assert_array_equal(fn(x[:, a0:a1]), w[..., a0:a1])
    monkeypatch.setattr(rw, "ROW_LOOP_MIN_WIDTH", 10**9)   # numpy's cumsum throughout
    monkeypatch.setattr(rw, "PREFIX_CHUNK_CELLS", 1_000)
    monkeypatch.setattr(rw, "STD_CHUNK_CELLS", 5_000)
    for fn, w in zip(fns, want, strict=True):
        np.testing.assert_array_equal(fn(x), w)
