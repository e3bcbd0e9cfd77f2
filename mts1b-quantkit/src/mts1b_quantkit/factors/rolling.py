"""Rolling windows in O(T x A): sums, means, standard deviations, minima and maxima.

The one home of MTS1B's rolling primitives: quantkit's factors and the backtester's ladder
kernels both call these functions (``tools/dedupe/canonical.toml``).

Shapes
------
Inputs are ``(T,)`` or ``(T, A)`` float arrays, dates down axis 0, numpy or cupy; the result has
the input's namespace and shape (``rolling_means`` adds a leading window axis). Row ``t`` of a
result uses rows ``<= t`` only.

Missing values (the NaN policy)
-------------------------------
NaN and +/-inf are "no data": an infinite value (a return on a zero price) is not a number to
average, and pandas' rolling windows treat infinities the same way.

* ``skipna=True`` (``rolling_sum``, ``rolling_mean``, ``rolling_means``; ``rolling_std``,
  ``rolling_min`` and ``rolling_max`` always): missing values are skipped, and the result is
  NaN where the window holds fewer than ``min_periods`` valid values (default ``window``: a
  full window). ``DataFrame.rolling(window, min_periods)`` semantics.
* ``skipna=False``: a window that holds any missing value is NaN, and ``min_periods`` counts
  rows, so ``min_periods=1`` keeps the partial windows at the start of the series. This is
  ``close[max(0, t - w + 1):t + 1].mean()`` in a loop.

``rolling_sum`` with ``min_periods=0`` gives 0 for an empty window, as pandas does; a mean or a
standard deviation needs at least one value.

Cost and precision
------------------
* Sums and means: one prefix sum per call (``rolling_means`` shares it between all its windows),
  then a few O(T x A) passes per window whatever its length. A plain running sum loses digits as
  the series grows: its rounding errors grow with the running total (about ``t * eps * |x|``)
  while a window's sum stays about ``w * |x|``, and a price that drifts from 100 to 1 makes it
  worse. So the prefix sum carries its own rounding error in a second array: each step
  ``hi[t] + x[t]`` is split exactly into its rounded value and its error (Knuth's two-sum; it
  also corrects a parallel scan, as on a GPU, that added in another order), and a window's sum
  is ``(hi[t] - hi[s]) + (lo[t] - lo[s])``: within a few units in the last place of the exact
  sum of its values, whatever ``T`` is. ``bench/rolling_and_ladder.py`` measures it against an
  exact sum and against pandas.
* Standard deviations: rows are cut into blocks of ``window`` rows; every window is the end of
  one block plus the start of the next, whose sums and sums of squares come from running sums
  inside each block, about a local anchor (the mean of the previous block, so a row's value never
  depends on later rows), and are combined with Chan's formula. Rounding then grows with the
  window, not with the series or its level. A window whose sum of squared deviations is below
  ``STD_RECHECK`` of its sum of squares about the anchor (a nearly constant window, where
  cancellation would dominate) is recomputed exactly in two passes over its own values; such
  windows are rare in market data and never change the O(T x A) cost of the others.
* Minima and maxima: exact; ``log2(window) + 1`` passes (the extreme of ``2k`` rows from two
  extremes of ``k`` rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

from mts1b_quantkit.factors._common import Array, check_int, min_periods_of, quiet, ts

__all__ = [
    "PREFIX_CHUNK_CELLS",
    "ROW_LOOP_MIN_WIDTH",
    "STD_CHUNK_CELLS",
    "STD_RECHECK",
    "rolling_max",
    "rolling_mean",
    "rolling_means",
    "rolling_min",
    "rolling_std",
    "rolling_sum",
]

#: ``rolling_std`` recomputes exactly the windows whose sum of squared deviations is below this
#: fraction of their sum of squares about the block anchor: there, subtracting two nearly equal
#: sums would leave more rounding than signal. Above it the relative error of the variance is at
#: most about ``2 * window * eps / STD_RECHECK`` (and typically near ``eps``).
STD_RECHECK = 2.0 ** -10

#: the prefix sums work through a numpy panel this many cells (rows x columns) at a time
PREFIX_CHUNK_CELLS = 2**16

#: ``rolling_std`` works through the columns this many cells at a time, which bounds its
#: temporaries (about a dozen arrays of this size) and keeps them in cache
STD_CHUNK_CELLS = 2**18


# -- shape helpers ------------------------------------------------------------------------------
def _columns(a: Array) -> Array:
    """``(T, A)`` view of a ``(T,)`` or ``(T, A)`` array (a series is one column)."""
    return a[:, None] if a.ndim == 1 else a


def _rows_in_window(t_len: int, window: int, lag: int, xp: ModuleType) -> Array:
    """``(T, 1)``: how many rows of ``[0, T)`` the window ending at row ``t - lag`` covers."""
    end = xp.arange(t_len, dtype=xp.float64) - (lag - 1)      # rows 0 .. t - lag
    return xp.clip(end, 0.0, float(window))[:, None]


#: numpy's running sum down axis 0 of a C-ordered panel steps through memory a row at a time in
#: each column; from this many columns on, adding row after row (each add vectorised across the
#: columns) is several times faster. Both add in the same order, so the results are identical.
ROW_LOOP_MIN_WIDTH = 64


def _cumsum(z: Array, axis: int, out: Array, xp: ModuleType) -> Array:
    """``out[...] = cumsum(z, axis)``, numpy or cupy; returns ``out``."""
    width = z.size // max(z.shape[axis], 1)
    if xp is not np:
        out[...] = xp.cumsum(z, axis=axis, dtype=xp.float64)  # ``out`` may be ``z``
        return out
    if width < ROW_LOOP_MIN_WIDTH:
        np.cumsum(z, axis=axis, dtype=np.float64, out=out)
        return out
    zz, oo = np.moveaxis(z, axis, 0), np.moveaxis(out, axis, 0)
    if len(zz):
        oo[0] = zz[0]
    for t in range(1, len(zz)):
        np.add(oo[t - 1], zz[t], out=oo[t])
    return out


# -- compensated prefix sums (sums and means) ---------------------------------------------------
class _Prefix(NamedTuple):
    """Prefix sums of the valid values of a ``(T, A)`` array.

    ``hi[k] + lo[k]`` is the sum of rows ``< k`` (row 0 of each is 0): ``hi`` is the running sum
    as the scan rounds it, ``lo`` the running sum of those roundings' exact errors (``None`` for
    an uncompensated prefix). ``gaps`` lists the columns holding a missing value (``None``: no
    value is missing) and ``nvalid[k, j]`` counts the valid values of column ``gaps[j]`` in rows
    ``< k``: the other columns' windows hold as many values as rows, and only these need the
    NaN policy's masks, which keeps a panel with a few late listings as cheap as a full one.
    """

    hi: Array
    lo: Array | None
    gaps: Array | None
    nvalid: Array | None
    t_len: int


def _scan(start: Array, z: Array, out: Array, xp: ModuleType) -> None:
    """``out[k] = start + z[0] + ... + z[k]`` down axis 0 of ``(rows, A)`` arrays.

    On numpy the additions run one row after another, as ``numpy.cumsum`` adds, so a scan
    continued chunk by chunk equals one over all rows and a column's sums do not depend on the
    other columns. cupy's scan adds in its own order (the two-sum step allows for it).
    """
    if xp is not np:
        out[...] = xp.cumsum(z, axis=0, dtype=xp.float64)
        out += start
        return
    if len(z) == 0:
        return
    if z.shape[1] >= ROW_LOOP_MIN_WIDTH:
        np.add(start, z[0], out=out[0])
        for t in range(1, len(z)):
            np.add(out[t - 1], z[t], out=out[t])
        return
    out[...] = z
    out[0] += start
    np.cumsum(out, axis=0, out=out)


def _prefix(a: Array, xp: ModuleType, compensated: bool = True) -> _Prefix:
    t_len, width = a.shape
    valid = xp.isfinite(a)
    col_ok = valid.all(axis=0)
    complete = bool(col_ok.all())
    gaps = None if complete else xp.flatnonzero(~col_ok)

    def start(columns: int) -> Array:
        z = xp.empty((t_len + 1, columns), dtype=xp.float64)
        z[0] = 0.0
        return z

    hi = start(width)
    lo = start(width) if compensated else None
    count = None if gaps is None else start(len(gaps))
    # numpy: chunks of rows small enough for the cache, so the few passes of each step run there
    step = t_len if xp is not np else max(1, PREFIX_CHUNK_CELLS // max(width, 1))
    for r0 in range(0, t_len, step):
        rows = slice(r0, min(r0 + step, t_len))
        ext = slice(r0, rows.stop + 1)
        v = a[rows] if complete else xp.where(valid[rows], a[rows], 0.0)
        _scan(hi[r0], v, hi[r0 + 1:rows.stop + 1], xp)
        if count is not None:
            _scan(count[r0], valid[rows][:, gaps], count[r0 + 1:rows.stop + 1], xp)
        if lo is None:
            continue
        prev, s = hi[ext][:-1], hi[ext][1:]  # a sequential scan's step: s == fl(prev + v)
        if xp is not np:  # a parallel scan (cupy) may have added in another order: redo it
            s = prev + v
        # Knuth's two-sum, branch-free: with b = s - prev, err = (prev - (s - b)) + (v - b) is
        # the exact rounding error of s, so that prev + v == s + err
        b = s - prev
        err = s - b
        xp.subtract(prev, err, out=err)
        xp.subtract(v, b, out=b)
        err += b
        if xp is not np:  # the scan's own value differs from s by an exact (Sterbenz) amount
            s -= hi[ext][1:]
            err += s
        _scan(lo[r0], err, lo[r0 + 1:rows.stop + 1], xp)
    return _Prefix(hi, lo, gaps, count, t_len)


def _window_diff(p: Array, t_len: int, window: int, lag: int, out: Array,
                 xp: ModuleType, r0: int = 0) -> None:
    """``out[t - r0] = p[e] - p[b]`` for the rows ``t`` in ``[r0, r0 + len(out))``: the prefix
    difference over rows ``[b, e)`` with ``e = clip(t - lag + 1, 0, T)`` and
    ``b = max(e - window, 0)`` (0 for an empty window). ``r0`` lets a caller work through the
    rows a block at a time with a small buffer."""
    r1 = r0 + out.shape[0]
    n0, n1 = min(lag, t_len), min(lag + window - 1, t_len)
    a, b = r0, min(r1, n0)
    if b > a:  # windows that end before the first row: empty
        out[a - r0:b - r0] = 0.0
    a, b = max(r0, n0), min(r1, n1)
    if b > a:  # windows cut short by the first row: rows [0, t - lag + 1)
        out[a - r0:b - r0] = p[a - n0 + 1:b - n0 + 1]
    a = max(r0, n1)
    if r1 > a:  # full windows: two shifted slices of the prefix
        xp.subtract(p[a - lag + 1:r1 - lag + 1], p[a - lag + 1 - window:r1 - lag + 1 - window],
                    out=out[a - r0:])


def _window_sum(p: _Prefix, window: int, lag: int, out: Array, xp: ModuleType) -> None:
    """``out[t]``: the sum of the valid values in the window ending at row ``t - lag``.

    The compensation term is added a block of rows at a time through a buffer of about
    ``PREFIX_CHUNK_CELLS`` cells (numpy; cupy takes the rows at once): the same additions as
    adding a whole difference array, bit for bit, without a temporary the size of the panel.
    """
    _window_diff(p.hi, p.t_len, window, lag, out, xp)
    if p.lo is None:
        return
    width = int(np.prod(out.shape[1:], dtype=np.int64)) if out.ndim > 1 else 1
    step = p.t_len if xp is not np else max(1, PREFIX_CHUNK_CELLS // max(width, 1))
    buffer = xp.empty((min(step, p.t_len), *out.shape[1:]), dtype=xp.float64)
    for r0 in range(0, p.t_len, step):
        block = out[r0:r0 + step]
        part = buffer[:block.shape[0]]
        _window_diff(p.lo, p.t_len, window, lag, part, xp, r0)
        block += part


def _mean_into(p: _Prefix, window: int, lag: int, mp: int, skipna: bool, out: Array,
               xp: ModuleType) -> None:
    """Write the window means into ``out`` (``mp >= 1``; see the module's NaN policy)."""
    if mp > window:
        out[...] = xp.nan
        return
    _window_sum(p, window, lag, out, xp)
    rows = xp.maximum(_rows_in_window(p.t_len, window, lag, xp), 1.0)  # (T, 1), no 0 / 0
    with quiet(xp):
        if p.gaps is not None:  # the columns with missing values: their own counts
            sums = out[:, p.gaps]
            count = xp.empty(sums.shape, dtype=xp.float64)
            _window_diff(p.nvalid, p.t_len, window, lag, count, xp)
            if skipna:
                sums /= count
                sums[count < mp] = xp.nan
            else:
                sums /= rows
                sums[count < rows] = xp.nan
        out /= rows  # every other window holds as many values as rows
        if p.gaps is not None:
            out[:, p.gaps] = sums
    out[:min(p.t_len, lag + mp - 1)] = xp.nan  # leading windows with fewer than mp rows


def rolling_means(x: Any, windows: Sequence[int], *, min_periods: int | None = None,
                  skipna: bool = True, lag: int = 0, compensated: bool = True) -> Array:
    """Rolling means of ``x`` for several windows at once: ``(len(windows), *x.shape)``.

    Entry ``k`` at row ``t`` is the mean over rows ``t - lag - windows[k] + 1 .. t - lag`` (rows
    before 0 are simply absent): ``lag=0`` is ``rolling_mean(x, w)``, ``lag=1`` the ``w`` rows
    *before* ``t``. NaN policy as in the module docstring; ``min_periods`` (default: each
    window's length) may exceed a window, which is then NaN throughout.

    Why a separate function: every window comes from one prefix sum, computed once for all of
    them, so a ladder of many windows costs one prefix plus a few passes per window.

    ``compensated=False`` drops the prefix's error term: the means are then those of a plain
    running sum, bit for bit (numpy's ``cumsum`` differences, vectorbt's ``MA``), whose error
    grows with the series (see the module docstring). The ladder kernels use it so that their
    decisions at ties (two averages equal to the last bit, common in prices quoted in cents)
    stay those of vectorbt and of their earlier releases.
    """
    ws = [check_int(w, "windows") for w in windows]
    lg = check_int(lag, "lag", minimum=0)
    mp0 = None if min_periods is None else check_int(min_periods, "min_periods", minimum=0)
    xp, a = ts(x)
    a2 = _columns(a)
    p = _prefix(a2, xp, compensated)
    out = xp.empty((len(ws), *a2.shape), dtype=xp.float64)
    for k, w in enumerate(ws):
        _mean_into(p, w, lg, max(w if mp0 is None else mp0, 1), skipna, out[k], xp)
    return out.reshape((len(ws), *a.shape))


def rolling_sum(x: Any, window: int, *, min_periods: int | None = None,
                skipna: bool = True) -> Array:
    """Sum over the last ``window`` rows (row ``t`` included), like ``DataFrame.rolling().sum()``.

    NaN policy as in the module docstring (``min_periods`` defaults to ``window``; with
    ``min_periods=0`` an empty window sums to 0).
    """
    w = check_int(window, "window")
    mp = min_periods_of(w, min_periods)
    xp, a = ts(x)
    a2 = _columns(a)
    p = _prefix(a2, xp)
    out = xp.empty(a2.shape, dtype=xp.float64)
    _window_sum(p, w, 0, out, xp)
    if p.gaps is not None:  # the columns with missing values: their own counts
        sums = out[:, p.gaps]
        count = xp.empty(sums.shape, dtype=xp.float64)
        _window_diff(p.nvalid, p.t_len, w, 0, count, xp)
        sums[(count < mp) if skipna else (count < _rows_in_window(p.t_len, w, 0, xp))] = xp.nan
        out[:, p.gaps] = sums
    out[:max(min(p.t_len, mp - 1), 0)] = xp.nan  # the first mp - 1 rows: fewer than mp rows
    return out.reshape(a.shape)


def rolling_mean(x: Any, window: int, *, min_periods: int | None = None,
                 skipna: bool = True) -> Array:
    """Mean over the last ``window`` rows, like ``DataFrame.rolling().mean()``.

    NaN policy as in the module docstring; ``min_periods`` defaults to ``window``.
    """
    w = check_int(window, "window")
    mp = min_periods_of(w, min_periods)
    xp, a = ts(x)
    a2 = _columns(a)
    out = xp.empty(a2.shape, dtype=xp.float64)
    _mean_into(_prefix(a2, xp), w, 0, max(mp, 1), skipna, out, xp)
    return out.reshape(a.shape)


# -- standard deviation: block-local moments ----------------------------------------------------
def _block_sums(z: Array, xp: ModuleType) -> Array:
    """Sums over axis -2 of ``(..., nb, w, A)``. On numpy the rows are added in order, as the
    running sums add them, whatever the layout (``sum`` would add a lone column pairwise and
    a wide block row by row, and a column's result must not depend on its neighbours)."""
    if xp is not np:
        return z.sum(axis=-2)
    total = z[..., 0, :].copy()
    for j in range(1, z.shape[-2]):
        total += z[..., j, :]
    return total


def _block_moments(a2: Array, w: int, xp: ModuleType) -> tuple[Array, Array, Array]:
    """``(n, m2, scale)``, each ``(T, A)``: for the window of ``w`` rows ending at each row, the
    number of valid values, their sum of squared deviations from their mean, and their sum of
    squares about the anchors (the size of the terms ``m2`` was computed from)."""
    t_len, width = a2.shape
    nb = -(-t_len // w)
    valid = xp.isfinite(a2)
    z = xp.zeros((3, nb * w, width), dtype=xp.float64)  # valid, value - anchor, its square
    z[0, :t_len] = valid
    z[1, :t_len] = xp.where(valid, a2, 0.0)
    z3 = z.reshape(3, nb, w, width)
    n_blk, s_blk = _block_sums(z3[:2], xp)
    # anchors: a block's values are centred on the mean of the block before it, which lies
    # entirely in the past of every row of the block; the first block, or one after an empty
    # block, on its own first valid value (no window holds a value of it before that one)
    first = xp.take_along_axis(z3[1], xp.argmax(z3[0], axis=1)[:, None, :], axis=1)[:, 0]
    anchor = first.copy()
    if nb > 1:
        with quiet(xp):
            anchor[1:] = xp.where(n_blk[:-1] > 0, s_blk[:-1] / n_blk[:-1], first[1:])
    z3[1] -= anchor[:, None, :]
    z3[1] *= z3[0]                      # missing values count 0
    xp.multiply(z3[1], z3[1], out=z3[2])
    # part B of a window: its own block from the block's first row (running sums inside each
    # block); part A: the block before, from the row after the window's to the end (that
    # block's total minus its running sum; none in block 0, or when the window is a block)
    part_b = _cumsum(z3, 2, z3, xp)
    part_a = xp.zeros((3, nb, w, width), dtype=xp.float64)
    if nb > 1 and w > 1:
        xp.subtract(part_b[:, :-1, w - 1:, :], part_b[:, :-1, :w - 1, :],
                    out=part_a[:, 1:, :w - 1, :])
    (na, sa, qa), (nb_, sb, qb) = part_a, part_b
    step = xp.zeros((nb, 1, width), dtype=xp.float64)
    if nb > 1:
        step[1:, 0] = anchor[1:] - anchor[:-1]
    with quiet(xp):
        mb = xp.where(nb_ > 0, sb / nb_, 0.0)      # mean of part B, about its anchor
        ma = xp.where(na > 0, sa / na, 0.0)
        n = na + nb_
        delta = step + (mb - ma)                   # mean of part B minus mean of part A
        cross = xp.where(n > 0, delta * delta * (na * nb_) / n, 0.0)
    sb *= mb
    qb -= sb                                        # part B's own m2: q - s * s / n
    sa *= ma
    qa -= sa
    scale = qb + qa + cross                         # (scaled below to the terms' size)
    m2 = qb + qa
    m2 += cross                                     # Chan et al.'s pairwise update
    scale += sb + sa                                # q_B + q_A + cross

    def rows(r: Array) -> Array:
        return r.reshape(nb * w, width)[:t_len]

    return rows(n), rows(m2), rows(scale)


def _exact_m2(a2: Array, w: int, where: Array, xp: ModuleType) -> Array:
    """Sums of squared deviations of the windows flagged in ``where`` (``(T, A)`` booleans),
    from their own values: ``(k,)`` for the ``k`` flagged windows.

    The values are first shifted by one of them (the window's first valid value), so a constant
    window gives exactly 0, then the corrected two-pass formula removes what rounding left in
    the shifted mean: ``sum(e ** 2) - sum(e) ** 2 / n`` with ``e`` the deviations from it.
    """
    ti, ai = xp.nonzero(where)
    rows = ti[:, None] - xp.arange(w)[None, :]
    vals = a2[xp.maximum(rows, 0), ai[:, None]]
    good = (rows >= 0) & xp.isfinite(vals)
    first = xp.take_along_axis(vals, xp.argmax(good, axis=1)[:, None], axis=1)
    d = xp.where(good, vals - first, 0.0)
    n = good.sum(axis=1)
    with quiet(xp):
        e = xp.where(good, d - (d.sum(axis=1) / n)[:, None], 0.0)
        s = e.sum(axis=1)
        return (e * e).sum(axis=1) - s * s / n


def rolling_std(x: Any, window: int, *, min_periods: int | None = None, ddof: int = 1) -> Array:
    """Standard deviation over the last ``window`` rows, NaN-aware, ``ddof=1`` by default.

    Matches ``DataFrame.rolling(window, min_periods).std(ddof)``; NaN where the window holds
    fewer than ``min_periods`` valid values (default ``window``) or no more than ``ddof``.
    O(T x A) whatever the window, with local anchors and an exact recomputation of nearly
    constant windows (see the module docstring), so it does not drift as pandas' running update
    does on long price series.
    """
    w = check_int(window, "window")
    mp = max(min_periods_of(w, min_periods), 1)
    d = check_int(ddof, "ddof", minimum=0)
    xp, a = ts(x)
    a2 = _columns(a)
    t_len, width = a2.shape
    out = xp.empty(a2.shape, dtype=xp.float64)
    if t_len == 0:
        return out.reshape(a.shape)
    step = max(1, STD_CHUNK_CELLS // t_len)  # columns at a time: bounded temporaries
    for c0 in range(0, width, step):
        cols = a2[:, c0:c0 + step]
        n, m2, scale = _block_moments(cols, w, xp)
        ok = (n >= mp) & (n > d)
        recheck = ok & (m2 < STD_RECHECK * scale)
        if bool(recheck.any()):
            m2[recheck] = _exact_m2(cols, w, recheck, xp)
        with quiet(xp):
            sd = xp.sqrt(xp.maximum(m2, 0.0) / (n - d))
        out[:, c0:c0 + step] = xp.where(ok, sd, xp.nan)
    return out.reshape(a.shape)


# -- minimum and maximum: doubling ---------------------------------------------------------------
def _rolling_extreme(x: Any, window: int, min_periods: int | None, fn: str) -> Array:
    w = check_int(window, "window")
    mp = max(min_periods_of(w, min_periods), 1)
    xp, a = ts(x)
    a2 = _columns(a)
    t_len = a2.shape[0]
    op = getattr(xp, fn)  # fmin / fmax: a NaN loses against any number
    valid = xp.isfinite(a2)
    m = xp.where(valid, a2, xp.nan)
    nxt = xp.empty(a2.shape, dtype=xp.float64)
    span = 1
    while 2 * span <= w and span < t_len:  # m[t]: the extreme of rows t - span + 1 .. t
        nxt[:span] = m[:span]
        op(m[span:], m[:t_len - span], out=nxt[span:])
        m, nxt, span = nxt, m, 2 * span
    gap = w - span  # 0 <= gap < span: the window is two overlapping spans
    if 0 < gap < t_len:
        nxt[:gap] = m[:gap]
        op(m[gap:], m[:t_len - gap], out=nxt[gap:])
        m = nxt
    if bool(valid.all()):  # every window holds as many values as rows
        m[:min(t_len, mp - 1)] = xp.nan
        return m.reshape(a.shape)
    count = xp.empty((t_len + 1, a2.shape[1]), dtype=xp.float64)
    count[0] = 0.0
    _cumsum(valid, 0, count[1:], xp)
    n = xp.empty(a2.shape, dtype=xp.float64)
    _window_diff(count, t_len, w, 0, n, xp)
    return xp.where(n >= mp, m, xp.nan).reshape(a.shape)


def rolling_min(x: Any, window: int, *, min_periods: int | None = None) -> Array:
    """Minimum over the last ``window`` rows, ignoring missing values (``rolling().min()``)."""
    return _rolling_extreme(x, window, min_periods, "fmin")


def rolling_max(x: Any, window: int, *, min_periods: int | None = None) -> Array:
    """Maximum over the last ``window`` rows, ignoring missing values (``rolling().max()``)."""
    return _rolling_extreme(x, window, min_periods, "fmax")
