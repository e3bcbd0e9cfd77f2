"""Rebalance schedules: which decision rows set new target weights.

``"daily"`` is every row. ``"weekly"`` and ``"monthly"`` are the last trading row of each
calendar week / month (the decision uses that close; with ``fill="next_open"`` the trade is the
first open of the next period), plus the first row of the trading window so a run does not sit
in cash until the first period ends. A sequence of dates selects, for each date, the last
trading row on or before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from mts1b_foundation import to_day

from mts1b_GPUbacktester.errors import BacktestConfigError

__all__ = ["RebalanceSpec", "rebalance_rows"]

RebalanceSpec = str | Sequence[Any]


def rebalance_rows(dates: npt.NDArray[np.datetime64], rebal: RebalanceSpec,
                   start: int = 0) -> npt.NDArray[np.bool_]:
    """``(T,)`` bool: True on decision rows at or after ``start`` that rebalance."""
    t_len = dates.shape[0]
    out = np.zeros(t_len, dtype=bool)
    if isinstance(rebal, str):
        if rebal == "daily":
            out[:] = True
        elif rebal in ("weekly", "monthly"):
            days = dates.astype("datetime64[D]")
            if rebal == "monthly":
                period = days.astype("datetime64[M]").astype(np.int64)
            else:
                # weeks numbered from a Monday (1970-01-05), so a period is Mon..Sun
                period = (days.astype(np.int64) - 4) // 7
            if t_len:
                out[:-1] = period[1:] != period[:-1]
                out[-1] = True
            if start < t_len:
                out[start] = True
        else:
            raise BacktestConfigError(
                f"rebal must be 'daily', 'weekly', 'monthly' or a sequence of dates; got "
                f"{rebal!r}", field="rebal", value=rebal)
    else:
        try:
            wanted = np.array(sorted({to_day(d) for d in rebal}), dtype="datetime64[D]")
        except Exception as exc:
            raise BacktestConfigError(f"rebal dates are not dates: {exc}", field="rebal",
                                      value=repr(rebal)[:200]) from exc
        rows = np.searchsorted(dates.astype("datetime64[D]"), wanted, side="right") - 1
        rows = rows[(rows >= 0) & (wanted <= dates[-1])] if t_len else rows[:0]
        out[rows] = True
    out[:start] = False
    return out
