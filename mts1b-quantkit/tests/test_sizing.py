"""Sizing: each method's definition, caps, gross/net, masks, Kelly against a direct loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
from mts1b_quantkit import factors as qf
from mts1b_quantkit import sizing
from mts1b_quantkit.errors import SizingError

SCORES = np.array([
    [1.0, -1.0, 0.5, np.nan, 2.0],
    [-1.0, -2.0, 3.0, 1.0, 0.0],
    [np.nan, np.nan, np.nan, np.nan, np.nan],
    [-1.0, -1.0, -1.0, -1.0, -1.0],
])


def test_equal_weight_long() -> None:
    w = sizing.size(SCORES, {"method": "equal_weight_long", "gross": 1.0})
    np.testing.assert_allclose(w[0], [1 / 3, 0, 1 / 3, 0, 1 / 3])
    np.testing.assert_allclose(w[1], [0, 0, 0.5, 0.5, 0])
    np.testing.assert_array_equal(w[2:], 0.0)  # nothing eligible / nothing positive: flat
    half = sizing.size(SCORES, {"method": "equal_weight_long", "gross": 0.5, "threshold": 0.9})
    np.testing.assert_allclose(half[0], [0.25, 0, 0, 0, 0.25])


def test_equal_weight_long_short_and_net() -> None:
    w = sizing.size(SCORES, {"method": "equal_weight_long_short", "gross": 2.0})
    np.testing.assert_allclose(w[0], [1 / 3, -1, 1 / 3, 0, 1 / 3])  # dollar neutral
    np.testing.assert_allclose(np.abs(w[:2]).sum(axis=1), 2.0)
    np.testing.assert_allclose(w[:2].sum(axis=1), 0.0, atol=1e-15)
    np.testing.assert_allclose(w[3], -0.2)  # one leg only: it gets its half of gross
    tilted = sizing.size(SCORES, {"method": "equal_weight_long_short", "net": 0.5})
    np.testing.assert_allclose(tilted[1], [-0.125, -0.125, 0.375, 0.375, 0.0])
    np.testing.assert_allclose(tilted[1].sum(), 0.5)


def test_rank_weighted_is_dollar_neutral_and_monotone() -> None:
    w = sizing.size(SCORES, "rank_weighted")
    np.testing.assert_allclose(w[:2].sum(axis=1), 0.0, atol=1e-15)
    np.testing.assert_allclose(np.abs(w[:2]).sum(axis=1), 1.0)
    order = np.argsort(SCORES[1])
    assert (np.diff(w[1][order]) > 0).all()
    long_only = sizing.size(SCORES, {"method": "rank_weighted", "long_only": True})
    np.testing.assert_allclose(long_only[1], np.array([2, 1, 5, 4, 3]) / 15)


def test_score_weighted() -> None:
    w = sizing.size(SCORES, {"method": "score_weighted", "gross": 1.0})
    np.testing.assert_allclose(w[0], np.array([1.0, -1.0, 0.5, 0.0, 2.0]) / 4.5)


def test_mask_excludes_assets() -> None:
    mask = np.ones(SCORES.shape, dtype=bool)
    mask[0, 4] = False
    w = sizing.size(SCORES, "equal_weight_long", mask=mask)
    np.testing.assert_allclose(w[0], [0.5, 0, 0.5, 0, 0])


def test_max_weight_caps_and_redistributes() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(50, 30))
    w = sizing.size(scores, {"method": "score_weighted", "gross": 2.0, "max_weight": 0.1})
    assert np.abs(w).max() <= 0.1 + 1e-15
    raw = sizing.size(scores, {"method": "score_weighted", "gross": 2.0})
    np.testing.assert_array_equal(np.sign(w), np.sign(raw))
    for sign in (1.0, -1.0):  # each leg keeps its total unless every name in it is capped
        leg = np.sign(raw) == sign
        expected = np.minimum(np.where(leg, np.abs(raw), 0).sum(axis=1), 0.1 * leg.sum(axis=1))
        np.testing.assert_allclose(np.where(leg, np.abs(w), 0).sum(axis=1), expected,
                                   rtol=1e-12)
    tight = sizing.size(SCORES, {"method": "equal_weight_long", "max_weight": 0.2})
    np.testing.assert_allclose(tight[0], [0.2, 0, 0.2, 0, 0.2])  # 3 names x 20%: gross 60%


def _kelly_reference(scores, returns, target, fraction, lookback, ppy):  # type: ignore[no-untyped-def]
    t_len = scores.shape[0]
    out = np.zeros_like(scores)
    for t in range(lookback - 1, t_len):
        d = np.nan_to_num(scores[t])
        if not np.abs(d).sum():
            continue
        d = d / np.abs(d).sum()
        port = np.nan_to_num(returns[t - lookback + 1:t + 1]) @ d
        mu, var = port.mean(), port.var(ddof=1)
        if mu > 0 and var > 0:
            out[t] = d * min(fraction * mu / var, target / math.sqrt(var * ppy))
    return out


def test_kelly_voltarget_12_against_a_loop(sp500_returns) -> None:  # type: ignore[no-untyped-def]
    r = sp500_returns.iloc[:300, :20].to_numpy()
    scores = qf.evaluate("f_momentum_12_1", _panel_from(sp500_returns.iloc[:300, :20]),
                         h_long=40, h_skip=2)
    w = sizing.size(scores, {"method": "kelly_voltarget_12", "gross": 10.0}, returns=r)
    ref = _kelly_reference(np.where(np.isnan(scores), 0, scores), r, 0.12, 1.0, 63, 252)
    np.testing.assert_allclose(w, ref, rtol=1e-10, atol=1e-14)
    capped = sizing.size(scores, {"method": "kelly_voltarget_12", "gross": 1.0}, returns=r)
    assert np.abs(capped).sum(axis=1).max() <= 1.0 + 1e-12
    half = sizing.size(scores, {"method": "kelly_voltarget", "target_vol": 0.5,
                                "kelly_fraction": 0.5, "lookback": 20, "gross": 100.0},
                       returns=r)
    np.testing.assert_allclose(half, _kelly_reference(np.nan_to_num(scores), r, 0.5, 0.5, 20,
                                                      252), rtol=1e-10, atol=1e-14)


def _panel_from(prices_like):  # type: ignore[no-untyped-def]
    from mts1b_foundation import UniversePanel

    close = (1 + prices_like.fillna(0.0)).cumprod().to_numpy() * 100
    return UniversePanel(prices_like.index.to_numpy(), list(prices_like.columns), open=close,
                         high=close, low=close, close=close, volume=np.ones_like(close))


def test_vol_target_binds_on_a_steady_winner() -> None:
    rng = np.random.default_rng(5)
    r = rng.normal(0.002, 0.01, (400, 3))  # strong drift: Kelly leverage ~20x
    w = sizing.size(np.ones((400, 3)), {"method": "kelly_voltarget_12", "gross": 100.0},
                    returns=r)
    lev = np.abs(w).sum(axis=1)[100:]
    port_vol = np.array([np.std(r[t - 62:t + 1] @ (w[t] / lev[t - 100]), ddof=1)
                         for t in range(100, 400)]) * np.sqrt(252)
    np.testing.assert_allclose(lev * port_vol, 0.12, rtol=1e-10)


def test_seed_spec_on_the_seed_factor(panel) -> None:  # type: ignore[no-untyped-def]
    scores = qf.evaluate("f_sma_cross", panel)
    w = sizing.size(scores, {"method": "equal_weight_long", "gross": 1.0}, mask=panel.mask)
    longs = (scores > 0) & panel.mask
    rows = longs.any(axis=1)
    np.testing.assert_allclose(w.sum(axis=1)[rows], 1.0)
    np.testing.assert_array_equal(w > 0, longs)


def test_errors_name_the_method_or_parameter() -> None:
    with pytest.raises(SizingError, match="unknown sizing method 'nope'"):
        sizing.size(SCORES, {"method": "nope"})
    with pytest.raises(SizingError, match=r"unknown parameter\(s\) \['gros'\]"):
        sizing.size(SCORES, {"method": "equal_weight_long", "gros": 1.0})
    with pytest.raises(SizingError, match="'gross'"):
        sizing.size(SCORES, {"method": "equal_weight_long", "gross": -1})
    with pytest.raises(SizingError, match="'max_weight'"):
        sizing.size(SCORES, {"method": "equal_weight_long", "max_weight": 0})
    with pytest.raises(SizingError, match="needs returns"):
        sizing.size(SCORES, "kelly_voltarget_12")
    with pytest.raises(SizingError, match="long-only"):
        sizing.size(SCORES, {"method": "equal_weight_long", "net": 0.0})
    with pytest.raises(SizingError, match="'lookback'"):
        sizing.size(SCORES, {"method": "kelly_voltarget", "lookback": 1}, returns=SCORES)
    with pytest.raises(SizingError, match="'method'"):
        sizing.size(SCORES, {"gross": 1.0})


def test_register_custom_sizer() -> None:
    @sizing.register_sizer("top_one_test")
    def top_one(scores, *, k: int = 1):  # type: ignore[no-untyped-def]
        filled = np.where(np.isnan(scores), -np.inf, scores)
        out = np.zeros_like(scores)
        np.put_along_axis(out, np.argsort(-filled, axis=1)[:, :k], 1.0, axis=1)
        return out

    try:
        assert sizing.get_sizer("top_one_test").params == ("k",)
        w = sizing.size(SCORES[:2], {"method": "top_one_test", "k": 2})
        np.testing.assert_allclose(w, [[0.5, 0, 0, 0, 0.5], [0, 0, 0.5, 0.5, 0]])
        with pytest.raises(SizingError, match="already registered"):
            sizing.register_sizer("top_one_test")(top_one)
    finally:
        sizing._sizers.pop("top_one_test", None)
    assert "kelly_voltarget_12" in sizing.list_sizers()


def test_a_sizers_parameters_are_read_from_its_signature_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[object] = []
    real = sizing.inspect.signature

    def counting(func, *args, **kwargs):  # type: ignore[no-untyped-def]
        reads.append(func)
        return real(func, *args, **kwargs)

    @sizing.register_sizer("signature_once_test")
    def by_score(scores, *, tilt: float = 1.0):  # type: ignore[no-untyped-def]
        return np.where(np.isnan(scores), 0.0, scores * tilt)

    monkeypatch.setattr(sizing.inspect, "signature", counting)
    try:
        for _ in range(3):
            sizing.size(SCORES, {"method": "signature_once_test", "tilt": 2.0})
        with pytest.raises(SizingError, match="tilts"):  # still checked against the cache
            sizing.size(SCORES, {"method": "signature_once_test", "tilts": 2.0})

        @sizing.register_sizer("signature_once_test", replace=True)
        def by_rank(scores, *, power: float = 1.0):  # type: ignore[no-untyped-def]
            return np.where(np.isnan(scores), 0.0, np.argsort(scores, axis=1) ** power)

        for _ in range(2):  # a replacement has its own signature, read once as well
            sizing.size(SCORES, {"method": "signature_once_test", "power": 1.0})
    finally:
        sizing._sizers.pop("signature_once_test", None)
    assert reads == [by_score, by_rank]


def test_labelled_mask_and_returns_are_matched_by_name() -> None:
    """A mask or returns DataFrame in another column order than the scores is read by label."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(11)
    dates = pd.bdate_range("2021-01-01", periods=80)
    names = ["A", "B", "C", "D", "E"]
    scores = pd.DataFrame(rng.normal(size=(80, 5)), index=dates, columns=names)
    rets = pd.DataFrame(rng.normal(0, 0.01, (80, 5)), index=dates, columns=names)
    mask = pd.DataFrame(rng.random((80, 5)) > 0.2, index=dates, columns=names)
    spec = {"method": "kelly_voltarget_12", "gross": 1.5}
    expected = sizing.size(scores.to_numpy(), spec, mask=mask.to_numpy(),
                           returns=rets.to_numpy())
    flipped = names[::-1]
    got = sizing.size(scores, spec, mask=mask[flipped], returns=rets[flipped])
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(SizingError, match=r"columns of returns.*missing \['E'\]"):
        sizing.size(scores, spec, returns=rets.rename(columns={"E": "F"}))


@pytest.mark.parametrize("returned", ["input", "view"])
def test_a_sizer_that_returns_its_input_leaves_the_callers_scores_alone(returned: str) -> None:
    """``size`` zeroes missing values in place only in an array the sizer made itself: a sizer
    returning its input (or a view of it) gets a copy, so the caller's scores never change."""
    @sizing.register_sizer("identity_test")
    def identity(scores):  # type: ignore[no-untyped-def]
        return scores if returned == "input" else scores[:, :]

    scores = np.array([[1.0, np.nan, 3.0], [np.nan, 2.0, 2.0]])
    before = scores.copy()
    try:
        w = sizing.size(scores, "identity_test")
    finally:
        sizing._sizers.pop("identity_test", None)
    np.testing.assert_array_equal(scores, before)
    np.testing.assert_array_equal(w, [[0.25, 0.0, 0.75], [0.0, 0.5, 0.5]])
