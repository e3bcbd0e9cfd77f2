"""A strategy's target weights at a rebalance, computed from the datalake.

:func:`strategy_weights` turns a :class:`~mts1b_foundation.StrategySpec` and a
:class:`~mts1b_foundation.UniversePanel` into :class:`StrategyWeights`: the factor's scores from
the quantkit registry (``mts1b_quantkit.factors.evaluate``), sized by quantkit's ``size`` with the
panel's universe mask and the assets' daily close-to-close returns (the Kelly methods need them),
zero outside the universe and where a score is missing. It is the same computation the
backtester's ``compute_targets`` does, so a strategy's live targets are its backtest's targets.

Why the panel is cut at ``as_of`` before anything runs: the weights at a rebalance must not depend
on later bars, whatever the factor does. Evaluating on ``panel.head(as_of_index + 1)`` makes that
true by construction instead of trusting every factor to be honest.

Why the whole weight history is kept: the signal's statistics (rank IC, hit rate, t-stat over the
last 60 sessions of realised ``horizon``-day returns) need the weights of each past session, and
they are the rows of the same computation.

:func:`panel_for` builds the panel from the datalake with enough history for the factor's
look-back, the statistics window and the horizon (the caller says how many sessions).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import math
from collections.abc import Callable, Mapping
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt
from mts1b_datalake import Store, build_panel
from mts1b_datalake.errors import DatalakeError, EmptyRangeError
from mts1b_foundation import StrategySpec, UniversePanel
from mts1b_quantkit.errors import FactorError, SizingError, UnknownFactorError
from mts1b_quantkit.factors import evaluate, get, returns
from mts1b_quantkit.sizing import get_sizer, size

from mts1b_research.errors import ResearchInputError

__all__ = ["WEIGHT_PLACES", "StrategyWeights", "panel_for", "strategy_weights"]

FloatArray = npt.NDArray[np.float64]

WEIGHT_PLACES = 8
"""Decimal places of a published target weight: 1e-8 of a sleeve is far below a share of any
instrument at any capital the stack trades, and a fixed scale keeps signals byte-comparable."""
_QUANTUM = Decimal(1).scaleb(-WEIGHT_PLACES)
# XNYS: five sessions a week, plus 5 % for holidays (about 9 a year = 2.5 % of 365 days, so
# twice what is needed); the margin covers a short range that starts in a holiday cluster
_CALENDAR_DAYS_PER_SESSION = 7 / 5 * 1.05
_RANGE_MARGIN_DAYS = 10


@dataclasses.dataclass(frozen=True)
class StrategyWeights:
    """A strategy's weights, computed point in time at session ``as_of``.

    ``history``: ``(T, A)`` read-only float64 weights, one row per session of ``dates`` up to and
    including ``as_of`` (rows after ``as_of`` were never computed), columns in ``symbols`` order;
    0 outside the universe or without a score. ``targets``: the ``as_of`` row as
    ``{symbol: Decimal}`` rounded half-even to :data:`WEIGHT_PLACES` places, weights that round
    to zero left out (a name absent from the targets is to be flat).
    """

    strategy: str
    version: int
    as_of: dt.date
    as_of_index: int
    dates: tuple[dt.date, ...]
    symbols: tuple[str, ...]
    history: FloatArray
    targets: Mapping[str, Decimal]

    @property
    def gross(self) -> Decimal:
        """Sum of ``|weight|`` of the published targets."""
        return sum((abs(w) for w in self.targets.values()), Decimal(0))


def _factor(name: str) -> Callable[..., Any]:
    try:
        return get(name)
    except UnknownFactorError as exc:
        raise ResearchInputError("factor", name, f"not a registered factor: {exc.message}"
                                 ) from exc


def _check_params(name: str, func: Callable[..., Any], params: Mapping[str, Any]) -> None:
    """Refuse a param the factor does not take, or one of another type than its default.

    Why before evaluating: a misspelt ``h_lnog`` would otherwise be a TypeError deep in the
    factor (or, with ``**kwargs``, silently ignored), and ``h_long=252.0`` a slice error.
    """
    sig = inspect.signature(func)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return
    takes = {p.name: p for p in sig.parameters.values()
             if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                           inspect.Parameter.KEYWORD_ONLY)}
    for key, value in params.items():
        if key not in takes:
            raise ResearchInputError(f"params.{key}", value,
                                     f"factor {name!r} takes only {sorted(takes)}")
        default = takes[key].default
        if default is inspect.Parameter.empty or default is None:
            continue
        if not _same_kind(default, value):
            raise ResearchInputError(f"params.{key}", value, f"factor {name!r} expects a "
                                     f"{type(default).__name__} (its default is {default!r})")


def _same_kind(default: object, value: object) -> bool:
    """An int param takes ints (not bools), a float one ints or floats, others their type."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int)
    if isinstance(default, float):
        return isinstance(value, int | float)
    return isinstance(value, type(default))


def _check_sizing(sizing: Mapping[str, Any]) -> None:
    method = sizing.get("method")
    try:
        get_sizer(str(method))
    except SizingError as exc:
        raise ResearchInputError("sizing.method", method, exc.message) from exc


def _row(panel: UniversePanel, as_of_index: int | None) -> int:
    t_len, a_len = panel.shape
    if t_len == 0 or a_len == 0 or not panel.mask.any():
        raise ResearchInputError("universe", repr(panel), "the panel holds no data")
    if as_of_index is None:
        return t_len - 1
    if isinstance(as_of_index, bool) or not isinstance(as_of_index, int) or not (
            -t_len <= as_of_index < t_len):
        raise ResearchInputError("as_of_index", as_of_index,
                                 f"must be an int row of the panel's {t_len} sessions")
    return as_of_index % t_len


def _scores(spec: StrategySpec, func: Callable[..., Any], panel: UniversePanel) -> FloatArray:
    try:
        return evaluate(func, panel, **spec.params)
    except FactorError as exc:
        raise ResearchInputError("factor", spec.factor, exc.message) from exc
    except (TypeError, ValueError, IndexError) as exc:  # a param value the factor cannot use
        raise ResearchInputError("params", dict(spec.params),
                                 f"factor {spec.factor!r} failed on them: {exc}") from exc


def _sized(spec: StrategySpec, scores: FloatArray, panel: UniversePanel) -> FloatArray:
    """quantkit's ``size`` with the universe mask and daily returns; 0 outside the universe
    and where the sizer left NaN (as the backtester's ``size_targets``)."""
    try:
        weights = np.asarray(size(scores, dict(spec.sizing), mask=panel.mask,
                                  returns=returns(panel.close, 1)), dtype=np.float64)
    except SizingError as exc:
        field = exc.context.get("field", "method")
        raise ResearchInputError(f"sizing.{field}", spec.sizing.get(str(field), spec.sizing),
                                 exc.message) from exc
    out: FloatArray = np.nan_to_num(np.where(panel.mask, weights, 0.0), nan=0.0)
    out.setflags(write=False)
    return out


def _decimal(weight: float) -> Decimal:
    return Decimal(repr(weight)).quantize(_QUANTUM, rounding=ROUND_HALF_EVEN)


def _targets(symbols: tuple[str, ...], row: FloatArray) -> Mapping[str, Decimal]:
    out: dict[str, Decimal] = {}
    for symbol, weight in zip(symbols, row.tolist(), strict=True):
        if not math.isfinite(weight):
            continue
        rounded = _decimal(weight)
        if rounded != 0:
            out[symbol] = rounded
    return MappingProxyType(out)


def strategy_weights(spec: StrategySpec, panel: UniversePanel, *,
                     as_of_index: int | None = None) -> StrategyWeights:
    """The strategy's weights at panel row ``as_of_index`` (default: the last session).

    Only rows ``<= as_of_index`` are read (see the module docstring). Raises ResearchInputError
    naming ``factor`` (not registered, or refused by quantkit), ``params.<name>`` (a param the
    factor does not take, or of the wrong type), ``params`` (a value the factor fails on),
    ``sizing.method`` / ``sizing.<param>`` (quantkit's sizing refused it), ``universe`` (an
    empty panel) or ``as_of_index``; and ``panel`` when no asset has a score at ``as_of``, since
    publishing an all-flat book because the history was too short would liquidate the sleeve.
    """
    func = _factor(spec.factor)
    _check_params(spec.factor, func, spec.params)
    _check_sizing(spec.sizing)
    row = _row(panel, as_of_index)
    seen = panel.head(row + 1)
    scores = _scores(spec, func, seen)
    if not np.isfinite(np.where(seen.mask[row], scores[row], np.nan)).any():
        raise ResearchInputError(
            "panel", f"{seen.shape[0]} sessions to {seen.dates[row]}",
            f"no asset has a {spec.factor} score at the as-of session: too little history for "
            "the factor's look-back (panel_for's lookback_sessions), or no universe member")
    history = _sized(spec, scores, seen)
    dates = tuple(d.item() for d in seen.dates.astype("datetime64[D]"))
    return StrategyWeights(
        strategy=spec.name, version=spec.version, as_of=dates[row], as_of_index=row,
        dates=dates, symbols=seen.symbols, history=history,
        targets=_targets(seen.symbols, history[row]),
    )


def panel_for(spec: StrategySpec, store: Store | str | Path, end: dt.date, *,
              lookback_sessions: int) -> UniversePanel:
    """The strategy's universe panel from the datalake: the last ``lookback_sessions`` sessions
    on or before ``end`` (fewer where the store's history is shorter).

    ``lookback_sessions`` must cover the factor's look-back, the statistics window and the
    horizon (f_momentum_12_1 with ``h_long=252``, 60 sessions of statistics, ``horizon=5``: at
    least 252 + 60 + 5 + 1). The calendar range asked of the datalake is ``7/5`` calendar days a
    session plus room for holidays, and the panel is then cut to the wanted number of rows.
    """
    if isinstance(lookback_sessions, bool) or not isinstance(lookback_sessions, int) or (
            lookback_sessions < 1):
        raise ResearchInputError("lookback_sessions", lookback_sessions, "must be an int >= 1")
    span = math.ceil(lookback_sessions * _CALENDAR_DAYS_PER_SESSION) + _RANGE_MARGIN_DAYS
    start = end - dt.timedelta(days=span)
    universe = spec.universe if isinstance(spec.universe, str) else list(spec.universe)
    try:
        panel = build_panel(universe, start, end, store=store)
    except EmptyRangeError as exc:
        raise ResearchInputError("universe", spec.universe,
                                 f"no data from {start} to {end}: {exc.message}") from exc
    except DatalakeError as exc:
        raise ResearchInputError("universe", spec.universe, exc.message) from exc
    if len(panel) > lookback_sessions:
        panel = panel.between(panel.dates[-lookback_sessions], panel.dates[-1])
    return panel
