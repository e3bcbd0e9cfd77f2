"""What a strategy report shows, gathered from the registry and the datalake.

Why recomputed rather than read from past signals: the report's IC series must be the one the
current version of the strategy produces session by session, on the same panel its signals use
(:func:`~mts1b_research.targets.strategy_weights`). Realised returns are not in the research
registry: they come from the fund's books - the treasury's NAV attribution, read from the
``FundNav`` events it publishes (:func:`realised_from_navs`), or a CSV of ``date,return``;
without either the page says the strategy has no realised returns to compare.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from collections.abc import Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
from mts1b_foundation import FundNav, StrategySpec, StrategyState
from mts1b_quantkit.metrics import _rowwise_pearson, information_coefficient

from mts1b_research.errors import ResearchInputError
from mts1b_research.registry import TransitionRecord
from mts1b_research.report import ReportData, StateChange
from mts1b_research.signals import lookback_for
from mts1b_research.stats import horizon_returns, newey_west_tstat
from mts1b_research.targets import panel_for, strategy_weights

__all__ = ["DECAY_HORIZONS", "read_returns", "realised_from_navs", "report_data"]

DECAY_HORIZONS = (1, 2, 5, 10, 21)
"""Horizons (sessions) of the IC-decay chart."""
_HISTORY = 250
"""Sessions of IC history the page shows, beyond what the factor needs."""


def read_returns(path: Path) -> dict[dt.date, float]:
    """Daily realised returns from a CSV with the columns ``date`` and ``return``."""
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    except OSError as exc:
        raise ResearchInputError("--realised", str(path), f"cannot be read ({exc.strerror})"
                                 ) from None
    out: dict[dt.date, float] = {}
    for line, row in enumerate(rows, start=2):
        try:
            day = dt.date.fromisoformat((row.get("date") or "").strip())
            value = float((row.get("return") or "").strip())
        except ValueError:
            raise ResearchInputError(f"--realised:{line}", row, "needs a date (YYYY-MM-DD) "
                                     "and a return") from None
        if not math.isfinite(value):
            raise ResearchInputError(f"--realised:{line} return", row.get("return"),
                                     "must be a finite number")
        out[day] = value
    return out


def realised_from_navs(navs: Iterable[FundNav], strategy: str, capital: Decimal
                       ) -> dict[dt.date, float]:
    """The strategy's daily returns from its fund's struck NAVs: each session's PnL the
    treasury attributed to the sleeve over the sleeve's equity before it - ``capital`` (its
    allocation) plus the PnL attributed since. A session the sleeve made nothing in is a
    return of 0. Sessions in order; a session struck twice (restated) counts its last strike.
    """
    if not capital > 0:
        raise ResearchInputError("--capital", str(capital), "must be > 0")
    by_session: dict[str, FundNav] = {}
    for nav in navs:
        held = by_session.get(nav.session)
        if held is None or nav.as_of >= held.as_of:
            by_session[nav.session] = nav
    equity = capital
    out: dict[dt.date, float] = {}
    for session in sorted(by_session):
        pnl = by_session[session].pnl_by_strategy.get(strategy, Decimal(0))
        out[dt.date.fromisoformat(session)] = float(pnl / equity)
        equity += pnl
    return out


def _history(transitions: Sequence[TransitionRecord]) -> list[StateChange]:
    return [(t.ts, t.from_state.value, t.to_state.value, t.actor, t.reason or "")
            for t in transitions]


def _went_live(transitions: Sequence[TransitionRecord]) -> dt.date | None:
    dates = [t.ts.date() for t in transitions if t.to_state is StrategyState.LIVE]
    return dates[0] if dates else None


def report_data(spec: StrategySpec, store: Any, end: dt.date,
                transitions: Sequence[TransitionRecord], *,
                realised: dict[dt.date, float] | None = None,
                since: dt.date | None = None) -> ReportData:
    """The page's data for ``spec`` up to ``end``; realised against backtested returns from
    ``since`` (default: the day it went live; a paper loop over history gives its first
    replayed session)."""
    panel = panel_for(spec, store, end, lookback_sessions=lookback_for(spec) + _HISTORY)
    weights = np.where(panel.mask, strategy_weights(spec, panel).history, np.nan)
    close = panel.field("close")
    dates = [d.item() for d in panel.dates.astype("datetime64[D]")]
    forward = horizon_returns(close, spec.horizon)
    ic = _rowwise_pearson(weights, forward)
    rank_ic = information_coefficient(weights, forward)
    decay: dict[int, tuple[float, float | None]] = {}
    for h in DECAY_HORIZONS:
        series = _rowwise_pearson(weights, horizon_returns(close, h))
        usable = series[~np.isnan(series)]
        if usable.size >= 3:
            decay[h] = (float(usable.mean()), newey_west_tstat(usable, h - 1))
    held = np.nan_to_num(weights)
    turnover = np.r_[0.0, np.abs(np.diff(held, axis=0)).sum(axis=1)]
    daily = horizon_returns(close, 1)
    backtested = np.r_[0.0, np.nansum(held[:-1] * np.nan_to_num(daily[:-1]), axis=1)]
    live = since or _went_live(transitions)
    live_rows = [i for i, d in enumerate(dates) if live is not None and d >= live
                 and realised is not None and d in realised]
    return ReportData(
        strategy=spec.name, version=spec.version, state=spec.state.value, horizon=spec.horizon,
        dates=dates, ic=[float(x) for x in ic], rank_ic=[float(x) for x in rank_ic],
        ic_by_horizon=decay, live_dates=[dates[i] for i in live_rows],
        realised=[realised[dates[i]] for i in live_rows] if realised else [],
        backtested=[float(backtested[i]) for i in live_rows],
        turnover=[float(x) for x in turnover], state_history=_history(transitions))
