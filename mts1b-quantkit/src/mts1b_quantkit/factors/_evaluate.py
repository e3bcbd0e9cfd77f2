"""``evaluate``: run a factor over a panel and return its ``(T, A)`` values; ``check_lookahead``.

Two factor contracts are accepted:

* a ``(T, A)`` return: the factor computed every row itself (vectorized); used as is.
* a cross-sectional ``(A,)`` return, like the FAQ's
  ``zscore_cross_sectional(panel.close[-1] / panel.close[-h] - 1)``: the factor describes "today"
  only, so it is evaluated point in time, once per row ``t``, on ``panel.until(dates[t])`` (the
  first ``t + 1`` rows). A row where the factor lacks history (an ``IndexError`` such as
  ``close[-h]`` on a shorter panel) is NaN.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from mts1b_quantkit._xp import as_float_array
from mts1b_quantkit.errors import FactorError
from mts1b_quantkit.factors._registry import get

__all__ = ["LookaheadReport", "check_lookahead", "evaluate", "panel_prefix"]

FloatArray = npt.NDArray[np.float64]


def _resolve(factor: Callable[..., Any] | str) -> tuple[Callable[..., Any], str]:
    if isinstance(factor, str):
        return get(factor), factor
    if not callable(factor):
        raise FactorError(f"factor must be a callable or a registered name; got {factor!r}",
                          field="factor", value=repr(factor))
    return factor, getattr(factor, "__name__", repr(factor))


def _shape(panel: Any) -> tuple[int, int]:
    shape = getattr(panel, "shape", None)
    if shape is None:
        shape = np.shape(panel.close)
    if len(shape) != 2:
        raise FactorError(f"panel must be (T, A); got shape {shape}", field="panel", value=shape)
    return int(shape[0]), int(shape[1])


def panel_prefix(panel: Any, rows: int) -> Any:
    """The first ``rows`` rows of ``panel``: what a factor may see at row ``rows - 1``.

    ``UniversePanel.head`` returns read-only views (no copy), so per-date evaluation stays
    cheap. Other panel types use their ``head(rows)`` or ``until(date)``.
    """
    if hasattr(panel, "head"):
        return panel.head(rows)
    if hasattr(panel, "until") and hasattr(panel, "dates"):
        return panel.until(panel.dates[rows - 1])
    raise FactorError("panel supports neither head(rows) nor until(date)", field="panel",
                      value=type(panel).__name__)


def _as_output(value: Any, name: str) -> FloatArray:
    try:
        return as_float_array(value)
    except (TypeError, ValueError) as exc:
        raise FactorError(f"factor {name!r} returned a non-numeric value: {exc}",
                          field="factor", value=name) from exc


def evaluate(factor: Callable[..., Any] | str, panel: Any, /, **params: Any) -> FloatArray:
    """Factor values as a ``(T, A)`` float64 numpy array, whichever contract the factor follows.

    ``factor`` is a callable or a registered name. A ``(T, A)`` result is returned as float64; an
    ``(A,)`` result triggers point-in-time evaluation on each prefix of the panel (see the module
    docstring); any other shape is a :class:`FactorError` naming the factor and the shape.
    """
    func, name = _resolve(factor)
    return _evaluate(func, name, panel, params, short_ok=False)


def _evaluate(func: Callable[..., Any], name: str, panel: Any, params: dict[str, Any], *,
              short_ok: bool) -> FloatArray:
    t_len, a_len = _shape(panel)
    try:
        result = func(panel, **params)
    except IndexError as exc:
        if short_ok:  # a truncated panel shorter than the factor's look-back: nothing to see
            return np.full((t_len, a_len), np.nan)
        raise FactorError(
            f"factor {name!r} raised IndexError on the full panel ({t_len} rows): {exc}",
            field="factor", value=name,
        ) from exc
    last = _as_output(result, name)
    if last.shape == (t_len, a_len):
        return last
    if last.shape != (a_len,):
        raise FactorError(
            f"factor {name!r} returned shape {last.shape}; expected (T, A) = {(t_len, a_len)} "
            f"or one cross-section (A,) = {(a_len,)}",
            field="factor", value=name, shape=last.shape,
        )
    out = np.full((t_len, a_len), np.nan)
    if t_len:
        out[-1] = last
    for t in range(t_len - 1):
        try:
            row = func(panel_prefix(panel, t + 1), **params)
        except IndexError:  # not enough history yet at this date
            continue
        values = _as_output(row, name)
        if values.shape != (a_len,):
            raise FactorError(
                f"factor {name!r} returned shape {values.shape} at row {t}; expected {(a_len,)}",
                field="factor", value=name, row=t, shape=values.shape,
            )
        out[t] = values
    return out


@dataclasses.dataclass(frozen=True)
class LookaheadReport:
    """Result of :func:`check_lookahead`.

    ``ok`` is True when no row changed. ``changed_rows`` lists every row index whose values
    differ between the full-panel run and a run on a truncated panel; ``details`` holds one
    ``(cut, row, max_abs_diff)`` per changed row and cut (``inf`` when NaN-ness changed).
    """

    factor: str
    ok: bool
    cuts: tuple[int, ...]
    changed_rows: tuple[int, ...]
    details: tuple[tuple[int, int, float], ...]

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        if self.ok:
            return f"{self.factor}: no look-ahead detected at cuts {list(self.cuts)}"
        rows = list(self.changed_rows[:10])
        more = "" if len(self.changed_rows) <= 10 else f" (+{len(self.changed_rows) - 10} more)"
        return (f"{self.factor}: LOOK-AHEAD - rows {rows}{more} change when later data is "
                f"removed (cuts {list(self.cuts)})")


def _cut_points(t_len: int, cuts: int | Sequence[int], seed: int) -> tuple[int, ...]:
    if isinstance(cuts, int) and not isinstance(cuts, bool):
        if cuts < 1:
            raise FactorError(f"cuts must be >= 1; got {cuts}", field="cuts", value=cuts)
        lo = max(1, t_len // 10)
        candidates = np.arange(lo, t_len)
        rng = np.random.default_rng(seed)
        k = min(cuts - 1, candidates.size)
        picked = rng.choice(candidates, size=k, replace=False) if k > 0 else np.array([], int)
        # always cut off just the last row: catches a one-row lead (close[t + 1])
        return tuple(sorted({int(c) for c in picked} | {t_len - 1}))
    chosen = tuple(sorted({int(c) for c in cast(Sequence[int], cuts)}))
    bad = [c for c in chosen if not 1 <= c < t_len]
    if bad:
        raise FactorError(f"cut points must be in [1, {t_len - 1}]; got {bad}", field="cuts",
                          value=bad)
    return chosen


def check_lookahead(factor: Callable[..., Any] | str, panel: Any, /, *,
                    cuts: int | Sequence[int] = 8, seed: int = 0, rtol: float = 1e-9,
                    atol: float = 1e-12, **params: Any) -> LookaheadReport:
    """Detect a factor that uses future rows.

    The factor is evaluated on the full panel and again on panels truncated at ``cuts`` cut
    points (``cuts - 1`` random ones drawn with ``seed``, plus ``T - 1``; or an explicit list of
    row counts). For an honest factor the rows before each cut are identical in both runs; any
    row that differs (beyond ``atol + rtol * |value|``, or by NaN-ness) is reported. Shifted
    closes, centred windows and full-sample normalisations are all caught this way. ``params``
    are passed to the factor.
    """
    func, name = _resolve(factor)
    t_len, _ = _shape(panel)
    if t_len < 2:
        raise FactorError("check_lookahead needs a panel with at least 2 rows", field="panel",
                          value=t_len)
    points = _cut_points(t_len, cuts, seed)
    full = _evaluate(func, name, panel, params, short_ok=False)
    changed: dict[int, None] = {}
    details: list[tuple[int, int, float]] = []
    for cut in points:
        part = _evaluate(func, name, panel_prefix(panel, cut), params, short_ok=True)
        ref = full[:cut]
        nan_a, nan_b = np.isnan(ref), np.isnan(part)
        with np.errstate(invalid="ignore"):
            diff = np.abs(ref - part)
            bad = (nan_a != nan_b) | (~nan_a & ~nan_b & (diff > atol + rtol * np.abs(ref)))
        bad_rows = np.flatnonzero(bad.any(axis=1))
        for row in bad_rows:
            r = int(row)
            changed.setdefault(r, None)
            row_bad = bad[r]
            both = ~nan_a[r] & ~nan_b[r] & row_bad
            gap = float(diff[r][both].max()) if both.any() else float("inf")
            if (nan_a[r] != nan_b[r]).any():
                gap = float("inf")
            details.append((cut, r, gap))
    return LookaheadReport(
        factor=name, ok=not changed, cuts=points, changed_rows=tuple(sorted(changed)),
        details=tuple(details),
    )
