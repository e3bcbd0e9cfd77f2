"""Trailing signal statistics: hand-computed values, Newey-West, NaN handling, bad input, and
the false-positive rate of zero-skill signals with overlapping horizons."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from mts1b_quantkit.analytics import ic_summary
from mts1b_research.errors import ResearchInputError
from mts1b_research.stats import (
    SignalStats,
    forward_returns,
    horizon_returns,
    newey_west_se,
    newey_west_tstat,
    trailing_stats,
)

NAN = math.nan

# Three sessions, four names. Per-session ICs computed by hand in the comments.
WEIGHTS = np.array([
    [1.0, 2.0, 3.0, 4.0],     # Pearson 0.8, Spearman 0.8
    [-1.0, 1.0, -1.0, 1.0],   # Pearson 0.04 / sqrt(4 * 0.0009) = 2/3; Spearman 3 / sqrt(18)
    [NAN, 0.5, 0.0, -0.5],    # name 0 dropped: Pearson -3 / sqrt(21); Spearman -0.5
])
RETURNS = np.array([
    [0.01, 0.03, 0.02, 0.04],
    [-0.02, 0.01, 0.01, 0.02],
    [0.03, -0.01, 0.02, 0.01],
])
IC_BY_HAND = [0.8, 2.0 / 3.0, -3.0 / math.sqrt(21.0)]
RANK_IC_BY_HAND = [0.8, 3.0 / math.sqrt(18.0), -0.5]


def test_hand_computed_ic_rank_ic_and_hit_rate() -> None:
    s = trailing_stats(WEIGHTS, RETURNS, horizon=1)
    assert s.sessions == 3
    assert s.horizon == 1
    assert s.ic == pytest.approx(sum(IC_BY_HAND) / 3, abs=1e-12)
    assert s.rank_ic == pytest.approx(sum(RANK_IC_BY_HAND) / 3, abs=1e-12)
    # Scored pairs: 4 in row 0 (all agree), 4 in row 1 (3 agree), row 2: the NaN weight and the
    # zero weight are left out, both remaining pairs disagree -> 7 of 10.
    assert s.hit_rate == pytest.approx(7 / 10)


def test_t_stats_of_the_hand_example() -> None:
    s = trailing_stats(WEIGHTS, RETURNS, horizon=1)
    ic = np.array(IC_BY_HAND)
    plain = ic.mean() / (ic.std(ddof=1) / math.sqrt(3))
    assert s.t_stat_plain == pytest.approx(plain, rel=1e-12)
    assert s.t_stat == pytest.approx(plain, rel=1e-12)  # horizon 1 -> lag 0
    s2 = trailing_stats(WEIGHTS, RETURNS, horizon=2)
    assert s2.t_stat == pytest.approx(newey_west_tstat(ic, 1), rel=1e-12)
    assert s2.t_stat != pytest.approx(plain)


def test_newey_west_against_a_hand_computation() -> None:
    # x = [1, 2, 4, 3]: mean 2.5, d = [-1.5, -0.5, 1.5, 0.5]
    # g0 = 5/4; g1 = (0.75 - 0.75 + 0.75) / 4 = 0.1875; S = g0 + 2 * (1 - 1/2) * g1 = 1.4375
    # se = sqrt(S / (n - 1)) = sqrt(1.4375 / 3)
    x = [1.0, 2.0, 4.0, 3.0]
    assert newey_west_se(x, 1) == pytest.approx(math.sqrt(1.4375 / 3), rel=1e-12)
    assert newey_west_tstat(x, 1) == pytest.approx(2.5 / math.sqrt(1.4375 / 3), rel=1e-12)
    # lag 2: g2 = (d2 d0 + d3 d1) / 4 = (-2.25 - 0.25) / 4 = -0.625
    # S = 1.25 + 2 * (2/3) * 0.1875 + 2 * (1/3) * (-0.625)
    s_lag2 = 1.25 + 2 * (2 / 3) * 0.1875 + 2 * (1 / 3) * (-0.625)
    assert newey_west_se(x, 2) == pytest.approx(math.sqrt(s_lag2 / 3), rel=1e-12)


def test_lag_zero_is_alphalens_plain_t_stat() -> None:
    x = np.random.default_rng(3).normal(0.02, 0.1, 50)
    assert newey_west_tstat(x, 0) == pytest.approx(ic_summary(x)["t_stat"], rel=1e-12)


def test_newey_west_matches_statsmodels_hac() -> None:
    sm = pytest.importorskip("statsmodels.api")
    x = np.random.default_rng(4).normal(0.01, 0.1, 80)
    for lag in (0, 1, 4, 9):
        fit = sm.OLS(x, np.ones_like(x)).fit(
            cov_type="HAC", cov_kwds={"maxlags": lag, "use_correction": True})
        assert newey_west_tstat(x, lag) == pytest.approx(float(fit.tvalues[0]), rel=1e-10)


def test_newey_west_edge_cases() -> None:
    assert newey_west_tstat([1.0], 0) is None
    assert newey_west_tstat([2.0, 2.0, 2.0], 1) is None  # zero variance: no t-stat
    assert newey_west_tstat([1.0, NAN, 2.0, 4.0], 0) == pytest.approx(
        newey_west_tstat([1.0, 2.0, 4.0], 0))
    assert newey_west_se([1.0, 2.0, 4.0], 50) == pytest.approx(newey_west_se([1.0, 2.0, 4.0], 2))
    with pytest.raises(ResearchInputError) as e:
        newey_west_tstat([1.0, 2.0], -1)
    assert e.value.context["field"] == "lag"
    with pytest.raises(ResearchInputError) as e:
        newey_west_tstat([[1.0, 2.0]], 0)
    assert e.value.context["field"] == "series"


def test_forward_returns_and_nan_where_unknown() -> None:
    close = np.array([[100.0, 10.0], [110.0, NAN], [121.0, 12.0], [133.1, 13.0]])
    fwd = horizon_returns(close, 2)
    expected = np.array([[0.21, 0.2], [0.21, NAN], [NAN, NAN], [NAN, NAN]])
    np.testing.assert_allclose(fwd, expected, rtol=1e-12)
    assert forward_returns is horizon_returns
    with pytest.raises(ResearchInputError) as e:
        horizon_returns(close, 0)
    assert e.value.context["field"] == "horizon"


def test_nan_handling_and_window() -> None:
    w = np.vstack([WEIGHTS, WEIGHTS[:1], WEIGHTS[:1]])
    r = np.vstack([RETURNS, np.full((2, 4), NAN)])  # the last two sessions are not known yet
    assert trailing_stats(w, r, horizon=2) == trailing_stats(WEIGHTS, RETURNS, horizon=2)
    # a session whose names have no variance has no IC and does not count
    w_flat = np.vstack([WEIGHTS, np.ones((1, 4))])
    r_flat = np.vstack([RETURNS, RETURNS[:1]])
    assert trailing_stats(w_flat, r_flat, horizon=1).sessions == 3
    # window 3 over five known sessions keeps the last three
    w5 = np.vstack([WEIGHTS[:2], WEIGHTS])
    r5 = np.vstack([-RETURNS[:2], RETURNS])
    assert trailing_stats(w5, r5, horizon=1, window=3) == trailing_stats(WEIGHTS, RETURNS,
                                                                        horizon=1)


def test_fewer_than_three_sessions_gives_none_not_zero() -> None:
    s = trailing_stats(WEIGHTS[:2], RETURNS[:2], horizon=1)
    assert s == SignalStats(None, None, None, None, None, 2, 1)
    empty = trailing_stats(np.full((4, 3), NAN), np.full((4, 3), NAN), horizon=5)
    assert empty == SignalStats(None, None, None, None, None, 0, 5)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"weights": np.zeros((3, 4)), "forward_returns": np.zeros((3, 5)), "horizon": 1},
     "forward_returns"),
    ({"weights": np.zeros(4), "forward_returns": np.zeros(4), "horizon": 1}, "weights"),
    ({"weights": WEIGHTS, "forward_returns": RETURNS, "horizon": 0}, "horizon"),
    ({"weights": WEIGHTS, "forward_returns": RETURNS, "horizon": True}, "horizon"),
    ({"weights": WEIGHTS, "forward_returns": RETURNS, "horizon": 1, "window": 2}, "window"),
])
def test_bad_input_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ResearchInputError) as e:
        trailing_stats(**kwargs)  # type: ignore[arg-type]
    assert e.value.context["field"] == field


# -- zero-skill signals with overlapping horizons --------------------------------------------------
HORIZON, WINDOW, NAMES, SIGNALS = 5, 60, 30, 400


@functools.cache
def _false_positives(seed: int, window: int = WINDOW) -> tuple[int, int, int]:
    """(NW, plain) counts of |t| > 1.96, and the count of p_value < 0.05, over SIGNALS
    zero-skill signals.

    Each signal holds one random cross-section of weights for the whole window (a persistent
    signal, as real ones are: otherwise neighbouring ICs would not be correlated and overlap
    would not matter) against returns of an independent daily random walk, scored on overlapping
    HORIZON-day forward returns.
    """
    rng = np.random.default_rng(seed)
    sessions = window + HORIZON
    nw = plain = significant = 0
    for _ in range(SIGNALS):
        close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, (sessions, NAMES)), axis=0))
        weights = np.tile(rng.standard_normal(NAMES), (sessions, 1))
        s = trailing_stats(weights, horizon_returns(close, HORIZON), horizon=HORIZON,
                           window=window)
        assert s.sessions == window
        assert s.t_stat is not None and s.t_stat_plain is not None
        nw += abs(s.t_stat) > 1.96
        plain += abs(s.t_stat_plain) > 1.96
        assert s.p_value is not None
        significant += s.p_value < 0.05
    return nw, plain, significant


def test_zero_skill_newey_west_flags_far_fewer_than_plain() -> None:
    """Measured with seed 20261206: NW 57 of 400 (14.25%), plain 148 of 400 (37%).

    The Newey-West correction removes most of the overlap's inflation, but not down to 5%: see
    the module docstring and the p-value test below. The bounds pin the measured behaviour: NW
    within 16% and at most half the plain count.
    """
    nw, plain, _ = _false_positives(20261206)
    assert nw <= 0.16 * SIGNALS
    assert plain >= 2 * nw


def test_zero_skill_at_most_five_percent_significant() -> None:
    """The issue's bar: of 400 zero-skill signals at most 5% are significant at alpha 0.05.
    Significance is ``p_value < 0.05`` (non-overlapping sessions, Student t): 19 of 400 here;
    the Newey-West t at 1.96 would call 57 (see above)."""
    _, _, significant = _false_positives(20261206)
    assert significant <= 0.05 * SIGNALS


def test_the_non_overlapping_p_value_is_a_one_sample_t_test_of_every_hth_ic() -> None:
    from mts1b_research.stats import non_overlapping_p_value
    from scipy.stats import ttest_1samp

    ics = np.array([0.05, -0.01, 0.03, 0.02, 0.04, -0.02, 0.06, 0.01, 0.00, 0.03, 0.02])
    assert non_overlapping_p_value(ics, 1) == pytest.approx(ttest_1samp(ics, 0.0).pvalue,
                                                            rel=1e-12)
    every_third = ics[::-1][::3]  # 0.02, 0.01, 0.04, -0.01: the last session counts back
    assert non_overlapping_p_value(ics, 3) == pytest.approx(
        ttest_1samp(every_third, 0.0).pvalue, rel=1e-12)
    assert non_overlapping_p_value(ics[:5], 3) is None  # two sessions: too few
    assert non_overlapping_p_value(np.full(6, 0.1), 1) is None  # no variance
