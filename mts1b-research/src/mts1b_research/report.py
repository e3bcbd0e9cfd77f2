"""One self-contained HTML page per strategy: ``mts mts1b-research report STRATEGY``.

Why self-contained: the page is mailed, archived next to an approval and opened offline, so it
must not load anything (no JavaScript, no CDN, no external file) and must look the same in ten
years. Charts are therefore inline SVG drawn here with a few small helpers (the research
library does not depend on a plotting library, nor on mts1b_GPUbacktester's tearsheet code).

Why every text is escaped: the strategy name, actors and transition reasons are typed by
people; the page must show them, never interpret them as markup.

:func:`render_report` is pure: the same :class:`ReportData` gives the same page, byte for byte.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import numpy.typing as npt
from mts1b_quantkit.metrics import cum_returns

from mts1b_research.errors import ResearchInputError
from mts1b_research.stats import MIN_SESSIONS, newey_west_se, newey_west_tstat

__all__ = ["ReportData", "StateChange", "render_report"]

FloatArray = npt.NDArray[np.float64]

StateChange = tuple[datetime, str | None, str, str, str]
"""One row of the state history: (timestamp, from_state, to_state, actor, reason); from_state
is None for the strategy's creation."""

Z_95 = 1.96


@dataclass(frozen=True, slots=True)
class ReportData:
    """Everything the page shows, already loaded (the caller reads the registry and the lake).

    ``dates``, ``ic``, ``rank_ic`` and ``turnover`` (empty or as long as ``dates``) are per
    session; ``ic``/``rank_ic`` may hold NaN for sessions without a usable IC.
    ``ic_by_horizon`` maps a horizon in sessions to (mean IC, Newey-West t-stat or None).
    ``live_dates`` with ``realised`` and ``backtested`` (each empty or as long as
    ``live_dates``) are the daily returns since the strategy went live; a strategy never live
    has them empty. ``horizon`` sets the Newey-West lag (``horizon - 1``) of the rolling bands.
    """

    strategy: str
    version: int
    state: str
    horizon: int
    dates: Sequence[date]
    ic: Sequence[float]
    rank_ic: Sequence[float]
    ic_by_horizon: Mapping[int, tuple[float, float | None]]
    live_dates: Sequence[date] = ()
    realised: Sequence[float] = ()
    backtested: Sequence[float] = ()
    turnover: Sequence[float] = ()
    state_history: Sequence[StateChange] = ()
    rolling_window: int = 20

    def __post_init__(self) -> None:
        """Refuse series of the wrong length here, not as a silently misdrawn chart."""
        if isinstance(self.horizon, bool) or self.horizon < 1:
            raise ResearchInputError("horizon", self.horizon, "must be an integer >= 1")
        if isinstance(self.rolling_window, bool) or self.rolling_window < MIN_SESSIONS:
            raise ResearchInputError("rolling_window", self.rolling_window,
                                     f"must be an integer >= {MIN_SESSIONS}")
        n = len(self.dates)
        for name in ("ic", "rank_ic"):
            _check_length(name, getattr(self, name), n, allow_empty=False)
        _check_length("turnover", self.turnover, n, allow_empty=True)
        for name in ("realised", "backtested"):
            _check_length(name, getattr(self, name), len(self.live_dates), allow_empty=True)


def _check_length(field: str, values: Sequence[float], expected: int, *,
                  allow_empty: bool) -> None:
    if len(values) == expected or (allow_empty and len(values) == 0):
        return
    raise ResearchInputError(field, len(values), f"must have {expected} values"
                             + (" or none" if allow_empty else ""))


# -- numbers and text --------------------------------------------------------------------------
def _esc(value: object) -> str:
    """Text for HTML content and attribute values (quotes escaped too)."""
    return html.escape(str(value), quote=True)


def _num(value: float | None, digits: int = 4) -> str:
    """A number as the page prints it; missing or NaN reads "n/a", never a misleading 0."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}"


def _array(values: Sequence[float]) -> FloatArray:
    return np.asarray(values, dtype=np.float64).reshape(-1)


def _rolling_band(values: Sequence[float], window: int, lag: int
                  ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Trailing ``window`` mean and its 95% band (mean +/- 1.96 * Newey-West standard error).

    Newey-West with lag ``horizon - 1`` for the same reason as the signal's t-stat: ICs on
    overlapping forward returns are correlated, and an i.i.d. band would be too narrow. A window
    with fewer than three known ICs, or a zero spread, has no mean or band (NaN: a gap).
    """
    x = _array(values)
    mean, lo, hi = (np.full(x.size, np.nan) for _ in range(3))
    for end in range(window - 1, x.size):
        chunk = x[end - window + 1:end + 1]
        known = chunk[~np.isnan(chunk)]
        if known.size < MIN_SESSIONS:
            continue
        mean[end] = known.mean()
        se = newey_west_se(known, lag)
        if se is not None:
            lo[end], hi[end] = mean[end] - Z_95 * se, mean[end] + Z_95 * se
    return mean, lo, hi


# -- inline SVG --------------------------------------------------------------------------------
WIDTH, HEIGHT = 760, 240
LEFT, RIGHT, TOP, BOTTOM = 60, 16, 24, 30


@dataclass(frozen=True, slots=True)
class _Frame:
    """Maps (index, value) to pixels for a chart of ``count`` points between ``lo`` and ``hi``."""

    count: int
    lo: float
    hi: float

    def x(self, i: float) -> float:
        span = max(self.count - 1, 1)
        return LEFT + (WIDTH - LEFT - RIGHT) * i / span

    def y(self, v: float) -> float:
        return TOP + (HEIGHT - TOP - BOTTOM) * (self.hi - v) / (self.hi - self.lo)


def _frame(count: int, *arrays: FloatArray) -> _Frame:
    """A frame spanning every finite value and zero, padded 5% so lines do not touch edges."""
    finite = [a[np.isfinite(a)] for a in arrays]
    values = np.concatenate([*finite, np.zeros(1)])
    lo, hi = float(values.min()), float(values.max())
    pad = (hi - lo) * 0.05 or 1e-6
    return _Frame(count, lo - pad, hi + pad)


def _runs(mask: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """[start, stop) index ranges where ``mask`` holds: NaN breaks a line instead of bridging."""
    runs: list[tuple[int, int]] = []
    start: int | None = None
    for i, ok in enumerate(mask.tolist()):
        if ok and start is None:
            start = i
        elif not ok and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, mask.size))
    return runs


def _points(frame: _Frame, idx: range, values: FloatArray) -> str:
    return " ".join(f"{frame.x(i):.1f},{frame.y(float(values[i])):.1f}" for i in idx)


def _polyline(frame: _Frame, values: FloatArray, color: str) -> str:
    return "".join(
        f'<polyline points="{_points(frame, range(a, b), values)}" fill="none" '
        f'stroke="{color}" stroke-width="1.6"/>'
        for a, b in _runs(np.isfinite(values)))


def _band(frame: _Frame, lo: FloatArray, hi: FloatArray, color: str) -> str:
    parts = []
    for a, b in _runs(np.isfinite(lo) & np.isfinite(hi)):
        upper = _points(frame, range(a, b), hi)
        lower = _points(frame, range(b - 1, a - 1, -1), lo)
        parts.append(f'<polygon points="{upper} {lower}" fill="{color}" '
                     'fill-opacity="0.18" stroke="none"/>')
    return "".join(parts)


def _axes(frame: _Frame, labels: Sequence[tuple[float, str]]) -> str:
    """Zero line, four y gridlines with values, and the given x labels (index, text)."""
    parts = []
    for k in range(5):
        v = frame.lo + (frame.hi - frame.lo) * k / 4
        y = frame.y(v)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                     'class="grid"/>'
                     f'<text x="{LEFT - 6}" y="{y + 4:.1f}" class="ylab">{v:.3g}</text>')
    zero = frame.y(0.0)
    parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{zero:.1f}" y2="{zero:.1f}" '
                 'class="zero"/>')
    parts.extend(f'<text x="{frame.x(i):.1f}" y="{HEIGHT - 10}" class="xlab">{_esc(t)}</text>'
                 for i, t in labels)
    return "".join(parts)


def _date_labels(dates: Sequence[date]) -> list[tuple[float, str]]:
    if not dates:
        return []
    picks = sorted({0, (len(dates) - 1) // 2, len(dates) - 1})
    return [(float(i), dates[i].isoformat()) for i in picks]


def _legend(items: Sequence[tuple[str, str]]) -> str:
    parts, x = [], LEFT
    for label, color in items:
        parts.append(f'<rect x="{x}" y="6" width="14" height="4" fill="{color}"/>'
                     f'<text x="{x + 18}" y="12" class="legend">{_esc(label)}</text>')
        x += 18 + 8 * len(label) + 16
    return "".join(parts)


def _svg(title: str, body: str) -> str:
    return (f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" class="chart" role="img" '
            f'aria-label="{_esc(title)}">{body}</svg>')


def _line_chart(title: str, dates: Sequence[date],
                lines: Sequence[tuple[str, FloatArray, str]],
                band: tuple[FloatArray, FloatArray] | None = None) -> str:
    """Lines over dates (NaN = gap), with an optional shaded band, in one ``<svg>``."""
    arrays = [values for _, values, _ in lines] + (list(band) if band else [])
    frame = _frame(len(dates), *arrays)
    body = [_axes(frame, _date_labels(dates))]
    if band is not None:
        body.append(_band(frame, band[0], band[1], lines[0][2]))
    body.extend(_polyline(frame, values, color) for _, values, color in lines)
    body.append(_legend([(label, color) for label, _, color in lines]))
    return _svg(title, "".join(body))


def _bar_chart(title: str, labels: Sequence[str], values: FloatArray) -> str:
    """One bar per label from zero (positive blue, negative red), in one ``<svg>``."""
    frame = _frame(len(labels) + 1, values)
    step = (WIDTH - LEFT - RIGHT) / max(len(labels), 1)
    body = [_axes(frame, [])]
    zero = frame.y(0.0)
    for k, (label, v) in enumerate(zip(labels, values.tolist(), strict=True)):
        x = LEFT + step * k + step * 0.2
        if math.isfinite(v):
            top, bottom = sorted((frame.y(v), zero))
            color = "#0969da" if v >= 0 else "#d1242f"
            body.append(f'<rect x="{x:.1f}" y="{top:.1f}" width="{step * 0.6:.1f}" '
                        f'height="{max(bottom - top, 0.5):.1f}" fill="{color}"/>')
        body.append(f'<text x="{x + step * 0.3:.1f}" y="{HEIGHT - 10}" class="xlab">'
                    f'{_esc(label)}</text>')
    return _svg(title, "".join(body))


# -- page sections -----------------------------------------------------------------------------
IC_COLOR, RANK_COLOR, LIVE_COLOR, BT_COLOR, TURN_COLOR = (
    "#0969da", "#8250df", "#1a7f37", "#9a6700", "#57606a")


def _section(title: str, content: str, note: str = "") -> str:
    note_html = f'<p class="note">{_esc(note)}</p>' if note else ""
    return f'<section><h2>{_esc(title)}</h2>{content}{note_html}</section>'


def _empty(sentence: str) -> str:
    return f'<p class="empty">{_esc(sentence)}</p>'


def _rolling_section(data: ReportData, label: str, values: Sequence[float], color: str) -> str:
    title = f"Rolling {label} ({data.rolling_window} sessions) with 95% band"
    if len(values) < data.rolling_window:
        return _section(title, _empty(f"Fewer than {data.rolling_window} sessions of {label} "
                                      "so far: no rolling mean yet."))
    mean, lo, hi = _rolling_band(values, data.rolling_window, data.horizon - 1)
    chart = _line_chart(title, data.dates, [(f"rolling mean {label}", mean, color)], (lo, hi))
    note = (f"Band: mean +/- 1.96 x Newey-West standard error (lag {data.horizon - 1}, "
            "overlapping horizons).")
    return _section(title, chart, note)


def _decay_section(data: ReportData) -> str:
    title = "IC decay by horizon"
    if not data.ic_by_horizon:
        return _section(title, _empty("No IC by horizon was computed."))
    horizons = sorted(data.ic_by_horizon)
    means = _array([data.ic_by_horizon[h][0] for h in horizons])
    chart = _bar_chart(title, [f"{h}d" for h in horizons], means)
    rows = "".join(
        f"<tr><td>{h}</td><td>{_num(data.ic_by_horizon[h][0])}</td>"
        f"<td>{_num(data.ic_by_horizon[h][1], 2)}</td></tr>" for h in horizons)
    table = ('<table class="decay"><thead><tr><th>horizon (sessions)</th><th>mean IC</th>'
             f"<th>Newey-West t</th></tr></thead><tbody>{rows}</tbody></table>")
    return _section(title, chart + table)


def _live_section(data: ReportData) -> str:
    title = "Realised against backtested returns since going live"
    if len(data.realised) == 0:
        return _section(title, _empty("Not live yet: there are no realised returns to "
                                      "compare with the backtest."))
    lines = [("realised", cum_returns(_array(data.realised)), LIVE_COLOR)]
    if len(data.backtested):
        lines.append(("backtested", cum_returns(_array(data.backtested)), BT_COLOR))
    return _section(title, _line_chart(title, data.live_dates, lines),
                    "Cumulative compounded returns; a missing day counts as 0.")


def _turnover_section(data: ReportData) -> str:
    title = "Turnover"
    if len(data.turnover) == 0:
        return _section(title, _empty("No turnover recorded."))
    chart = _line_chart(title, data.dates, [("one-way turnover", _array(data.turnover),
                                             TURN_COLOR)])
    return _section(title, chart)


def _history_section(data: ReportData) -> str:
    title = "State history"
    if not data.state_history:
        return _section(title, _empty("No state transitions recorded."))
    rows = "".join(
        f"<tr><td>{_esc(at.isoformat())}</td><td>{_esc(old if old is not None else '-')}</td>"
        f"<td>{_esc(new)}</td><td>{_esc(actor)}</td><td>{_esc(reason)}</td></tr>"
        for at, old, new, actor, reason in data.state_history)
    table = ('<table class="history"><thead><tr><th>when</th><th>from</th><th>to</th>'
             f"<th>by</th><th>reason</th></tr></thead><tbody>{rows}</tbody></table>")
    return _section(title, table)


def _summary(data: ReportData) -> str:
    """Headline cards over the whole IC history (NW t with lag horizon - 1)."""
    ic, rank = _array(data.ic), _array(data.rank_ic)
    known = ic[~np.isnan(ic)]
    cards = [
        ("sessions with an IC", str(known.size)),
        ("mean IC", _num(float(known.mean()) if known.size else None)),
        ("mean rank IC", _num(float(np.nanmean(rank)) if np.isfinite(rank).any() else None)),
        (f"Newey-West t (lag {data.horizon - 1})",
         _num(newey_west_tstat(known, data.horizon - 1), 2)),
        ("mean turnover", _num(float(np.nanmean(_array(data.turnover)))
                               if np.isfinite(_array(data.turnover)).any() else None)),
    ]
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="k">{_esc(k)}</div><div class="v">{_esc(v)}</div></div>'
        for k, v in cards) + "</div>"


CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;
background:#f6f8fa;color:#1f2328}
main{max-width:820px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:15px;margin:0 0 8px;color:#57606a}
.sub{color:#57606a;font-size:13px;margin-bottom:18px}
section,.cards{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:14px;
margin-bottom:16px}
.cards{display:flex;gap:18px;flex-wrap:wrap}
.card .k{font-size:12px;color:#57606a}.card .v{font-size:18px;font-weight:600}
svg.chart{width:100%;height:auto;display:block}
.grid{stroke:#eaeef2}.zero{stroke:#8c959f;stroke-dasharray:3 3}
.ylab{font-size:11px;fill:#57606a;text-anchor:end}
.xlab{font-size:11px;fill:#57606a;text-anchor:middle}.legend{font-size:12px;fill:#1f2328}
table{border-collapse:collapse;font-size:12px;width:100%;margin-top:8px}
th,td{border-bottom:1px solid #eaeef2;padding:4px 6px;text-align:left}
.note,.empty{color:#57606a;font-size:12px}
"""


def render_report(data: ReportData) -> str:
    """The strategy's page: headline numbers, rolling IC and rank IC with Newey-West bands,
    IC decay by horizon, realised against backtested returns, turnover, state history."""
    span = (f"{data.dates[0].isoformat()} to {data.dates[-1].isoformat()}" if data.dates
            else "no sessions yet")
    header = (f"<h1>{_esc(data.strategy)}</h1><div class=\"sub\">version {data.version} - "
              f"state {_esc(data.state)} - horizon {data.horizon} sessions - {_esc(span)}</div>")
    body = "".join([
        header,
        _summary(data),
        _rolling_section(data, "IC", data.ic, IC_COLOR),
        _rolling_section(data, "rank IC", data.rank_ic, RANK_COLOR),
        _decay_section(data),
        _live_section(data),
        _turnover_section(data),
        _history_section(data),
    ])
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{_esc(data.strategy)} - MTS1B research report</title>"
            f"<style>{CSS}</style></head><body><main>{body}</main></body></html>\n")
