"""``build_panel``: a universe over a date range, from the store, as a ``UniversePanel``.

Shapes: ``T`` = sessions of the calendar in ``[start, end]``, ``A`` = every symbol that is a
member of the universe on at least one of them (sorted). Every field is ``(T, A)`` float64 with
NaN where the symbol has no bar; ``mask`` is the point-in-time membership (see
:mod:`mts1b_datalake.universes`). Bars on days that are not sessions of the calendar are left out.

Adjustment (``adjust="back"``, the research default): prices are multiplied by the cumulative
factor of the corporate actions *after* each day and up to ``end``, so the last row is raw and
returns computed from any field include dividends (see :mod:`mts1b_datalake.corporate_actions`
for the exact convention). A split of ratio ``k`` on day ``d`` multiplies earlier prices by
``1/k`` (and earlier volumes by ``k``); a cash dividend ``D`` multiplies earlier prices by
``1 - D / close[d-1]``. ``adjust="none"`` gives raw prices; the
events are then available as the extra fields ``dividend`` and ``split_ratio``.

Extra fields (ask for them in ``fields``): ``adj_factor`` (the price factor, 1 when raw),
``dividend`` (cash per share on its ex-date, 0 elsewhere), ``split_ratio`` (1 elsewhere),
``dollar_volume`` (raw close x raw volume), ``returns`` (close-to-close return of the adjusted
close, NaN on the first row and after gaps).

Calendar: ``calendar=None`` (the default) takes the calendar of the instruments' asset class
(:data:`mts1b_datalake.calendar.ASSET_CLASS_CALENDARS`: equities ``XNYS``, FX ``24/5``, crypto
``24/7``), so a crypto panel has a row for every day and an FX panel one for every weekday
without the caller knowing to ask; instruments of classes on different calendars raise
:class:`~mts1b_datalake.errors.MixedAssetClassError` naming the classes, because no single set of
rows is right for both. The panel records its ``calendar`` and ``periods_per_year`` (252, 260,
365: :func:`mts1b_datalake.calendar.periods_per_year`) for whoever annualises its returns.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as _pc
from mts1b_foundation import OHLCV_FIELDS, UniversePanel
from mts1b_platform.logging import get_logger

from mts1b_datalake.calendar import (
    calendar_for_asset_classes,
    periods_per_year,
    to_day,
    trading_days,
)
from mts1b_datalake.corporate_actions import back_adjustment_factors, event_grids
from mts1b_datalake.errors import EmptyRangeError, InvalidRangeError, UnknownFieldError
from mts1b_datalake.store import Store
from mts1b_datalake.universes import Universe, classes_of, resolve_universe

__all__ = ["EXTRA_FIELDS", "PanelInfo", "build_panel", "panel_info"]

_log = get_logger(__name__)
pc: Any = _pc  # pyarrow.compute is untyped

EXTRA_FIELDS: tuple[str, ...] = ("adj_factor", "dividend", "split_ratio", "dollar_volume",
                                 "returns")
_ADJUST = ("back", "none")


def _store_of(store: Store | str | Path | None) -> Store:
    if store is None:
        return Store.default()
    if isinstance(store, Store):
        return store
    return Store(store)


def build_panel(
    universe: str | Sequence[str] | Universe,
    start: Any,
    end: Any,
    *,
    fields: Sequence[str] = OHLCV_FIELDS,
    adjust: str = "back",
    store: Store | str | Path | None = None,
    calendar: str | None = None,
    universe_params: Mapping[str, Any] | None = None,
    dividend_base: str = "previous_close",
) -> UniversePanel:
    """Build a :class:`mts1b_foundation.UniversePanel` for ``universe`` over ``[start, end]``.

    ``universe``: a registered name (``"us-large-cap"``), a list of symbols (``["SPY"]``) or a
    :class:`~mts1b_datalake.universes.Universe` (``universe("us-large-cap", n=50)``).
    ``fields``: OHLCV fields to load (the others are NaN) plus any of :data:`EXTRA_FIELDS`.
    ``calendar``: the rows' calendar (``"XNYS"``, ``"24/5"``, ``"24/7"``, any exchange code);
    ``None``: the instruments' asset class decides (see the module docs).
    ``dividend_base``: see :mod:`mts1b_datalake.corporate_actions`.
    Raises UnknownUniverseError / UnknownSymbolError / UnknownFieldError naming the bad value,
    InvalidRangeError when ``start`` is after ``end``, EmptyRangeError when the range holds no
    session or the universe has no member in it, MixedAssetClassError when ``calendar`` is
    ``None`` and the instruments' classes trade on different calendars.
    """
    started = time.perf_counter()
    if adjust not in _ADJUST:
        raise UnknownFieldError(f"adjust must be one of {list(_ADJUST)}, not {adjust!r}",
                                field="adjust", value=adjust)
    wanted = list(dict.fromkeys(fields))
    unknown = [f for f in wanted if f not in OHLCV_FIELDS and f not in EXTRA_FIELDS]
    if unknown:
        raise UnknownFieldError(
            f"unknown field(s) {unknown}; known: {list(OHLCV_FIELDS) + list(EXTRA_FIELDS)}",
            field="fields", value=unknown if len(unknown) > 1 else unknown[0])
    lo, hi = to_day(start), to_day(end)
    if lo > hi:
        raise InvalidRangeError(f"start {lo} is after end {hi}", field="start", value=str(lo),
                                end=str(hi))
    the_store = _store_of(store)
    rule = resolve_universe(universe, universe_params)
    if calendar is None:
        calendar = default_calendar(rule, the_store, lo, hi)
    sessions = trading_days(calendar, lo, hi)
    if not len(sessions):
        raise EmptyRangeError(f"no {calendar} session between {lo} and {hi}", field="start",
                              value=str(lo), end=str(hi))
    membership = rule.resolve(the_store, sessions, calendar=calendar)
    symbols = membership.symbols
    if not symbols or not membership.mask.any():
        hint = "" if the_store.manifest()["bars"] else (
            " (the store is empty: ingest data, or run "
            "mts1b_datalake.synthetic.install_demo_market())")
        raise EmptyRangeError(
            f"universe {rule.name!r} has no member between {lo} and {hi} in store "
            f"{the_store.root}{hint}", field="universe", value=rule.name, start=str(lo),
            end=str(hi))
    T, A = len(sessions), len(symbols)

    need_prices = [f for f in ("open", "high", "low", "close") if f in wanted]
    extras = [f for f in wanted if f in EXTRA_FIELDS]
    load: set[str] = set(need_prices)
    if "volume" in wanted or "dollar_volume" in extras:
        load.add("volume")
    if adjust == "back" or extras:
        load.add("close")
    columns = [c for c in OHLCV_FIELDS if c in load]
    table = the_store.read_bars_arrow(symbols, sessions[0].astype(dt.date),
                                      sessions[-1].astype(dt.date), columns=columns)
    raw = _scatter(table, sessions, symbols, columns)

    factor = np.ones((T, A))
    vol_factor = np.ones((T, A))
    dividend = np.zeros((T, A))
    split_ratio = np.ones((T, A))
    events = the_store.events(symbols, sessions[0].astype(dt.date),
                              sessions[-1].astype(dt.date), kinds=["split", "dividend"])
    if len(events):
        dividend, split_ratio = event_grids(events, sessions, symbols)
    if adjust == "back" and len(events):
        factor, vol_factor = back_adjustment_factors(raw["close"], dividend, split_ratio,
                                                     dividend_base=dividend_base)

    out: dict[str, np.ndarray] = {}
    nan = np.full((T, A), np.nan)
    for f in ("open", "high", "low", "close"):
        out[f] = raw[f] * factor if f in need_prices else nan
    out["volume"] = raw["volume"] * vol_factor if "volume" in wanted else nan
    extra: dict[str, np.ndarray] = {}
    for f in extras:
        if f == "adj_factor":
            extra[f] = factor
        elif f == "dividend":
            extra[f] = dividend
        elif f == "split_ratio":
            extra[f] = split_ratio
        elif f == "dollar_volume":
            extra[f] = raw["close"] * raw["volume"]
        elif f == "returns":
            adj_close = raw["close"] * factor
            ret = np.full((T, A), np.nan)
            with np.errstate(invalid="ignore", divide="ignore"):
                ret[1:] = adj_close[1:] / adj_close[:-1] - 1.0
            extra[f] = ret
    panel = UniversePanel(sessions, symbols, open=out["open"], high=out["high"], low=out["low"],
                          close=out["close"], volume=out["volume"], mask=membership.mask,
                          extra=extra, calendar=calendar,
                          periods_per_year=periods_per_year(calendar))
    _log.debug("panel built", universe=rule.name, T=T, A=A, calendar=calendar,
               seconds=round(time.perf_counter() - started, 4))
    return panel


def default_calendar(rule: Universe, store: Store, start: Any, end: Any) -> str:
    """The calendar of the instruments of ``rule`` by asset class (see the module docs).

    A universe that states its classes (:meth:`Universe.asset_classes`: lists of symbols, the
    built-in liquidity universes) decides without being resolved. Otherwise it is resolved
    over every calendar day of ``[start, end]`` (the widest set of rows) and its members'
    classes decide; no member at all gives the equity default. MixedAssetClassError when the
    classes trade on different calendars.
    """
    classes = rule.asset_classes(store)
    if classes is None:
        days = trading_days("24/7", start, end)
        found = rule.resolve(store, days, calendar="24/7")
        held = np.flatnonzero(np.asarray(found.mask, dtype=bool).any(axis=0))
        classes = classes_of(store, [found.symbols[int(i)] for i in held])
    return calendar_for_asset_classes(classes, classes)


def _scatter(table: pa.Table, sessions: np.ndarray, symbols: Sequence[str],
             columns: Sequence[str]) -> dict[str, np.ndarray]:
    """Long Arrow rows -> ``(T, A)`` arrays; rows on non-session days are dropped."""
    T, A = len(sessions), len(symbols)
    out = {c: np.full((T, A), np.nan) for c in OHLCV_FIELDS}
    if table.num_rows == 0:
        return out
    col = pc.index_in(table["symbol"], value_set=pa.array(list(symbols), pa.string()))
    col_idx = col.to_numpy(zero_copy_only=False)
    day_int = table["date"].cast(pa.int32()).to_numpy(zero_copy_only=False).astype(np.int64)
    sess = sessions.astype("datetime64[D]").astype(np.int64)
    row = np.searchsorted(sess, day_int)
    ok = (row < T) & (sess[np.minimum(row, T - 1)] == day_int)
    if not ok.all():
        _log.debug("bars off the calendar left out", rows=int((~ok).sum()))
    r, c = row[ok], col_idx[ok].astype(np.int64)
    for name in columns:
        values = table[name].to_numpy(zero_copy_only=False)
        out[name][r, c] = values[ok]
    return out


class PanelInfo(dict[str, Any]):
    """What ``panel info`` prints: shape, coverage, membership statistics, timing."""


def panel_info(universe: str | Sequence[str] | Universe, start: Any, end: Any, *,
               store: Store | str | Path | None = None, adjust: str = "back",
               calendar: str | None = None,
               universe_params: Mapping[str, Any] | None = None) -> PanelInfo:
    """Build the panel and describe it (used by ``mts mts1b-datalake panel info``)."""
    t0 = time.perf_counter()
    panel = build_panel(universe, start, end, adjust=adjust, store=store, calendar=calendar,
                        universe_params=universe_params)
    seconds = time.perf_counter() - t0
    T, A = panel.shape
    members = panel.mask.sum(axis=1)
    have = ~np.isnan(panel.close)
    in_mask_missing = int((panel.mask & ~have).sum())
    return PanelInfo(
        universe=universe if isinstance(universe, str) else getattr(universe, "name",
                                                                    str(universe)),
        start=str(panel.dates[0]), end=str(panel.dates[-1]), sessions=T, symbols=A,
        members_min=int(members.min()), members_mean=round(float(members.mean()), 1),
        members_max=int(members.max()), coverage=round(float(have.mean()), 4),
        member_days_without_bar=in_mask_missing, adjust=adjust, calendar=panel.calendar,
        periods_per_year=panel.periods_per_year, seconds=round(seconds, 3),
    )
