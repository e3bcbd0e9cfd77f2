"""The row rules every bar obeys before it is stored, whatever reader or API it came through.

Why a gate apart from the quality checks: QC judges data that is plausible but suspicious (a
spike, a gap, a jump) and a policy may keep it. The rules here are about data no policy should
let into the store, because what reads the store cannot defend against it: an infinite price
poisons every mean, a negative volume every liquidity ranking, and a symbol such as
``../../etc/passwd``, ``X;DROP TABLE bars;--`` or ``bar\\nnl`` ends up in file names, SQL, log
lines and bus subjects downstream. The providers apply the same rules while parsing (so a
rejection quotes the file's own text), and :meth:`mts1b_datalake.store.Store.write` applies them
again to whatever reaches it (a :class:`~mts1b_datalake.frames.SourceData` built in Python, a
plugin's frame), so no path into the store skips them.

A bar is **rejected** when

- its symbol is not a valid :data:`mts1b_foundation.Symbol` (ASCII letters, digits and
  ``. - _ = ^ &``, 1-64 characters, no ``..``);
- a price or the volume is infinite (``inf``, ``-inf``, ``1e999``) or outside the wire's numeric
  domain (``|x| >= 1E+15``): such a bar could never travel as a wire ``Bar``;
- its volume is negative.

NaN stays what it is everywhere in the datalake, "no value": a NaN open, high or low next to a
close is kept (the S&P 500 file has 11 such rows; QC's ``nan`` check reports them), and a
missing close is rejected by the readers, which know the row's text.

Open or close outside ``[low, high]`` (or high below low) is a vendor inconsistency in data that
is otherwise good (FX files from Yahoo have hundreds such rows). :data:`OhlcPolicy` says what to
do: ``"repair"`` (the default) makes high and low the highest and lowest of the bar's prices and
reports each repaired row with its old and new values; ``"reject"`` refuses the row. Prices that
are not positive take no part in this rule (an ``Open`` of 0 means "no open" in old index
files, and widening the low to 0 would make a good low bad); QC's ``non_positive`` check judges
them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
from mts1b_foundation.symbols import check_symbol
from mts1b_foundation.wire import MAX_MAGNITUDE

from mts1b_datalake.errors import UnknownFieldError
from mts1b_datalake.frames import Rejected

__all__ = [
    "MAX_VALUE",
    "OHLC_POLICIES",
    "OUT_OF_DOMAIN",
    "REPAIR_COLUMNS",
    "OhlcPolicy",
    "RowCheck",
    "check_bars",
    "check_events",
    "check_ohlc_policy",
    "cut",
    "empty_repairs",
    "shown",
    "symbol_problem",
    "valid_symbols",
]

OhlcPolicy = Literal["repair", "reject"]
OHLC_POLICIES: tuple[str, ...] = get_args(OhlcPolicy)
MAX_VALUE = float(MAX_MAGNITUDE)
"""Prices and volumes are below this in magnitude (the foundation's numeric domain, 1E+15)."""
OUT_OF_DOMAIN = "is outside the numeric domain (magnitude 1E+15 or more)"
"""How a rejection says that a value is too large for the wire (after the field and value)."""
REPAIR_COLUMNS: tuple[str, ...] = ("file", "line", "symbol", "date", "detail", "old_high", "high",
                                   "old_low", "low")
"""Columns of :attr:`RowCheck.repairs`: one row per repaired bar."""

_NUMERIC = ("open", "high", "low", "close", "volume")
_SHOWN = 40


def shown(value: Any) -> str:
    """``repr`` of a value for a message, cut to 40 characters (a 300-character "symbol" must
    not flood a report line) and with its length when cut; control characters come out escaped
    by ``repr``, so a message is always one line."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= _SHOWN:
        return repr(text)
    return f"{text[:_SHOWN]!r}... ({len(text)} characters)"


def cut(value: Any) -> str:
    """``value`` as text, cut to 40 characters (with ``...``): the ``value`` of a rejection."""
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def symbol_problem(value: object) -> str | None:
    """Why ``value`` is not a valid symbol (the foundation's rule, in its words), or None."""
    try:
        check_symbol(value)  # type: ignore[arg-type]
    except (ValueError, TypeError) as exc:
        return str(exc)
    return None


def check_ohlc_policy(value: str) -> OhlcPolicy:
    """``value`` if it names an OHLC policy, else UnknownFieldError listing the policies."""
    if value not in OHLC_POLICIES:
        raise UnknownFieldError(f"unknown ohlc_policy {value!r}; policies: {list(OHLC_POLICIES)}",
                                field="ohlc_policy", value=value)
    policy: OhlcPolicy = value  # type: ignore[assignment]
    return policy


def _num(x: float) -> str:
    return format(float(x), ".12g")


def empty_repairs() -> pd.DataFrame:
    """A repairs table with no row (the columns of :data:`REPAIR_COLUMNS`)."""
    return pd.DataFrame({c: pd.Series([], dtype=object if c in ("file", "symbol", "detail")
                                      else "datetime64[s]" if c == "date" else
                                      np.int64 if c == "line" else np.float64)
                         for c in REPAIR_COLUMNS})


@dataclass
class RowCheck:
    """What :func:`check_bars` let through, refused and repaired."""

    bars: pd.DataFrame
    rejected: list[Rejected] = field(default_factory=list)
    repairs: pd.DataFrame = field(default_factory=empty_repairs)


def check_bars(bars: pd.DataFrame, *, ohlc_policy: str = "repair") -> RowCheck:
    """Apply the row rules (module docstring) to canonical bars.

    Returns the bars that pass (repaired where the policy says so, index reset), a
    :class:`~mts1b_datalake.frames.Rejected` per refused bar naming the field and its value,
    and one row per repaired bar (:data:`REPAIR_COLUMNS`). Provenance comes from the optional
    ``file`` and ``line`` columns. Applying it twice changes nothing the second time.
    """
    policy = check_ohlc_policy(ohlc_policy)
    frame = bars.reset_index(drop=True)
    n = len(frame)
    if n == 0:
        return RowCheck(frame)
    refused = np.zeros(n, dtype=bool)
    reasons: dict[int, str] = {}  # only refused rows have an entry: they are few
    fields: dict[int, str] = {}
    values: dict[int, str] = {}

    def reject(mask: np.ndarray, field_name: str, make: Any) -> None:
        if not mask.any():
            return
        for i in np.flatnonzero(mask & ~refused).tolist():
            reasons[i], values[i] = make(i)
            fields[i] = field_name
            refused[i] = True

    column = frame["symbol"]
    problems = {s: why for s in column.unique() if (why := symbol_problem(s)) is not None}
    if problems:
        mask = column.isin(list(problems)).to_numpy(dtype=bool)
        reject(mask, "symbol", lambda i: (
            f"symbol {shown(column.iat[i])} is not a valid symbol: {problems[column.iat[i]]}",
            cut(column.iat[i])))

    numbers = {k: frame[k].to_numpy(dtype=np.float64) for k in _NUMERIC if k in frame.columns}
    for name, x in numbers.items():
        with np.errstate(invalid="ignore"):
            infinite = np.isinf(x)
            huge = ~infinite & (np.abs(x) >= MAX_VALUE)
        reject(infinite, name, lambda i, x=x, name=name: (
            f"{name} {_num(x[i])} is not a finite number", _num(x[i])))
        reject(huge, name, lambda i, x=x, name=name: (
            f"{name} {_num(x[i])} {OUT_OF_DOMAIN}", _num(x[i])))
    if "volume" in numbers:
        vol = numbers["volume"]
        with np.errstate(invalid="ignore"):
            negative = vol < 0
        reject(negative, "volume", lambda i: (f"volume {_num(vol[i])} is negative", _num(vol[i])))

    repairs = empty_repairs()
    if {"open", "high", "low", "close"} <= numbers.keys():
        o, h, lo, c = (np.where(numbers[k] > 0, numbers[k], np.nan)
                       for k in ("open", "high", "low", "close"))
        ok = ~refused
        with np.errstate(invalid="ignore"):
            highest = np.fmax(np.fmax(o, c), np.fmax(h, lo))
            lowest = np.fmin(np.fmin(o, c), np.fmin(h, lo))
            high_bad = ok & (h < highest)
            low_bad = ok & (lo > lowest)
        bad = high_bad | low_bad
        if bad.any():
            def where(i: int) -> tuple[str, float]:
                for name, x in (("open", o), ("close", c)):
                    if x[i] > h[i] or x[i] < lo[i]:
                        return name, float(x[i])
                return "high", float(h[i])

            def detail(i: int) -> str:
                return (f"open {_num(o[i])} close {_num(c[i])} outside low {_num(lo[i])} - "
                        f"high {_num(h[i])}")

            if policy == "reject":
                for i in np.flatnonzero(bad).tolist():
                    name, value = where(i)
                    reasons[i] = f"{detail(i)} (ohlc_policy reject)"
                    fields[i], values[i] = name, _num(value)
                    refused[i] = True
            else:
                rows = np.flatnonzero(bad)
                new_h = np.where(high_bad, highest, numbers["high"])
                new_lo = np.where(low_bad, lowest, numbers["low"])
                repairs = pd.DataFrame({
                    "file": _provenance(frame, "file", "<input>")[rows],
                    "line": _provenance(frame, "line", -1)[rows].astype(np.int64),
                    "symbol": column.iloc[rows].to_numpy(dtype=object),
                    "date": frame["date"].to_numpy()[rows].astype("datetime64[s]"),
                    "detail": [detail(int(i)) for i in rows],
                    "old_high": numbers["high"][rows], "high": new_h[rows],
                    "old_low": numbers["low"][rows], "low": new_lo[rows],
                })
                frame = frame.assign(high=new_h, low=new_lo)

    rejected: list[Rejected] = []
    if refused.any():
        files = _provenance(frame, "file", "<input>")
        lines = _provenance(frame, "line", -1)
        for i in np.flatnonzero(refused).tolist():
            rejected.append(Rejected(str(files[i]), int(lines[i]), reasons[i],
                                     str(column.iat[i]) if fields[i] != "symbol" else None,
                                     field=fields[i], value=values[i]))
        frame = frame.loc[~refused].reset_index(drop=True)
    return RowCheck(frame, rejected, repairs)


def check_events(events: pd.DataFrame, *, source: str = "<events>") -> tuple[
    pd.DataFrame, list[Rejected]
]:
    """Drop corporate-action events whose symbol is invalid or whose value is infinite or
    outside the numeric domain (NaN stays: listings and delistings carry no value)."""
    if events is None or not len(events):
        return events, []
    symbols = events["symbol"].to_numpy(dtype=object)
    value = events["value"].to_numpy(dtype=np.float64)
    problems = {s: why for s in pd.unique(symbols) if (why := symbol_problem(s)) is not None}
    rejected: list[Rejected] = []
    keep = np.ones(len(events), dtype=bool)
    for i in range(len(events)):
        if symbols[i] in problems:
            reason = f"event symbol {shown(symbols[i])} is not a valid symbol: " \
                     f"{problems[symbols[i]]}"
            rejected.append(Rejected(source, -1, reason, None, field="symbol",
                                     value=cut(symbols[i])))
        elif np.isinf(value[i]) or abs(value[i]) >= MAX_VALUE:
            rejected.append(Rejected(source, -1, f"event value {_num(value[i])} is not a finite "
                                     "number in the numeric domain", str(symbols[i]),
                                     field="value", value=_num(value[i])))
        else:
            continue
        keep[i] = False
    if keep.all():
        return events, rejected
    return events.loc[keep].reset_index(drop=True), rejected


def _provenance(frame: pd.DataFrame, column: str, default: object) -> np.ndarray:
    if column in frame.columns:
        values: np.ndarray = frame[column].to_numpy()
        return values
    return np.full(len(frame), default, dtype=object)


def valid_symbols(symbols: Sequence[object]) -> list[object]:
    """The members of ``symbols`` that are valid symbols (metadata tables are filtered with
    it: a symbol row that no bar may carry has nothing to describe)."""
    return [s for s in symbols if symbol_problem(s) is None]
