"""Cross-validation for time series: walk-forward, purged k-fold, combinatorial purged CV.

Splitters follow scikit-learn's protocol: ``split(X, y=None, groups=None)`` yields
``(train_idx, test_idx)`` pairs of positional ``int64`` numpy arrays and ``get_n_splits()``
counts them, so they plug into ``sklearn.model_selection.cross_val_score`` as ``cv=``.

Purging and embargo (Lopez de Prado, *Advances in Financial Machine Learning*, ch. 7): a sample's
label may span several rows (e.g. a 5-day forward return starting at row ``i`` ends at
``i + 5``). ``t1[i]`` is the last row that label uses (inclusive). Training samples whose label
interval ``[i, t1[i]]`` overlaps the test block's ``[t0, max t1]`` are *purged*, and the
``embargo`` (a fraction of all samples) right after the test block's last label is dropped too,
so no training label shares information with a test label.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from mts1b_quantkit._labels import check_labels, labels_of
from mts1b_quantkit.errors import CVError

__all__ = [
    "CVResult",
    "CombinatorialPurgedCV",
    "PurgedKFold",
    "SplitResult",
    "WalkForward",
    "cross_validate",
    "walk_forward",
]

IntArray = npt.NDArray[np.int64]


def _n_samples(x: Any) -> int:
    if isinstance(x, int | np.integer) and not isinstance(x, bool):
        if x < 0:
            raise CVError(f"n_samples must be >= 0; got {x}", field="n_samples", value=int(x))
        return int(x)
    if hasattr(x, "shape") and len(x.shape) >= 1:
        return int(x.shape[0])
    try:
        return len(x)
    except TypeError as exc:
        raise CVError(f"cannot count the samples of {type(x).__name__}", field="X") from exc


def _positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise CVError(f"{name} must be an integer >= {minimum}; got {value!r}", field=name,
                      value=value)
    return int(value)


class WalkForward:
    """Rolling (or expanding) train window followed by a test window, stepping forward.

    Two ways to set it up:

    * ``WalkForward(train, test, step)``: split ``k`` tests rows ``[s, s + test)`` with
      ``s = train + gap + k * step`` and trains on the ``train`` rows before ``s - gap``
      (every row before ``s - gap`` when ``expanding``). ``step`` defaults to ``test``
      (back-to-back test windows). A last, shorter test window is kept only with ``partial``.
    * ``WalkForward(n_splits=5)``: scikit-learn's ``TimeSeriesSplit``: ``n_splits`` test windows
      of ``test`` rows (default ``n // (n_splits + 1)``) at the end of the data, each trained on
      everything before it (or on the last ``train`` rows when ``train`` is given).

    ``gap`` rows between train and test keep overlapping labels apart.
    """

    def __init__(self, train: int | None = None, test: int | None = None,
                 step: int | None = None, *, n_splits: int | None = None,
                 expanding: bool | None = None, gap: int = 0, partial: bool = False) -> None:
        self.n_splits = None if n_splits is None else _positive_int(n_splits, "n_splits")
        if self.n_splits is None and (train is None or test is None):
            raise CVError("WalkForward needs train and test sizes, or n_splits",
                          field="train", value=train)
        self.train = None if train is None else _positive_int(train, "train")
        self.test = None if test is None else _positive_int(test, "test")
        self.step = None if step is None else _positive_int(step, "step")
        self.gap = _positive_int(gap, "gap", minimum=0)
        self.expanding = (self.train is None) if expanding is None else bool(expanding)
        self.partial = bool(partial)

    def __repr__(self) -> str:
        return (f"WalkForward(train={self.train}, test={self.test}, step={self.step}, "
                f"n_splits={self.n_splits}, expanding={self.expanding}, gap={self.gap}, "
                f"partial={self.partial})")

    def _plan(self, n: int) -> tuple[list[int], int]:
        """Test-window starts and the test length for ``n`` samples."""
        if self.n_splits is not None:
            test = self.test if self.test is not None else n // (self.n_splits + 1)
            first = n - self.n_splits * test
            if test < 1 or first - self.gap < 1:
                raise CVError(f"cannot make {self.n_splits} walk-forward splits of {test} test "
                              f"rows (gap {self.gap}) from {n} samples", field="n_splits",
                              value=self.n_splits)
            step = self.step if self.step is not None else test
            return list(range(first, n - test + 1, step)), test
        train, test = int(self.train or 0), int(self.test or 0)  # both set without n_splits
        step = self.step if self.step is not None else test
        first = train + self.gap
        last = n - (1 if self.partial else test)
        return list(range(first, max(first, last + 1), step)), test

    def split(self, X: Any, y: Any = None, groups: Any = None
              ) -> Iterator[tuple[IntArray, IntArray]]:
        n = _n_samples(X)
        starts, test = self._plan(n)
        for s in starts:
            stop = min(s + test, n)
            train_end = s - self.gap
            if self.expanding or self.train is None:
                train_start = 0
            else:
                train_start = max(0, train_end - self.train)
            yield (np.arange(train_start, train_end, dtype=np.int64),
                   np.arange(s, stop, dtype=np.int64))

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        if X is None:
            if self.n_splits is not None and self.step is None:
                return self.n_splits
            raise CVError("WalkForward.get_n_splits needs X (or n_samples)", field="X")
        return len(self._plan(_n_samples(X))[0])


def walk_forward(n_samples: Any, *, train: int | None = None, test: int | None = None,
                 step: int | None = None, n_splits: int | None = None,
                 expanding: bool | None = None, gap: int = 0, partial: bool = False
                 ) -> list[tuple[IntArray, IntArray]]:
    """All ``(train_idx, test_idx)`` pairs of a :class:`WalkForward` over ``n_samples`` (an int,
    or anything with a length: an index, an array, a panel's dates)."""
    return list(WalkForward(train, test, step, n_splits=n_splits, expanding=expanding, gap=gap,
                            partial=partial).split(n_samples))


def _label_ends(n: int, t1: Any, times: Any, label_horizon: int, X: Any = None) -> IntArray:
    """Each sample's last label row. A ``t1`` Series is read by its labels: its index is the
    samples' start times (the convention of *Advances in Financial Machine Learning*, used when
    ``times`` is not given), and when ``X`` is labelled too (a DataFrame or Series with an
    index) ``t1`` is put in ``X``'s order, by label, before anything else."""
    if t1 is None:
        h = _positive_int(label_horizon, "label_horizon", minimum=0)
        return np.minimum(np.arange(n, dtype=np.int64) + h, n - 1)
    t1_labels = labels_of(t1)
    x_labels = labels_of(X) if getattr(X, "ndim", 0) == 1 else (
        list(X.index) if hasattr(X, "index") and hasattr(X, "columns") else None)
    if t1_labels is not None and x_labels is not None and t1_labels != x_labels:
        check_labels(t1_labels, x_labels, "t1", CVError, what="the samples' labels (X's index)")
        t1 = t1.loc[x_labels]
        t1_labels = x_labels
    if t1_labels is not None and hasattr(t1, "to_numpy"):
        if times is None:
            times = t1.index
        t1 = t1.to_numpy()
    ends = np.asarray(t1)
    if ends.shape != (n,):
        raise CVError(f"t1 needs one label end per sample ({n}); got shape {ends.shape}",
                      field="t1", value=ends.shape)
    if np.issubdtype(ends.dtype, np.integer):
        pos = ends.astype(np.int64)
    else:
        if times is None:
            raise CVError("t1 holds timestamps: pass times (the start time of each sample)",
                          field="times")
        starts = np.asarray(times.to_numpy() if hasattr(times, "to_numpy") else times)
        pos = np.searchsorted(starts, ends, side="right").astype(np.int64) - 1
    if (pos < np.arange(n)).any():
        i = int(np.flatnonzero(pos < np.arange(n))[0])
        raise CVError(f"label of sample {i} ends before it starts (t1 -> row {pos[i]})",
                      field="t1", value=i)
    return np.minimum(pos, n - 1)


def _check_embargo(embargo: Any) -> float:
    if not 0.0 <= embargo < 1.0:
        raise CVError(f"embargo must be a fraction in [0, 1); got {embargo!r}", field="embargo",
                      value=embargo)
    return float(embargo)


def _purged_train(n: int, ends: IntArray, test_blocks: Sequence[IntArray], h: int) -> IntArray:
    keep = np.ones(n, dtype=bool)
    idx = np.arange(n)
    for block in test_blocks:
        t0, t_last = int(block[0]), int(ends[block].max())
        keep[block] = False
        keep &= ~((idx <= t_last) & (ends >= t0))  # label overlaps the test block: purge
        keep[t_last + 1: t_last + 1 + h] = False  # embargo after the test labels
    return np.flatnonzero(keep).astype(np.int64)


class PurgedKFold:
    """k-fold over contiguous blocks (no shuffling), with purging and an embargo.

    ``t1`` gives each sample's last label row (positions, or timestamps with ``times``; a
    Series of timestamps indexed by the samples' start times needs no ``times``, and is matched
    to a labelled ``X`` by its index); ``label_horizon`` is the shortcut
    ``t1[i] = i + label_horizon``. ``embargo`` is the fraction
    of samples dropped after each test block (``int(n * embargo)`` rows).
    """

    def __init__(self, n_splits: int = 5, *, t1: Any = None, times: Any = None,
                 label_horizon: int = 0, embargo: float = 0.0) -> None:
        self.n_splits = _positive_int(n_splits, "n_splits", minimum=2)
        self.t1, self.times = t1, times
        self.label_horizon = _positive_int(label_horizon, "label_horizon", minimum=0)
        self.embargo = _check_embargo(embargo)

    def __repr__(self) -> str:
        return (f"PurgedKFold(n_splits={self.n_splits}, label_horizon={self.label_horizon}, "
                f"embargo={self.embargo})")

    def split(self, X: Any, y: Any = None, groups: Any = None
              ) -> Iterator[tuple[IntArray, IntArray]]:
        n = _n_samples(X)
        if n < self.n_splits:
            raise CVError(f"cannot make {self.n_splits} folds from {n} samples",
                          field="n_splits", value=self.n_splits)
        ends = _label_ends(n, self.t1, self.times, self.label_horizon, X)
        h = int(n * _check_embargo(self.embargo))
        for block in np.array_split(np.arange(n, dtype=np.int64), self.n_splits):
            yield _purged_train(n, ends, [block], h), block

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        return self.n_splits


class CombinatorialPurgedCV:
    """Combinatorial purged cross-validation (CPCV).

    The samples are cut into ``n_groups`` contiguous groups; every choice of ``n_test_groups`` of
    them is one split (``C(n_groups, n_test_groups)`` splits), trained on the other groups after
    purging and embargo around each test group. The test sets recombine into
    :attr:`n_paths` complete backtest paths (:meth:`paths`).
    """

    def __init__(self, n_groups: int = 6, n_test_groups: int = 2, *, t1: Any = None,
                 times: Any = None, label_horizon: int = 0, embargo: float = 0.0) -> None:
        self.n_groups = _positive_int(n_groups, "n_groups", minimum=2)
        self.n_test_groups = _positive_int(n_test_groups, "n_test_groups")
        if self.n_test_groups >= self.n_groups:
            raise CVError(f"n_test_groups ({n_test_groups}) must be < n_groups ({n_groups})",
                          field="n_test_groups", value=n_test_groups)
        self.t1, self.times = t1, times
        self.label_horizon = _positive_int(label_horizon, "label_horizon", minimum=0)
        self.embargo = _check_embargo(embargo)

    def __repr__(self) -> str:
        return (f"CombinatorialPurgedCV(n_groups={self.n_groups}, "
                f"n_test_groups={self.n_test_groups}, embargo={self.embargo})")

    @property
    def combinations(self) -> list[tuple[int, ...]]:
        """The test groups of each split, in split order."""
        return list(itertools.combinations(range(self.n_groups), self.n_test_groups))

    @property
    def n_paths(self) -> int:
        """Number of backtest paths: ``C(N, k) * k / N``."""
        return math.comb(self.n_groups, self.n_test_groups) * self.n_test_groups // self.n_groups

    def paths(self) -> list[list[tuple[int, int]]]:
        """For each path, ``(split index, group)`` for groups ``0..N-1`` in order: stitching those
        splits' test predictions gives one out-of-sample series covering every sample."""
        used: dict[int, int] = dict.fromkeys(range(self.n_groups), 0)
        out: list[list[tuple[int, int]]] = [[] for _ in range(self.n_paths)]
        for split, combo in enumerate(self.combinations):
            for g in combo:
                out[used[g]].append((split, g))
                used[g] += 1
        return [sorted(p, key=lambda sg: sg[1]) for p in out]

    def split(self, X: Any, y: Any = None, groups: Any = None
              ) -> Iterator[tuple[IntArray, IntArray]]:
        n = _n_samples(X)
        if n < self.n_groups:
            raise CVError(f"cannot make {self.n_groups} groups from {n} samples",
                          field="n_groups", value=self.n_groups)
        ends = _label_ends(n, self.t1, self.times, self.label_horizon, X)
        h = int(n * _check_embargo(self.embargo))
        blocks = np.array_split(np.arange(n, dtype=np.int64), self.n_groups)
        for combo in self.combinations:
            test_blocks = [blocks[g] for g in combo]
            yield _purged_train(n, ends, test_blocks, h), np.concatenate(test_blocks)

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        return math.comb(self.n_groups, self.n_test_groups)


@dataclasses.dataclass(frozen=True)
class SplitResult:
    """One split: its indices, the metrics of its test window, and its out-of-sample returns
    (``None`` when the evaluation returned metrics directly)."""

    train: IntArray
    test: IntArray
    metrics: dict[str, float]
    returns: npt.NDArray[np.float64] | None


@dataclasses.dataclass(frozen=True)
class CVResult:
    """All splits, the mean and std across splits of each metric, and, when the test windows
    do not overlap and the evaluation returned returns, the stitched out-of-sample series
    (NaN where no split tested) and its :func:`~mts1b_quantkit.metrics.summary`."""

    splits: tuple[SplitResult, ...]
    mean: dict[str, float]
    std: dict[str, float]
    oos_returns: npt.NDArray[np.float64] | None
    oos_summary: dict[str, float] | None


def cross_validate(splitter: Any, evaluate_fn: Callable[[IntArray, IntArray], Any], X: Any, *,
                   periods_per_year: float = 252) -> CVResult:
    """Run ``evaluate_fn(train_idx, test_idx)`` on every split of ``splitter`` over ``X``.

    ``evaluate_fn`` fits on the training rows and returns either the strategy's out-of-sample
    per-period returns on the test rows (a 1-D array of ``len(test_idx)``; they are summarised
    with :func:`mts1b_quantkit.metrics.summary`) or a mapping of metric name to float.
    """
    from mts1b_quantkit import metrics

    n = _n_samples(X)
    results: list[SplitResult] = []
    stitched = np.full(n, np.nan)
    seen = np.zeros(n, dtype=np.int64)
    got_returns = True
    for train, test in splitter.split(X):
        out = evaluate_fn(train, test)
        if isinstance(out, Mapping):
            got_returns = False
            values = {str(k): float(v) for k, v in out.items()}
            results.append(SplitResult(train, test, values, None))
            continue
        r = np.asarray(out, dtype=np.float64).reshape(-1)
        if r.shape != test.shape:
            raise CVError(f"evaluate_fn returned {r.shape[0]} returns for a test window of "
                          f"{test.shape[0]} rows", field="evaluate_fn", value=int(r.shape[0]))
        stitched[test] = r
        seen[test] += 1
        results.append(SplitResult(train, test,
                                   metrics.summary(r, periods_per_year=periods_per_year), r))
    if not results:
        raise CVError("the splitter produced no splits for these samples", field="splitter",
                      value=repr(splitter))
    keys = sorted(set().union(*(s.metrics for s in results)))
    table = {k: np.array([s.metrics.get(k, np.nan) for s in results]) for k in keys}
    with np.errstate(invalid="ignore"):
        mean = {k: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
                for k, v in table.items()}
        std = {k: float(np.nanstd(v, ddof=1)) if np.isfinite(v).sum() > 1 else float("nan")
               for k, v in table.items()}
    disjoint = got_returns and bool((seen <= 1).all())
    oos = stitched if disjoint else None
    oos_summary = None
    if oos is not None:
        tested = oos[seen == 1]
        oos_summary = metrics.summary(tested, periods_per_year=periods_per_year)
    return CVResult(tuple(results), mean, std, oos, oos_summary)
