"""A strategy's ``Signal`` at one rebalance: its target weights from the datalake and the
trailing statistics of its own past weights against the returns that followed.

Why the statistics come with every signal: a strategy's weights alone cannot say whether it
still works. Each signal carries the last 60 sessions of its IC, rank IC, hit rate and a
Newey-West t-stat against the realised ``horizon``-session returns
(:func:`~mts1b_research.stats.trailing_stats`), computed from the same panel the weights came
from, so the numbers describe exactly the strategy that produced them.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
from mts1b_datalake.store import Store
from mts1b_foundation import Signal, StrategySpec, StrategyState

from mts1b_research.stats import horizon_returns, trailing_stats
from mts1b_research.targets import panel_for, strategy_weights

__all__ = ["STATS_WINDOW", "compute_signal", "lookback_for", "signal_subject"]

STATS_WINDOW = 60
"""Sessions of realised returns the trailing statistics cover."""
_FACTOR_LOOKBACK = 300
"""Sessions of history a factor may need before the statistics window (12-1 momentum: 252)."""


def lookback_for(spec: StrategySpec) -> int:
    """Sessions of panel a signal needs: the factor's look-back, the statistics window and the
    horizon of its last returns."""
    longest = max([v for k, v in spec.params.items() if k.startswith("h_")
                   and isinstance(v, int) and not isinstance(v, bool)] or [0])
    return max(longest + 1, _FACTOR_LOOKBACK) + STATS_WINDOW + spec.horizon + 1


def signal_subject(spec: StrategySpec) -> str:
    """Shadow strategies publish where the composer never reads."""
    if spec.state is StrategyState.SHADOW:
        return "mts.v1.research.signals.shadow"
    return "mts.v1.research.signals.published"


def compute_signal(spec: StrategySpec, store: Store | str | Path, session: dt.date,
                   at: dt.datetime) -> Signal:
    """The signal of ``spec`` for ``session`` (weights as of that session's bars), stamped
    ``at`` (the rebalance time)."""
    panel = panel_for(spec, store, session, lookback_sessions=lookback_for(spec))
    weights = strategy_weights(spec, panel)
    close = panel.field("close")
    stats = trailing_stats(np.where(panel.mask, weights.history, np.nan),
                           horizon_returns(close, spec.horizon), horizon=spec.horizon,
                           window=STATS_WINDOW)
    return Signal(
        strategy_id=spec.name, as_of=at, weights=dict(weights.targets), ic=stats.ic,
        rank_ic=stats.rank_ic, hit_rate=stats.hit_rate, t_stat=stats.t_stat,
        p_value=stats.p_value,
        horizon=spec.horizon, sessions=stats.sessions,
        mode="shadow" if spec.state is StrategyState.SHADOW else "live",
        strategy_version=spec.version,
        metadata=_metadata(weights.as_of, len(weights.targets), stats.t_stat_plain))


def _metadata(as_of: dt.date, names: int,
              t_stat_plain: float | None) -> dict[str, str | int | float]:
    """What a reader of the signal may want beside the statistics: the session the weights
    are as of, how many names hold a weight, and alphalens' plain t-stat for comparison."""
    out: dict[str, str | int | float] = {"as_of_session": as_of.isoformat(), "names": names}
    if t_stat_plain is not None:
        out["t_stat_plain"] = t_stat_plain
    return out
