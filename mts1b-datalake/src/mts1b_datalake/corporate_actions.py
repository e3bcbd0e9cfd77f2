"""Corporate actions -> back-adjustment factors (the one implementation; panels use it too).

Research uses *back-adjusted* prices: every price before an event is scaled so that the series is
continuous across it and close-to-close returns include the dividends. Execution uses *raw* prices
plus the events (a broker fills at the raw price and pays the dividend in cash).

For an event on day ``d`` (its ex-date), the factor applied to every day before ``d``:

* split of ratio ``k`` (new shares per old share; 0.1 for a 1-for-10 reverse split):
  prices x ``1/k``, volumes x ``k``;
* cash dividend ``D``: prices x ``1 - D / close[d-1]`` (the CRSP and Yahoo convention,
  ``dividend_base="previous_close"``, the default; the close before the ex-date is the last
  one known, skipping gaps). Quandl's WIKI prices use ``close[d] / (close[d] + D)`` instead
  (``dividend_base="ex_close"``); the two differ by a few 1e-5 per dividend. Under Quandl's
  convention the adjusted return over an ex-date is exactly ``(close[d] + D) / close[d-1]``
  (the cash reinvested at the ex-date close); under the default it is
  ``close[d] / (close[d-1] - D)``, the figure CRSP and Yahoo report.

The cumulative factor of day ``t`` is the product over the events after ``t`` (up to the end of
the series), so the last day is raw. Verified against Quandl WIKI's adjusted columns in
``tests/test_corporate_actions.py``: with ``dividend_base="ex_close"`` the factors reproduce
the ``AdjClose`` of ``dash-stock-ticker-demo.csv`` (AAPL, COKE) to 1e-9; with the default they
agree within 2e-4.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "DIVIDEND_BASES",
    "adjustment_factors",
    "back_adjust",
    "back_adjustment_factors",
    "event_grids",
]


def event_grids(events: pd.DataFrame, sessions: np.ndarray, symbols: Sequence[str]) -> (
    tuple[np.ndarray, np.ndarray]
):
    """``(T, A)`` grids: dividend cash (0 elsewhere) and split ratio (1 elsewhere).

    ``events`` has symbol, date, kind, value. An event dated on a day that is not in
    ``sessions`` applies to the next session; events after the last session are ignored.
    """
    T, A = len(sessions), len(symbols)
    dividend = np.zeros((T, A))
    split = np.ones((T, A))
    if events is None or not len(events):
        return dividend, split
    index = {s: i for i, s in enumerate(symbols)}
    sess = np.asarray(sessions).astype("datetime64[D]")
    days = pd.to_datetime(events["date"]).to_numpy().astype("datetime64[D]")
    rows = np.searchsorted(sess, days, side="left")
    for sym, kind, value, r in zip(events["symbol"], events["kind"], events["value"], rows,
                                   strict=True):
        a = index.get(sym)
        v = float(value)
        if a is None or r >= T or not np.isfinite(v) or v <= 0:
            continue
        if kind == "dividend":
            dividend[r, a] += v
        elif kind == "split":
            split[r, a] *= v
    return dividend, split


DIVIDEND_BASES = ("previous_close", "ex_close")


def back_adjustment_factors(close: np.ndarray, dividend: np.ndarray, split: np.ndarray, *,
                            dividend_base: str = "previous_close") -> (
    tuple[np.ndarray, np.ndarray]
):
    """Cumulative back-adjustment factors ``(price_factor, volume_factor)``, each ``(T, A)``.

    ``close`` is the raw close (NaN where missing), ``dividend``/``split`` come from
    :func:`event_grids`. A dividend whose previous close is unknown (or not above the
    dividend) is ignored rather than producing a non-positive factor.
    """
    if dividend_base not in DIVIDEND_BASES:
        from mts1b_datalake.errors import UnknownFieldError

        raise UnknownFieldError(f"dividend_base must be one of {list(DIVIDEND_BASES)}, not "
                                f"{dividend_base!r}", field="dividend_base", value=dividend_base)
    close = np.asarray(close, dtype=np.float64)
    if close.ndim == 1:
        f, v = back_adjustment_factors(close[:, None], np.asarray(dividend)[:, None],
                                       np.asarray(split)[:, None], dividend_base=dividend_base)
        return f[:, 0], v[:, 0]
    T, A = close.shape
    seen_row = np.where(~np.isnan(close), np.arange(T)[:, None], -1)
    last_row = np.maximum.accumulate(seen_row, axis=0)
    prev_row = np.vstack([np.full((1, A), -1), last_row[:-1]])
    prev_close = np.where(prev_row >= 0, close[np.maximum(prev_row, 0), np.arange(A)[None, :]],
                          np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        if dividend_base == "ex_close":
            div_step = np.where(dividend > 0, close / (close + dividend), 1.0)
        else:
            div_step = np.where(dividend > 0, 1.0 - dividend / prev_close, 1.0)
    div_step = np.where(np.isfinite(div_step) & (div_step > 0), div_step, 1.0)
    price_step = div_step / split
    vol_step = np.asarray(split, dtype=np.float64)

    def cumulative(step: np.ndarray) -> np.ndarray:
        out = np.ones_like(step)
        if T > 1:
            rev = np.cumprod(step[::-1], axis=0)[::-1]  # rev[t] = prod(step[t:])
            out[:-1] = rev[1:]
        return out

    return cumulative(price_step), cumulative(vol_step)


def adjustment_factors(bars: pd.DataFrame, events: pd.DataFrame, *,
                       dividend_base: str = "previous_close") -> pd.DataFrame:
    """Per (symbol, date) of ``bars``: ``price_factor`` and ``volume_factor``.

    ``bars`` is a canonical long table (symbol, date, close, ...); ``events`` has symbol, date,
    kind, value. Each symbol's factors run up to its own last bar.
    """
    out = bars[["symbol", "date"]].copy()
    out["price_factor"] = 1.0
    out["volume_factor"] = 1.0
    if not len(bars):
        return out
    for sym, part in bars.groupby("symbol", sort=False):
        part = part.sort_values("date")
        days = pd.to_datetime(part["date"]).to_numpy().astype("datetime64[D]")
        ev = events[events["symbol"] == sym] if len(events) else events
        div, spl = event_grids(ev, days, [sym])
        pf, vf = back_adjustment_factors(part["close"].to_numpy(dtype=np.float64)[:, None],
                                         div, spl, dividend_base=dividend_base)
        out.loc[part.index, "price_factor"] = pf[:, 0]
        out.loc[part.index, "volume_factor"] = vf[:, 0]
    return out


def back_adjust(bars: pd.DataFrame, events: pd.DataFrame, *,
                dividend_base: str = "previous_close") -> pd.DataFrame:
    """``bars`` with back-adjusted ``open high low close`` and ``volume`` (raw kept as
    ``raw_close``), plus the ``price_factor`` column."""
    factors = adjustment_factors(bars, events, dividend_base=dividend_base)
    out = bars.copy()
    out["raw_close"] = out["close"]
    for col in ("open", "high", "low", "close"):
        if col in out.columns:
            out[col] = out[col] * factors["price_factor"]
    if "volume" in out.columns:
        out["volume"] = out["volume"] * factors["volume_factor"]
    out["price_factor"] = factors["price_factor"]
    return out
