"""Quality checks: find what is wrong with daily bars, per symbol and date, and act on it.

Every check produces findings ``(symbol, date, check, severity, action, detail, value, file,
line)``; a :class:`QCPolicy` says, per check, whether to ``reject`` the row (drop it and report it
as rejected), ``repair`` it (see each check), only ``flag`` it, or ``ignore`` the check.

=================  =========  =========  =========================================================
check              severity   default    what it finds / what ``repair`` does
=================  =========  =========  =========================================================
duplicate          error      reject     the same (symbol, date) twice; the last row is kept
non_positive       error      reject     a price <= 0; repair sets the bar's prices to NaN
nan                warning    flag       open/high/low NaN while close exists; repair fills them
                                         from close (and from open/close for high/low)
ohlc               error      flag       open or close outside [low, high], or high < low;
                                         repair widens high/low to contain open and close
stale              warning    flag       the same close on ``stale_run`` sessions in a row;
                                         repair sets the repeats to NaN
off_calendar       warning    flag       a bar on a day that is not a session of the calendar
calendar_gap       warning    flag       sessions missing between a symbol's first and last bar
                                         (one finding per gap, at its first missing session)
bad_tick           error      repair     a one-day spike that reverts the next day; repair sets
                                         the bar's prices to NaN
split_like         error      flag       a jump with no reversal, no news-sized volume, whose
                                         ratio is within ``split_tolerance`` of a whole split
                                         ratio (2, 3, 4, 5, 8, 10, 20 or the reverse); repair
                                         records a split event, so back-adjusted panels are
                                         continuous (a 3-for-2 split shows up as spinoff_like)
spinoff_like       warning    flag       a large one-off drop with no reversal, carried by the
                                         overnight gap and without a news-sized volume surge;
                                         repair records the gap as a cash-equivalent dividend
volume             info       flag       zero or negative volume, or volume above
                                         ``volume_spike`` x / below ``volume_collapse`` x its
                                         trailing median; repair sets volume to NaN
=================  =========  =========  =========================================================

How jumps are told apart (all thresholds are fields of :class:`QCPolicy`): returns are scaled by
a robust volatility (1.4826 x the median absolute log return of the previous 60 bars). A
*bad tick* moves more than ``bad_tick_z`` sigmas and ``bad_tick_min_move`` in log terms, and the
next bar moves back by at least ``1 - revert_tolerance`` of it. A *jump* is a move over
``jump_z`` sigmas that is not a bad tick nor its reversal and happened mostly overnight (the
open-to-close part is under half of it). Corporate actions do not bring news-sized volume:
earnings crashes trade 5-20 times normal volume, spin-offs and special dividends 1-7 times. So a
drop counts as ``spinoff_like`` when it is larger than ``spinoff_big_move`` (log) with volume
under ``spinoff_big_volume`` x normal, or larger than ``spinoff_min_move`` with volume under
``spinoff_volume`` x normal. The thresholds were set on the S&P 500 2013-2018 file (see the
library docs for what they find there, including the false alarms).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import pandas as pd

from mts1b_datalake.errors import UnknownFieldError
from mts1b_datalake.frames import Rejected, empty_events, normalize_bars

__all__ = [
    "CHECKS",
    "Action",
    "QCPolicy",
    "QCReport",
    "QCResult",
    "run_qc",
]


class Action(enum.StrEnum):
    REJECT = "reject"
    REPAIR = "repair"
    FLAG = "flag"
    IGNORE = "ignore"


CHECKS: dict[str, str] = {
    "duplicate": "error",
    "non_positive": "error",
    "nan": "warning",
    "ohlc": "error",
    "stale": "warning",
    "off_calendar": "warning",
    "calendar_gap": "warning",
    "bad_tick": "error",
    "split_like": "error",
    "spinoff_like": "warning",
    "volume": "info",
}
"""Check name -> severity, in the order the report lists them."""

_DEFAULT_ACTIONS: dict[str, Action] = {
    "duplicate": Action.REJECT, "non_positive": Action.REJECT, "nan": Action.FLAG,
    "ohlc": Action.FLAG, "stale": Action.FLAG, "off_calendar": Action.FLAG,
    "calendar_gap": Action.FLAG, "bad_tick": Action.REPAIR, "split_like": Action.FLAG,
    "spinoff_like": Action.FLAG, "volume": Action.FLAG,
}
_SPLIT_RATIOS = (2.0, 3.0, 4.0, 5.0, 8.0, 10.0, 20.0)
_SEP = 64  # NaN separator between symbols for the rolling windows (> every window)


@dataclass(frozen=True)
class QCPolicy:
    """What to do per check, and the thresholds of the statistical checks."""

    actions: Mapping[str, Action] = field(default_factory=lambda: dict(_DEFAULT_ACTIONS))
    vol_window: int = 60
    volume_window: int = 20
    min_history: int = 20
    bad_tick_z: float = 6.0
    bad_tick_min_move: float = 0.08
    revert_tolerance: float = 0.3
    jump_z: float = 10.0
    split_tolerance: float = 0.03
    spinoff_min_move: float = 0.12
    spinoff_volume: float = 4.0
    spinoff_big_move: float = 0.23
    spinoff_big_volume: float = 8.0
    stale_run: int = 5
    volume_spike: float = 100.0
    volume_collapse: float = 0.01

    def __post_init__(self) -> None:
        merged = dict(_DEFAULT_ACTIONS)
        for name, action in dict(self.actions).items():
            if name not in CHECKS:
                raise UnknownFieldError(f"unknown QC check {name!r}; checks: {list(CHECKS)}",
                                        field="check", value=name)
            try:
                merged[name] = Action(action)
            except ValueError:
                raise UnknownFieldError(
                    f"unknown QC action {action!r} for {name!r}; actions: "
                    f"{[a.value for a in Action]}", field="action", value=action) from None
        object.__setattr__(self, "actions", merged)

    def action(self, check: str) -> Action:
        return Action(self.actions[check])

    def with_actions(self, **actions: str) -> QCPolicy:
        merged: dict[str, Action] = {**self.actions, **{k: Action(v) for k, v in
                                                        actions.items()}}
        return replace(self, actions=merged)

    @classmethod
    def parse(cls, items: Iterable[str], **thresholds: Any) -> QCPolicy:
        """From ``["bad_tick=flag", "split_like=repair"]`` (the CLI's ``--policy``)."""
        actions: dict[str, str] = {}
        for item in items:
            name, sep, action = item.partition("=")
            if not sep:
                raise UnknownFieldError(f"policy item {item!r} must look like check=action",
                                        field="policy", value=item)
            actions[name.strip()] = action.strip()
        known = {f.name for f in fields(cls)}
        for key in thresholds:
            if key not in known:
                raise UnknownFieldError(f"unknown QC threshold {key!r}", field="threshold",
                                        value=key)
        return cls(actions=actions, **thresholds)  # type: ignore[arg-type]

    @classmethod
    def flag_only(cls) -> QCPolicy:
        """Report everything, change nothing (except dropping duplicates, which must go)."""
        return cls(actions={k: (Action.REJECT if k == "duplicate" else Action.FLAG)
                            for k in CHECKS})


_FINDING_COLUMNS = ["symbol", "date", "check", "severity", "action", "detail", "value", "file",
                    "line"]


@dataclass
class QCReport:
    """Findings of one QC run, with a summary table and JSON/Markdown renderings."""

    findings: pd.DataFrame
    rows: int
    symbols: int
    policy: QCPolicy

    def summary(self) -> pd.DataFrame:
        """One row per check: findings, symbols affected, action, examples."""
        rows = []
        for check, severity in CHECKS.items():
            part = self.findings[self.findings["check"] == check]
            examples = ", ".join(f"{r.symbol} {pd.Timestamp(r.date).date()}"
                                 for r in part.head(3).itertuples(index=False))
            rows.append({"check": check, "severity": severity,
                         "action": self.policy.action(check).value, "findings": len(part),
                         "symbols": part["symbol"].nunique(), "examples": examples})
        return pd.DataFrame(rows)

    def summary_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "symbols": self.symbols, "findings": len(self.findings),
                "by_check": {r["check"]: r["findings"] for r in
                             self.summary().to_dict(orient="records")}}

    def for_check(self, check: str) -> pd.DataFrame:
        return self.findings[self.findings["check"] == check].reset_index(drop=True)

    def to_json(self, *, indent: int | None = 1) -> str:
        """The whole report as JSON: summary plus every finding."""
        findings = self.findings.copy()
        findings["date"] = pd.to_datetime(findings["date"]).dt.strftime("%Y-%m-%d")
        findings = findings.astype(object).where(findings.notna(), None)
        return json.dumps({"rows": self.rows, "symbols": self.symbols,
                           "summary": self.summary().to_dict(orient="records"),
                           "findings": findings.to_dict(orient="records")},
                          indent=indent, default=str)

    def to_markdown(self) -> str:
        """The summary as a Markdown table (what the library docs show)."""
        lines = ["| check | severity | action | findings | symbols | examples |",
                 "|---|---|---|---:|---:|---|"]
        for r in self.summary().itertuples(index=False):
            lines.append(f"| {r.check} | {r.severity} | {r.action} | {r.findings} | "
                         f"{r.symbols} | {r.examples} |")
        return "\n".join(lines)


@dataclass
class QCResult:
    """Cleaned bars, the report, rows rejected by policy and events recorded by repairs."""

    bars: pd.DataFrame
    report: QCReport
    rejected: list[Rejected]
    events: pd.DataFrame


def _rolling_median_by_group(values: np.ndarray, starts: np.ndarray, window: int,
                             min_periods: int) -> np.ndarray:
    """Median of the previous ``window`` values within each group (NaN-separated trick).

    ``starts`` are the row positions where a new group begins. The value at row ``t`` uses rows
    ``t-window .. t-1`` of the same group, never row ``t`` itself.
    """
    n = len(values)
    if n == 0:
        return values.copy()
    group = np.cumsum(np.isin(np.arange(n), starts)) - 1
    offsets = group * _SEP
    padded = np.full(n + (group[-1] + 1) * _SEP, np.nan)
    pos = np.arange(n) + offsets + _SEP
    padded[pos] = values
    med = pd.Series(padded).rolling(window, min_periods=min_periods).median().shift(1)
    out: np.ndarray = med.to_numpy()[pos]
    return out


def run_qc(bars: pd.DataFrame, policy: QCPolicy | None = None, *, calendar: str | None = "XNYS",
           sessions: Iterable[Any] | None = None) -> QCResult:
    """Run every check on canonical bars (any order) and apply ``policy``.

    ``sessions`` (trading days) defaults to the calendar's sessions over the data's range;
    ``calendar=None`` skips the calendar checks.
    """
    policy = policy or QCPolicy()
    frame = normalize_bars(bars)
    if "line" not in frame.columns:
        frame["line"] = -1
    if "file" not in frame.columns:
        frame["file"] = "<input>"
    frame = frame.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)
    found: list[pd.DataFrame] = []

    def add(check: str, mask: np.ndarray, detail: np.ndarray | str,
            value: np.ndarray | float = np.nan, rows: pd.DataFrame | None = None) -> None:
        if policy.action(check) is Action.IGNORE or not mask.any():
            return
        src = frame if rows is None else rows
        sel = src.loc[mask]
        found.append(pd.DataFrame({
            "symbol": sel["symbol"].to_numpy(), "date": sel["date"].to_numpy(),
            "check": check, "severity": CHECKS[check],
            "action": policy.action(check).value,
            "detail": detail[mask] if isinstance(detail, np.ndarray) else detail,
            "value": value[mask] if isinstance(value, np.ndarray) else value,
            "file": sel["file"].to_numpy(), "line": sel["line"].to_numpy(),
        }))

    # -- duplicates (always leave the frame unique) ------------------------------------------
    dup = frame.duplicated(["symbol", "date"], keep="last").to_numpy()
    add("duplicate", dup, "duplicate (symbol, date); the last row is kept")
    rejected: list[Rejected] = [
        Rejected(str(r.file), int(r.line), f"qc duplicate: ({r.symbol}, "
                 f"{pd.Timestamp(r.date).date()}) appears again later", r.symbol)
        for r in frame.loc[dup].itertuples(index=False)]
    frame = frame.loc[~dup].reset_index(drop=True)

    sym = frame["symbol"].to_numpy()
    n = len(frame)
    o, h, lo, c, v = (frame[k].to_numpy(dtype=np.float64).copy()
                      for k in ("open", "high", "low", "close", "volume"))
    starts = np.flatnonzero(np.r_[True, sym[1:] != sym[:-1]]) if n else np.array([], int)
    first = np.zeros(n, dtype=bool)
    first[starts] = True
    last = np.zeros(n, dtype=bool)
    if n:
        last[np.r_[starts[1:] - 1, n - 1]] = True

    # -- row-level checks ---------------------------------------------------------------------
    prices = np.vstack([o, h, lo, c])
    nonpos = (np.nan_to_num(prices, nan=1.0) <= 0).any(axis=0)
    add("non_positive", nonpos, "price <= 0")

    partial_nan = np.isnan(prices).any(axis=0) & ~np.isnan(prices).all(axis=0)
    all_nan = np.isnan(prices).all(axis=0)
    names = np.array(["open", "high", "low", "close"])
    nan_detail = np.array([", ".join(names[np.isnan(prices[:, i])]) + " NaN" if partial_nan[i]
                           or all_nan[i] else "" for i in range(n)], dtype=object) \
        if (partial_nan | all_nan).any() else ""
    add("nan", partial_nan | all_nan, nan_detail)

    tol = 1e-9
    with np.errstate(invalid="ignore"):
        span = np.maximum(np.abs(h), 1.0) * tol
        bad_ohlc = ((o > h + span) | (o < lo - span) | (c > h + span) | (c < lo - span)
                    | (h < lo - span))
    bad_ohlc &= ~np.isnan(h) & ~np.isnan(lo)
    ohlc_detail = np.array(
        [f"open {o[i]:g} close {c[i]:g} outside low {lo[i]:g} - high {h[i]:g}" for i in
         np.arange(n)], dtype=object) if bad_ohlc.any() else ""
    if isinstance(ohlc_detail, np.ndarray):
        ohlc_detail = np.where(bad_ohlc, ohlc_detail, "")
    add("ohlc", bad_ohlc, ohlc_detail)

    # -- returns and robust scales ----------------------------------------------------------
    safe_c = np.where(c > 0, c, np.nan)
    prev_c = np.r_[np.nan, safe_c[:-1]] if n else safe_c
    prev_c[first] = np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        lr = np.log(safe_c / prev_c)
        oc = np.log(safe_c / np.where(o > 0, o, np.nan))
    mad = _rolling_median_by_group(np.abs(lr), starts, policy.vol_window, policy.min_history)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = lr / (1.4826 * np.where(mad > 0, mad, np.nan))
        vmed = _rolling_median_by_group(np.where(v > 0, v, np.nan), starts,
                                        policy.volume_window, 5)
        vr = v / vmed
    lr_next = np.r_[lr[1:], np.nan] if n else lr
    z_next = np.r_[z[1:], np.nan] if n else z
    lr_next[last] = np.nan
    z_next[last] = np.nan

    # -- bad ticks: spike and reversal ------------------------------------------------------
    with np.errstate(invalid="ignore"):
        bad_tick = ((np.abs(z) > policy.bad_tick_z) & (np.abs(lr) > policy.bad_tick_min_move)
                    & (np.abs(z_next) > policy.bad_tick_z)
                    & (np.abs(lr + lr_next) < policy.revert_tolerance * np.abs(lr)))
    bad_tick = np.nan_to_num(bad_tick, nan=0).astype(bool)
    for i in np.flatnonzero(bad_tick):  # in a down-up-down zigzag only the first is the tick
        if i > 0 and bad_tick[i - 1] and not first[i]:
            bad_tick[i] = False
    reversal = np.r_[False, bad_tick[:-1]] if n else bad_tick
    reversal &= ~first
    add("bad_tick", bad_tick,
        np.array([f"close {c[i]:g} vs {prev_c[i]:g} before, reverts next day" if bad_tick[i]
                  else "" for i in range(n)], dtype=object) if bad_tick.any() else "",
        value=np.exp(lr) - 1)

    # -- jumps that do not revert: unadjusted splits and spin-offs --------------------------
    with np.errstate(invalid="ignore"):
        jump = ((np.abs(z) > policy.jump_z) & ~bad_tick & ~reversal
                & ~(np.abs(lr_next) > 0.5 * np.abs(lr))
                & (np.abs(oc) < 0.5 * np.abs(lr)))
    jump = np.nan_to_num(jump, nan=0).astype(bool)
    ratio = np.exp(np.abs(lr))
    nearest = np.array(_SPLIT_RATIOS)[np.argmin(np.abs(ratio[:, None] / np.array(_SPLIT_RATIOS)
                                                       - 1.0), axis=1)] if n else ratio
    with np.errstate(invalid="ignore"):
        vr_ok = np.nan_to_num(vr, nan=1.0)
        split_like = (jump & (np.abs(ratio / nearest - 1.0) < policy.split_tolerance)
                      & (vr_ok < policy.spinoff_big_volume))
        split_value = np.where(lr < 0, nearest, 1.0 / nearest)
        spinoff_like = (jump & ~split_like & (lr < 0)
                        & (((lr < -policy.spinoff_big_move) & (vr_ok < policy.spinoff_big_volume))
                           | ((lr < -policy.spinoff_min_move) & (vr_ok < policy.spinoff_volume))))
    add("split_like", split_like,
        np.array([f"close {prev_c[i]:g} -> {c[i]:g} (ratio {ratio[i]:.3f} ~ "
                  f"{'1:' if lr[i] > 0 else ''}{nearest[i]:g}{'' if lr[i] > 0 else ':1'}), "
                  f"no reversal" if split_like[i] else "" for i in range(n)], dtype=object)
        if split_like.any() else "", value=split_value)
    add("spinoff_like", spinoff_like,
        np.array([f"close {prev_c[i]:g} -> {c[i]:g} ({np.exp(lr[i]) - 1:+.1%}) at the open, "
                  f"volume {vr[i]:.1f}x normal, no reversal" if spinoff_like[i] else ""
                  for i in range(n)], dtype=object) if spinoff_like.any() else "",
        value=np.exp(lr) - 1)

    # -- stale prices -------------------------------------------------------------------------
    same = np.r_[False, c[1:] == c[:-1]] if n else np.zeros(0, bool)
    same &= ~first
    run = np.zeros(n, dtype=np.int64)
    for i in np.flatnonzero(same):  # runs are rare: a Python loop over them is cheap
        run[i] = run[i - 1] + 1
    stale = run >= policy.stale_run - 1
    add("stale", stale, np.array([f"close {c[i]:g} unchanged for {run[i] + 1} bars"
                                  if stale[i] else "" for i in range(n)], dtype=object)
        if stale.any() else "")

    # -- volume -------------------------------------------------------------------------------
    with np.errstate(invalid="ignore"):
        vol_bad = (v == 0) | (v < 0) | (vr > policy.volume_spike) | (
            (v > 0) & (vr < policy.volume_collapse))
    vol_bad = np.nan_to_num(vol_bad, nan=0).astype(bool)
    add("volume", vol_bad, np.array(
        [("zero volume" if v[i] == 0 else "negative volume" if v[i] < 0 else
          f"volume {v[i]:g} is {vr[i]:.3g}x its {policy.volume_window}-bar median")
         if vol_bad[i] else "" for i in range(n)], dtype=object) if vol_bad.any() else "",
        value=vr)

    # -- calendar ---------------------------------------------------------------------------
    off_cal = np.zeros(n, dtype=bool)
    gap_frame: pd.DataFrame | None = None
    if n and (calendar is not None or sessions is not None):
        days = frame["date"].to_numpy().astype("datetime64[D]")
        if sessions is None:
            from mts1b_datalake.calendar import trading_days

            session_days = trading_days(calendar or "XNYS", days.min(), days.max())
        else:
            session_days = np.array(sorted({np.datetime64(pd.Timestamp(d).date(), "D")
                                            for d in sessions}), dtype="datetime64[D]")
        idx = np.searchsorted(session_days, days)
        inside = idx < len(session_days)
        off_cal = ~inside | (session_days[np.minimum(idx, len(session_days) - 1)] != days)
        add("off_calendar", off_cal, f"not a session of {calendar}")
        pos = np.where(off_cal, -1, idx)
        gaps_sym: list[str] = []
        gaps_date: list[Any] = []
        gaps_detail: list[str] = []
        gaps_n: list[int] = []
        gaps_line: list[int] = []
        gaps_file: list[str] = []
        lines_arr = frame["line"].to_numpy()
        files_arr = frame["file"].to_numpy()
        for s0, s1 in zip(starts, np.r_[starts[1:], n], strict=True):
            p = pos[s0:s1]
            good = np.flatnonzero(p >= 0)
            if len(good) < 2:
                continue
            pg = p[good]
            step = np.diff(pg)
            for k in np.flatnonzero(step > 1):
                missing = int(step[k] - 1)
                a = session_days[pg[k] + 1]
                b = session_days[pg[k + 1] - 1]
                gaps_sym.append(sym[s0])
                gaps_date.append(a)
                gaps_n.append(missing)
                gaps_detail.append(f"{missing} session(s) missing: {a} .. {b}")
                gaps_line.append(int(lines_arr[s0 + good[k + 1]]))
                gaps_file.append(str(files_arr[s0]))
        if gaps_sym:
            gap_frame = pd.DataFrame({"symbol": gaps_sym,
                                      "date": np.array(gaps_date).astype("datetime64[s]"),
                                      "file": gaps_file, "line": gaps_line})
            add("calendar_gap", np.ones(len(gap_frame), dtype=bool),
                np.array(gaps_detail, dtype=object), np.array(gaps_n, dtype=np.float64),
                rows=gap_frame)

    findings = pd.concat(found, ignore_index=True) if found else pd.DataFrame(
        columns=_FINDING_COLUMNS)
    if len(findings):
        order = {k: i for i, k in enumerate(CHECKS)}
        findings = findings.assign(_o=findings["check"].map(order)).sort_values(
            ["_o", "symbol", "date"], kind="stable").drop(columns="_o").reset_index(drop=True)

    # -- apply the policy -------------------------------------------------------------------
    drop = np.zeros(n, dtype=bool)
    events: list[pd.DataFrame] = []

    def act(check: str, mask: np.ndarray) -> Action:
        action = policy.action(check)
        if action is Action.REJECT:
            drop[mask] = True
        return action

    if act("non_positive", nonpos) is Action.REPAIR:
        for arr in (o, h, lo, c):
            arr[nonpos] = np.nan
    if act("nan", partial_nan | all_nan) is Action.REPAIR:
        fill = partial_nan
        o[fill & np.isnan(o)] = c[fill & np.isnan(o)]
        hi_fill = fill & np.isnan(h)
        h[hi_fill] = np.fmax(o[hi_fill], c[hi_fill])
        lo_fill = fill & np.isnan(lo)
        lo[lo_fill] = np.fmin(o[lo_fill], c[lo_fill])
    if act("ohlc", bad_ohlc) is Action.REPAIR:
        h[bad_ohlc] = np.fmax(np.fmax(h[bad_ohlc], o[bad_ohlc]), c[bad_ohlc])
        lo[bad_ohlc] = np.fmin(np.fmin(lo[bad_ohlc], o[bad_ohlc]), c[bad_ohlc])
    if act("bad_tick", bad_tick) is Action.REPAIR:
        for arr in (o, h, lo, c):
            arr[bad_tick] = np.nan
    if act("stale", stale) is Action.REPAIR:
        for arr in (o, h, lo, c):
            arr[stale] = np.nan
    if act("volume", vol_bad) is Action.REPAIR:
        v[vol_bad] = np.nan
    act("off_calendar", off_cal)
    if act("split_like", split_like) is Action.REPAIR and split_like.any():
        events.append(pd.DataFrame({"symbol": sym[split_like],
                                    "date": frame["date"].to_numpy()[split_like],
                                    "kind": "split", "value": split_value[split_like]}))
    if act("spinoff_like", spinoff_like) is Action.REPAIR and spinoff_like.any():
        gap_value = prev_c - o
        events.append(pd.DataFrame({"symbol": sym[spinoff_like],
                                    "date": frame["date"].to_numpy()[spinoff_like],
                                    "kind": "dividend",
                                    "value": np.round(gap_value[spinoff_like], 6)}))
    # calendar_gap cannot be acted on row-wise (there is no row for a missing day)

    cleaned = frame.assign(open=o, high=h, low=lo, close=c, volume=v)
    if drop.any():
        reasons: dict[int, list[str]] = {}
        if len(findings):
            rejecting = {k for k in CHECKS if policy.action(k) is Action.REJECT}
            key = dict(zip(zip(frame["symbol"], frame["date"], strict=True), range(n),
                           strict=True))
            for f in findings[findings["check"].isin(rejecting)].itertuples(index=False):
                hit = key.get((f.symbol, f.date))
                if hit is not None:
                    reasons.setdefault(int(hit), []).append(str(f.check))
        for i in np.flatnonzero(drop):
            rejected.append(Rejected(str(frame["file"].iat[i]), int(frame["line"].iat[i]),
                                     "qc " + "+".join(reasons.get(int(i), ["policy"])),
                                     str(sym[i])))
        cleaned = cleaned.loc[~drop]
    ev = pd.concat(events, ignore_index=True) if events else empty_events()
    report = QCReport(findings=findings, rows=n, symbols=len(starts), policy=policy)
    return QCResult(bars=cleaned.reset_index(drop=True), report=report, rejected=rejected,
                    events=ev)
