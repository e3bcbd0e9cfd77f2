"""Cross-validation splitters: sklearn's TimeSeriesSplit, the purging/embargo rules of
Lopez de Prado (AFML ch. 7), CPCV's combinatorics, and cross_validate."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from mts1b_quantkit import cv
from mts1b_quantkit import metrics as qm
from mts1b_quantkit.errors import CVError

pd = pytest.importorskip("pandas")
model_selection = pytest.importorskip("sklearn.model_selection")


def test_walk_forward_rolling_and_expanding() -> None:
    splits = cv.walk_forward(20, train=8, test=4)
    assert [(tr.tolist(), te.tolist()) for tr, te in splits] == [
        (list(range(0, 8)), [8, 9, 10, 11]),
        (list(range(4, 12)), [12, 13, 14, 15]),
        (list(range(8, 16)), [16, 17, 18, 19]),
    ]
    expanding = cv.walk_forward(np.arange(20), train=8, test=5, expanding=True, gap=2)
    assert [(tr[0], tr[-1], te[0], te[-1]) for tr, te in expanding] == [(0, 7, 10, 14),
                                                                         (0, 12, 15, 19)]
    partial = cv.walk_forward(20, train=8, test=5, step=5, partial=True)
    assert [te.tolist() for _, te in partial][-1] == [18, 19]
    for tr, te in cv.walk_forward(500, train=100, test=21, gap=5):
        assert tr.max() + 5 < te.min()
        assert tr.size == 100 and te.size == 21
        assert tr.dtype == np.int64 and te.dtype == np.int64


@pytest.mark.parametrize(("ours", "theirs"), [
    ({"n_splits": 5}, {"n_splits": 5}),
    ({"n_splits": 3, "gap": 2, "train": 10}, {"n_splits": 3, "gap": 2, "max_train_size": 10}),
    ({"n_splits": 4, "test": 7}, {"n_splits": 4, "test_size": 7}),
])
def test_walk_forward_n_splits_is_sklearn_time_series_split(ours, theirs) -> None:  # type: ignore[no-untyped-def]
    mine = list(cv.WalkForward(**ours).split(np.zeros(101)))
    ref = list(model_selection.TimeSeriesSplit(**theirs).split(np.zeros(101)))
    assert len(mine) == len(ref) == cv.WalkForward(**ours).get_n_splits(101)
    for (a, b), (c, d) in zip(mine, ref, strict=True):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)


def _afml_purged_kfold(n: int, t1: np.ndarray, n_splits: int, pct_embargo: float):  # type: ignore[no-untyped-def]
    """The book's PurgedKFold (snippets 7.1-7.3) on a positional index, as the reference."""
    times = pd.Series(t1, index=np.arange(n))
    mbrg = int(n * pct_embargo)
    for test in np.array_split(np.arange(n), n_splits):
        t0, t_end = test[0], times.iloc[test].max()
        train = times.copy()
        # getTrainTimes: drop training obs overlapping [t0, t_end]
        overlap = (((train.index >= t0) & (train.index <= t_end))
                   | ((train >= t0) & (train <= t_end))
                   | ((train.index <= t0) & (train >= t_end)))
        keep = ~overlap
        keep[(train.index > t_end) & (train.index <= t_end + mbrg)] = False  # embargo
        yield np.flatnonzero(keep.to_numpy()), test


@pytest.mark.parametrize(("horizon", "embargo"), [(0, 0.0), (5, 0.0), (5, 0.02), (12, 0.05)])
def test_purged_kfold_matches_the_book(horizon, embargo) -> None:  # type: ignore[no-untyped-def]
    n = 250
    rng = np.random.default_rng(horizon)
    t1 = np.minimum(np.arange(n) + rng.integers(0, horizon + 1, n), n - 1)
    splitter = cv.PurgedKFold(5, t1=t1, embargo=embargo)
    mine = list(splitter.split(np.zeros((n, 3))))
    ref = list(_afml_purged_kfold(n, t1, 5, embargo))
    assert len(mine) == splitter.get_n_splits() == 5
    for (a, b), (c, d) in zip(mine, ref, strict=True):
        np.testing.assert_array_equal(b, d)
        np.testing.assert_array_equal(a, c)
        # no training label overlaps a test label
        assert not ((a <= t1[b].max()) & (t1[a] >= b.min())).any()


def test_purged_kfold_timestamps_and_label_horizon() -> None:
    dates = pd.bdate_range("2020-01-01", periods=100)
    ends = dates.to_series().shift(-5).fillna(dates[-1]).to_numpy()
    by_time = list(cv.PurgedKFold(4, t1=ends, times=dates).split(dates))
    by_h = list(cv.PurgedKFold(4, label_horizon=5).split(dates))
    for (a, b), (c, d) in zip(by_time, by_h, strict=True):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    with pytest.raises(CVError, match="times"):
        list(cv.PurgedKFold(4, t1=ends).split(dates))


def test_combinatorial_purged_cv() -> None:
    n, groups, k = 120, 6, 2
    splitter = cv.CombinatorialPurgedCV(groups, k, label_horizon=3, embargo=0.01)
    splits = list(splitter.split(n))
    assert len(splits) == splitter.get_n_splits() == math.comb(groups, k) == 15
    assert splitter.n_paths == 5
    counts = np.zeros(n, dtype=int)
    blocks = np.array_split(np.arange(n), groups)
    for (train, test), combo in zip(splits, itertools.combinations(range(groups), k),
                                    strict=True):
        np.testing.assert_array_equal(test, np.concatenate([blocks[g] for g in combo]))
        counts[test] += 1
        assert np.intersect1d(train, test).size == 0
        for g in combo:  # purged: no train sample's label reaches into a test group
            assert not ((train <= blocks[g][-1] + 3) & (train + 3 >= blocks[g][0])).any()
    assert (counts == splitter.n_paths).all()
    for path in splitter.paths():
        assert [g for _, g in path] == list(range(groups))


def test_splitters_work_with_sklearn() -> None:
    linear_model = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + rng.normal(0, 0.1, 200)
    for splitter in (cv.PurgedKFold(4, label_horizon=2), cv.WalkForward(n_splits=4),
                     cv.CombinatorialPurgedCV(5, 2)):
        scores = model_selection.cross_val_score(linear_model.LinearRegression(), x, y,
                                                 cv=splitter)
        assert scores.shape == (splitter.get_n_splits(x),)
        assert (scores > 0.9).all()


def test_cross_validate_returns_and_metrics(spy_returns) -> None:  # type: ignore[no-untyped-def]
    r = spy_returns.to_numpy()[-1500:]

    def evaluate(train, test):  # type: ignore[no-untyped-def]
        sign = 1.0 if r[train].mean() > 0 else -1.0  # "fit": long if the past went up
        return sign * r[test]

    res = cv.cross_validate(cv.WalkForward(500, 250), evaluate, r)
    assert len(res.splits) == 4
    assert res.oos_returns is not None and res.oos_summary is not None
    tested = ~np.isnan(res.oos_returns)
    assert tested.sum() == 1000
    assert res.oos_summary["sharpe"] == pytest.approx(qm.sharpe(res.oos_returns[tested]))
    assert res.mean["sharpe"] == pytest.approx(np.mean([s.metrics["sharpe"]
                                                        for s in res.splits]))
    # a mapping of metrics is accepted as is; overlapping test sets give no stitched series
    res2 = cv.cross_validate(cv.CombinatorialPurgedCV(5, 2), lambda tr, te: {"n": len(te)}, r)
    assert res2.oos_returns is None and res2.mean["n"] == pytest.approx(600.0)


def test_cv_errors() -> None:
    with pytest.raises(CVError, match="train"):
        cv.WalkForward()
    with pytest.raises(CVError, match="50 walk-forward splits"):
        list(cv.WalkForward(n_splits=50).split(20))
    with pytest.raises(CVError, match="embargo"):
        cv.PurgedKFold(3, embargo=1.5)
    with pytest.raises(CVError, match="n_test_groups"):
        cv.CombinatorialPurgedCV(3, 3)
    with pytest.raises(CVError, match="no splits"):
        cv.cross_validate(cv.WalkForward(50, 10), lambda tr, te: {}, 20)
    with pytest.raises(CVError, match="returned"):
        cv.cross_validate(cv.WalkForward(5, 5), lambda tr, te: np.zeros(2), 20)


def test_t1_series_is_read_by_its_labels() -> None:
    """A t1 Series in the AFML convention (index: the samples' start times, values: the label
    end times) needs no ``times``, and is matched to a labelled X by its index, not by position."""
    dates = pd.bdate_range("2020-01-01", periods=100)
    t1 = dates.to_series().shift(-5).fillna(dates[-1])
    expected = list(cv.PurgedKFold(4, label_horizon=5).split(dates))
    frame = pd.DataFrame({"x": np.arange(100.0)}, index=dates)
    for given in (t1, t1.iloc[::-1]):
        for splitter in (cv.PurgedKFold(4, t1=given), cv.CombinatorialPurgedCV(4, 1, t1=given)):
            got = list(splitter.split(frame))
            assert len(got) == len(expected)
            for (a, b), (c, d) in zip(got, expected, strict=True):
                np.testing.assert_array_equal(a, c)
                np.testing.assert_array_equal(b, d)
    with pytest.raises(CVError, match="t1 is labelled"):
        list(cv.PurgedKFold(4, t1=t1.iloc[1:]).split(frame))
