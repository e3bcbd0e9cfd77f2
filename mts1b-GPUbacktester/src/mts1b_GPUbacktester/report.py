"""The tearsheet: one self-contained HTML file (inline SVG and CSS, no script, no network).

Panels: headline metric cards; equity vs benchmark; drawdown; monthly returns heatmap; rolling
Sharpe; exposure; turnover; cost breakdown; the run's settings (its
:class:`~mts1b_GPUbacktester.spec.RunSpec`, with the calendar and periods per year the numbers
are annualised with). Every number comes from the result (and so from
:mod:`mts1b_quantkit.metrics`); this module only draws. The rolling Sharpe covers half a year
of the panel's rows (126 for 252 periods a year, 182 for a 365-day crypto calendar) and is
annualised with the run's periods per year.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from mts1b_quantkit import metrics as qm

if TYPE_CHECKING:
    from mts1b_GPUbacktester.result import BacktestResult

__all__ = ["rolling_sharpe", "write_tearsheet"]

W, H = 1040, 260
PAD_L, PAD_R, PAD_T, PAD_B = 64, 16, 30, 28
COLORS = {"strategy": "#1f6feb", "benchmark": "#8b949e", "dd": "#d1242f", "gross": "#1f6feb",
          "net": "#8250df", "long": "#1a7f37", "short": "#d1242f", "turnover": "#bf8700",
          "sharpe": "#1f6feb"}
MAX_POINTS = 1200


def rolling_sharpe(returns: pd.Series, window: int = 126, *,
                   periods_per_year: float = 252) -> pd.Series:
    """Sharpe ratio of each trailing ``window``-row slice (NaN until the window is full),
    annualised with ``periods_per_year``, computed by :func:`mts1b_quantkit.metrics.sharpe` on
    all slices at once."""
    r = returns.to_numpy(dtype=np.float64)
    out = np.full(r.shape, np.nan)
    if r.size >= window > 1:
        slices = np.lib.stride_tricks.sliding_window_view(r, window)  # (n, window)
        out[window - 1:] = np.asarray(qm.sharpe(slices.T, periods_per_year=periods_per_year),
                                      dtype=np.float64)
    return pd.Series(out, index=returns.index, name="rolling_sharpe")


def monthly_returns(returns: pd.Series) -> pd.DataFrame:
    """Years x months table of compounded monthly returns
    (:func:`mts1b_quantkit.metrics.cum_returns_final` per month)."""
    groups = returns.groupby([returns.index.year, returns.index.month])
    values = {key: float(qm.cum_returns_final(g.to_numpy())) for key, g in groups}
    years = sorted({y for y, _ in values})
    table = pd.DataFrame(np.nan, index=years, columns=range(1, 13))
    for (y, m), v in values.items():
        table.loc[y, m] = v
    yearly = {y: float(qm.cum_returns_final(g.to_numpy()))
              for y, g in returns.groupby(returns.index.year)}
    table["year"] = pd.Series(yearly)
    return table


# -- SVG primitives ---------------------------------------------------------------------------
def _esc(x: object) -> str:
    return html.escape(str(x), quote=True)


def _thin(x: np.ndarray, *ys: np.ndarray) -> tuple[np.ndarray, ...]:
    if x.size <= MAX_POINTS:
        return (x, *ys)
    idx = np.unique(np.linspace(0, x.size - 1, MAX_POINTS).astype(int))
    return (x[idx], *(y[idx] for y in ys))


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def _date_ticks(index: pd.DatetimeIndex) -> list[tuple[float, str]]:
    if len(index) < 2:
        return []
    span_days = (index[-1] - index[0]).days
    if span_days > 3 * 365:
        marks = pd.date_range(f"{index[0].year + 1}-01-01", index[-1], freq="YS")
        fmt = "%Y"
    elif span_days > 180:
        marks = pd.date_range(index[0].normalize(), index[-1], freq="QS")
        fmt = "%b %Y"
    else:
        marks = pd.date_range(index[0].normalize(), index[-1], freq="MS")
        fmt = "%b %Y"
    pos = index.searchsorted(marks)
    return [(float(p), m.strftime(fmt)) for p, m in zip(pos, marks, strict=True)
            if 0 <= p < len(index)]


def _line_chart(index: pd.DatetimeIndex, series: Sequence[tuple[str, np.ndarray, str]], *,
                fmt: str = "{:.2f}", fill_zero: str | None = None, zero_line: bool = False,
                height: int = H) -> str:
    """Lines over a date axis. ``fill_zero``: a colour to fill between the first line and 0."""
    n = len(index)
    x = np.arange(n, dtype=np.float64)
    finite = [v[np.isfinite(v)] for _, v, _ in series]
    finite = [f for f in finite if f.size]
    if not finite or n < 2:
        return f'<svg viewBox="0 0 {W} {height}" class="chart"><text x="20" y="40">' \
               'not enough data</text></svg>'
    lo = min(float(f.min()) for f in finite)
    hi = max(float(f.max()) for f in finite)
    if zero_line or fill_zero:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi == lo:
        hi, lo = hi + 1e-9 + abs(hi) * 0.01, lo - 1e-9 - abs(lo) * 0.01
    pad = (hi - lo) * 0.05
    lo, hi = lo - pad, hi + pad
    iw, ih = W - PAD_L - PAD_R, height - PAD_T - PAD_B

    def sx(v: float) -> float:
        return PAD_L + v / (n - 1) * iw

    def sy(v: float) -> float:
        return PAD_T + (hi - v) / (hi - lo) * ih

    parts = [f'<svg viewBox="0 0 {W} {height}" class="chart" role="img">']
    for tick in _nice_ticks(lo, hi):
        y = sy(tick)
        parts.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{y:.1f}" y2="{y:.1f}" '
                     'class="grid"/>')
        parts.append(f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" class="ylab">'
                     f'{_esc(fmt.format(tick))}</text>')
    for pos, label in _date_ticks(index):
        xx = sx(pos)
        parts.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{PAD_T}" y2="{height - PAD_B}" '
                     'class="grid"/>')
        parts.append(f'<text x="{xx:.1f}" y="{height - 8}" class="xlab">{_esc(label)}</text>')
    if zero_line and lo < 0 < hi:
        parts.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{sy(0):.1f}" '
                     f'y2="{sy(0):.1f}" class="zero"/>')
    for k, (name, values, color) in enumerate(series):
        xs, ys = _thin(x, values)
        ok = np.isfinite(ys)
        if not ok.any():
            continue
        pts = " ".join(f"{sx(a):.1f},{sy(b):.1f}" for a, b in zip(xs[ok], ys[ok], strict=True))
        if fill_zero and k == 0:
            first, last = xs[ok][0], xs[ok][-1]
            parts.append(f'<polygon points="{sx(first):.1f},{sy(0):.1f} {pts} '
                         f'{sx(last):.1f},{sy(0):.1f}" fill="{fill_zero}" '
                         'fill-opacity="0.25" stroke="none"/>')
        width = 2 if k == 0 else 1.5
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{color}" '
                     f'stroke-width="{width}" stroke-linejoin="round"><title>{_esc(name)}'
                     '</title></polyline>')
    lx = PAD_L
    for name, _, color in series if len(series) > 1 else ():  # the title names a lone line
        parts.append(f'<rect x="{lx}" y="9" width="14" height="4" fill="{color}"/>')
        parts.append(f'<text x="{lx + 18}" y="15" class="legend">{_esc(name)}</text>')
        lx += 30 + 7 * len(name)
    parts.append("</svg>")
    return "".join(parts)


def _heat_color(v: float, scale: float) -> str:
    if not math.isfinite(v):
        return "#f6f8fa"
    t = max(-1.0, min(1.0, v / scale)) if scale > 0 else 0.0
    if t >= 0:  # white -> green
        r, g, b = (int(255 - t * (255 - c)) for c in (26, 127, 55))
    else:       # white -> red
        r, g, b = (int(255 + t * (255 - c)) for c in (209, 36, 47))
    return f"rgb({r},{g},{b})"


def _heatmap(table: pd.DataFrame) -> str:
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
              "Dec", "Year"]
    vals = table.drop(columns="year").to_numpy(dtype=np.float64)
    scale = float(np.nanpercentile(np.abs(vals), 95)) if np.isfinite(vals).any() else 0.0
    year_vals = table["year"].to_numpy(dtype=np.float64)
    year_scale = float(np.nanmax(np.abs(year_vals))) if np.isfinite(year_vals).any() else 0.0
    head = "".join(f"<th>{m}</th>" for m in months)
    rows = []
    for year, row in table.iterrows():
        cells = []
        for m, v in enumerate(row.to_numpy(dtype=np.float64)):
            s = year_scale if m == 12 else scale
            text = f"{v:+.1%}" if math.isfinite(v) else ""
            cls = ' class="yr"' if m == 12 else ""
            cells.append(f'<td{cls} style="background:{_heat_color(v, s)}">{text}</td>')
        rows.append(f"<tr><th>{year}</th>{''.join(cells)}</tr>")
    return (f'<table class="heat"><thead><tr><th></th>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def _tone(v: Any, kind: str) -> str:
    """CSS class of a signed headline number (returns and ratios only)."""
    if kind not in ("pct", "num") or not isinstance(v, float) or not math.isfinite(v):
        return ""
    return "pos" if v > 0 else ("neg" if v < 0 else "")


def _fmt(v: Any, kind: str) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if kind in ("pct", "plain%"):
        return f"{v:.2%}"
    if kind == "money":
        return f"{v:,.0f}"
    return f"{v:.2f}"


CSS = """
body{font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Helvetica,Arial,sans-serif;
margin:0;background:#f6f8fa;color:#1f2328}
main{max-width:1080px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:15px;margin:0 0 8px;color:#57606a;
text-transform:uppercase;letter-spacing:.04em}
.sub{color:#57606a;font-size:13px;margin-bottom:18px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px;
margin-bottom:18px}
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:10px 12px}
.card .k{font-size:12px;color:#57606a}.card .v{font-size:20px;font-weight:600;margin-top:2px}
.pos{color:#1a7f37}.neg{color:#d1242f}
section{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:14px 16px;
margin-bottom:16px}
svg.chart{width:100%;height:auto;display:block}
.grid{stroke:#eaeef2;stroke-width:1}.zero{stroke:#8c959f;stroke-width:1;stroke-dasharray:4 3}
.ylab{font-size:11px;fill:#57606a;text-anchor:end}.xlab{font-size:11px;fill:#57606a;
text-anchor:middle}.legend{font-size:12px;fill:#1f2328}
table{border-collapse:collapse;font-size:12px;width:100%}
table.heat td,table.heat th{padding:4px 6px;text-align:right;border:1px solid #fff}
table.heat td.yr{font-weight:600}
table.kv td{padding:3px 8px;border-bottom:1px solid #eaeef2}table.kv td:first-child{
color:#57606a;width:40%}
.two{display:grid;grid-template-columns:1fr 1fr;gap:16px}
footer{color:#8c959f;font-size:12px;text-align:center;margin:8px 0 24px}
"""


def _plain_text(value: Any) -> str:
    """A recorded value as table text (``{}`` and ``None`` as a dash)."""
    if value is None or value == {}:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(map(str, value[:20])) + (f", ... ({len(value)})" if len(value) > 20
                                                  else "")
    return str(value)


def _kv_table(items: Sequence[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>" for k, v in items)
    return f'<table class="kv">{rows}</table>'


def write_tearsheet(result: BacktestResult, path: str | Path, *,
                    title: str | None = None) -> Path:
    """Render ``result`` to one self-contained HTML file at ``path`` (parents created)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_tearsheet(result, title=title), encoding="utf-8")
    return out


def render_tearsheet(result: BacktestResult, *, title: str | None = None) -> str:
    """The tearsheet's HTML text."""
    m = result.metrics
    idx = result.equity.index
    cfg = result.config
    name = title or (f"{cfg.get('factor') or 'weights'} {cfg.get('params') or ''}").strip()
    rets = result.returns
    ppy = result.periods_per_year
    window = max(2, round(ppy / 2))  # half a year of the panel's rows
    eq = result.equity.to_numpy() / result.initial_nav
    series = [("strategy", eq, COLORS["strategy"])]
    bench = result.benchmark_returns
    if bench is not None:
        bench_curve = 1.0 + np.asarray(qm.cum_returns(bench.to_numpy()))
        series.append((f"benchmark: {result.benchmark_name}", bench_curve, COLORS["benchmark"]))
    dd = result.drawdown().to_numpy()
    rs = rolling_sharpe(rets, window, periods_per_year=ppy).to_numpy()
    expo = result.exposure
    turn = result.turnover_series
    turn_avg = turn.rolling(21, min_periods=1).mean().to_numpy()
    cards = [
        ("Total return", m["total_return"], "pct"), ("CAGR", m["cagr"], "pct"),
        ("Sharpe", m["sharpe"], "num"), ("Sortino", m["sortino"], "num"),
        ("Max drawdown", m["max_drawdown"], "pct"), ("Volatility", m["volatility"], "plain%"),
        ("Calmar", m["calmar"], "num"), ("Turnover / day", m["turnover"], "plain%"),
        ("Hit rate", m["hit_rate"], "plain%"), ("Final NAV", m["final_nav"], "money"),
    ]
    if "beta" in m:
        cards.append(("Beta", m["beta"], "num"))
        cards.append(("Info ratio", m["information_ratio"], "num"))
    card_html = "".join(
        f'<div class="card"><div class="k">{_esc(k)}</div>'
        f'<div class="v {_tone(v, kind)}">{_fmt(v, kind)}</div></div>' for k, v, kind in cards)
    costs = result.cost_breakdown
    cost_items = [(k.replace("_", " "), f"{v:,.2f}") for k, v in costs.items()]
    cost_items.append(("costs / initial NAV", f"{costs['total'] / result.initial_nav:.3%}"))
    cost_items.append(("number of fills", f"{len(result.trades):,}"))
    spec = result.spec
    run_items: list[tuple[str, str]] = [
        (k, _plain_text(cfg.get(k))) for k in ("factor", "params", "universe", "start", "end")
        if k in cfg]
    run_items += [("calendar", result.calendar or "not stated"),
                  ("periods per year", f"{ppy:g} ({result.periods_per_year_source})"),
                  ("backend", f"{result.backend['backend']}: {result.backend['reason']}"),
                  ("assets", f"{len(result.symbols):,}")]
    settings = dict(spec.describe())
    shown = set(spec.settings()) | {"factor", "params", "universe", "start", "end"}
    extra_items = [(str(k), _plain_text(v)) for k, v in cfg.items() if k not in shown]
    stats_items = [(k.replace("_", " "), f"{v:.4g}") for k, v in m.items()
                   if isinstance(v, float)]
    body = f"""
<h1>{_esc(name)}</h1>
<div class="sub">{idx[0].date()} &ndash; {idx[-1].date()} &middot; {len(idx):,} rows
({_esc(result.calendar or "calendar not stated")}, {ppy:g} a year) &middot;
{len(result.symbols):,} assets &middot; fill {_esc(spec.fill)} &middot;
rebalance {_esc(settings["rebalance"])} &middot; trade on {_esc(spec.trade_on)}
{f"(band {spec.band:g})" if spec.band else ""} &middot;
commission {_esc(settings["commission"])}</div>
<div class="cards">{card_html}</div>
<section><h2>Equity (growth of 1) vs benchmark</h2>
{_line_chart(idx, series, fmt="{:.2f}")}</section>
<section><h2>Drawdown</h2>
{_line_chart(idx, [("drawdown", dd, COLORS["dd"])], fmt="{:.0%}", fill_zero=COLORS["dd"],
             height=200)}</section>
<section><h2>Monthly returns</h2>{_heatmap(monthly_returns(rets))}</section>
<section><h2>Rolling Sharpe ({window} days)</h2>
{_line_chart(idx, [("rolling Sharpe", rs, COLORS["sharpe"])], fmt="{:.1f}", zero_line=True,
             height=200)}</section>
<section><h2>Exposure (fraction of NAV)</h2>
{_line_chart(idx, [("gross", expo["gross"].to_numpy(), COLORS["gross"]),
                   ("net", expo["net"].to_numpy(), COLORS["net"]),
                   ("long", expo["long"].to_numpy(), COLORS["long"]),
                   ("short", expo["short"].to_numpy(), COLORS["short"])],
             fmt="{:.0%}", zero_line=True, height=220)}</section>
<section><h2>Turnover (one-way, 21-day average)</h2>
{_line_chart(idx, [("turnover", turn_avg, COLORS["turnover"])], fmt="{:.1%}",
             fill_zero=COLORS["turnover"], height=180)}</section>
<div class="two"><section><h2>Costs</h2>{_kv_table(cost_items)}</section>
<section><h2>Run</h2>{_kv_table(run_items + extra_items)}</section></div>
<section><h2>Settings</h2>{_kv_table(spec.describe())}</section>
<section><h2>All statistics</h2>{_kv_table(stats_items)}</section>
"""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{_esc(name)} - MTS1B tearsheet</title><style>{CSS}</style></head>"
            f"<body><main>{body}<footer>mts1b-GPUbacktester &middot; generated {stamp}"
            "</footer></main></body></html>")
