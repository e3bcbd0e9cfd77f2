"""The daily report as one self-contained HTML page, and its short text summary.

Why self-contained: the page is mailed and archived with the day's records, so it loads
nothing (no script, no stylesheet, no font); its charts are inline SVG. Every text that came
from an event (fund names, alert texts, strategy ids) is escaped: people and services typed
it, and the page must show it, never interpret it. :func:`render_page` is pure: the same
figures give the same bytes.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Mapping, Sequence
from decimal import Decimal

from mts1b_operations.report.daily import FundDay

__all__ = ["render_page", "render_summary"]

_W, _H, _PAD = 640, 180, 34

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:980px;color:#222}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em}h3{font-size:1.05em}
table{border-collapse:collapse;margin:.4em 0 1em}td,th{padding:.2em .7em;text-align:right}
th{background:#f2f2f2}td.l,th.l{text-align:left}.warn{color:#b35900}.bad{color:#b00020}
.ok{color:#1a7f37}.muted{color:#777}.kpi td{font-size:1.1em}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _money(value: Decimal) -> str:
    return f"{value:,.2f}"


def _pct(value: float | Decimal | None) -> str:
    return "-" if value is None else f"{float(value) * 100:.2f}%"


def _nav_chart(history: Sequence[tuple[str, Decimal]]) -> str:
    """The NAV over the sessions before the date, as an SVG line."""
    if len(history) < 2:
        return '<p class="muted">Fewer than two NAVs struck: no chart.</p>'
    values = [float(v) for _, v in history]
    lo, hi = min(values), max(values)
    span = (hi - lo) or abs(hi) or 1.0
    step = (_W - 2 * _PAD) / (len(values) - 1)

    def y(v: float) -> float:
        return _H - _PAD - (v - lo) / span * (_H - 2 * _PAD)

    points = " ".join(f"{_PAD + i * step:.1f},{y(v):.1f}" for i, v in enumerate(values))
    first, last = history[0][0], history[-1][0]
    return (f'<svg width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" role="img" '
            f'aria-label="NAV from {_e(first)} to {_e(last)}">'
            f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - _PAD}" y2="{_H - _PAD}" '
            'stroke="#999"/>'
            f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.6" points="{points}"/>'
            f'<text x="{_PAD}" y="{_H - 10}" font-size="11">{_e(first)}</text>'
            f'<text x="{_W - _PAD}" y="{_H - 10}" font-size="11" text-anchor="end">'
            f'{_e(last)}</text>'
            f'<text x="4" y="{_PAD - 8}" font-size="11">{_money(Decimal(str(hi)))}</text>'
            f'<text x="4" y="{_H - _PAD + 14}" font-size="11">{_money(Decimal(str(lo)))}'
            '</text></svg>')


def _attribution_chart(pnl: Mapping[str, Decimal]) -> str:
    """Each sleeve's PnL of the day as a horizontal bar (green gain, red loss)."""
    if not pnl:
        return '<p class="muted">No PnL attributed.</p>'
    scale = max(abs(v) for v in pnl.values()) or Decimal(1)
    row, half = 22, (_W - 220) / 2
    parts = []
    for i, (name, value) in enumerate(pnl.items()):
        width = float(abs(value) / scale) * half
        x = 200 + half - (width if value < 0 else 0)
        color = "#1a7f37" if value >= 0 else "#b00020"
        parts.append(f'<text x="0" y="{i * row + 15}" font-size="12">{_e(name)}</text>'
                     f'<rect x="{x:.1f}" y="{i * row + 4}" width="{width:.1f}" height="14" '
                     f'fill="{color}"/>'
                     f'<text x="{_W}" y="{i * row + 15}" font-size="12" text-anchor="end">'
                     f'{_money(value)}</text>')
    height = len(pnl) * row + 4
    return (f'<svg width="{_W}" height="{height}" viewBox="0 0 {_W} {height}" role="img" '
            f'aria-label="PnL by strategy">{"".join(parts)}</svg>')


def _limits_table(day: FundDay) -> str:
    if not day.limits:
        return '<p class="muted">No fund configuration published: no envelope to measure.</p>'
    rows = []
    for use in day.limits:
        share = use.share
        tone = ("muted" if share is None else "bad" if share > 1 else
                "warn" if share >= 0.8 else "ok")
        limit = "unlimited" if use.limit is None else f"{use.limit:,}"
        rows.append(f'<tr><td class="l">{_e(use.name)}</td><td>{use.used:,.6g}</td>'
                    f'<td>{_e(limit)}</td><td class="{tone}">{_pct(share)}</td></tr>')
    note = ""
    if day.unmarked:
        note = (f'<p class="warn">Not valued (no close stored before the day ended): '
                f'{_e(", ".join(day.unmarked))}.</p>')
    return ('<table><tr><th class="l">limit</th><th>used</th><th>limit</th><th>usage</th></tr>'
            + "".join(rows) + "</table>" + note)


def _fills_table(day: FundDay, top: int = 20) -> str:
    if not day.fills:
        return '<p class="muted">No fills.</p>'
    largest = sorted(day.fills, key=lambda f: (-(f.quantity * f.price), f.trade_id))[:top]
    rows = "".join(
        f'<tr><td class="l">{_e(f.ts.strftime("%H:%M:%S"))}</td><td class="l">{_e(f.symbol)}'
        f'</td><td class="l">{_e(f.side.value)}</td><td>{f.quantity:,}</td>'
        f'<td>{f.price:,}</td><td>{_money(f.quantity * f.price)}</td>'
        f'<td>{_money(f.commission)}</td></tr>' for f in largest)
    return (f'<p>{len(day.fills)} fills: bought {_money(day.bought)}, sold {_money(day.sold)}, '
            f'commissions {_money(day.commissions)}.'
            + (f' The {top} largest:' if len(day.fills) > top else "") + '</p>'
            '<table><tr><th class="l">time (UTC)</th><th class="l">symbol</th>'
            '<th class="l">side</th><th>quantity</th><th>price</th><th>notional</th>'
            f'<th>commission</th></tr>{rows}</table>')


def _denials_table(day: FundDay) -> str:
    if not day.denials:
        return '<p class="muted">No order denied by a gate.</p>'
    rows = "".join(f'<tr><td class="l">{_e(code)}</td><td>{count}</td></tr>'
                   for code, count in day.denials)
    return f'<table><tr><th class="l">code</th><th>orders</th></tr>{rows}</table>'


def _alerts_table(day: FundDay) -> str:
    if not day.alerts:
        return '<p class="muted">No alert.</p>'
    rows = "".join(
        f'<tr><td class="l">{_e(a.ts.strftime("%H:%M:%S"))}</td>'
        f'<td class="l">{_e(a.severity.value)}</td><td class="l">{_e(a.status.value)}</td>'
        f'<td class="l">{_e(a.alertname)}</td><td class="l">{_e(a.source)}</td>'
        f'<td class="l">{_e(a.text)}</td></tr>' for a in day.alerts)
    return ('<table><tr><th class="l">time (UTC)</th><th class="l">severity</th>'
            '<th class="l">status</th><th class="l">alert</th><th class="l">source</th>'
            f'<th class="l">text</th></tr>{rows}</table>')


def _fund_section(day: FundDay) -> str:
    nav = day.nav
    if nav is None:
        head = '<p class="warn">No NAV struck for this date.</p>'
        attribution = ""
    else:
        head = ('<table class="kpi"><tr><th>NAV</th><th>PnL</th><th>return</th><th>flows</th>'
                '<th>fees</th><th>drawdown</th><th>positions</th></tr>'
                f'<tr><td>{_money(nav.nav)}</td><td>{_money(nav.pnl)}</td>'
                f'<td>{_pct(day.return_pct)}</td><td>{_money(nav.flows)}</td>'
                f'<td>{_money(nav.fees)}</td><td>{_pct(day.drawdown)}</td>'
                f'<td>{day.positions}</td></tr></table>')
        pnl = dict(sorted(nav.pnl_by_strategy.items()))
        if nav.unattributed:
            pnl["(unattributed)"] = nav.unattributed
        attribution = "<h3>PnL by strategy</h3>" + _attribution_chart(pnl)
    return (f'<h2>{_e(day.name)} <span class="muted">({_e(day.fund_id)})</span></h2>{head}'
            f'<h3>NAV</h3>{_nav_chart(day.history)}{attribution}'
            f'<h3>Risk envelope</h3>{_limits_table(day)}'
            f'<h3>Fills and costs</h3>{_fills_table(day)}'
            f'<h3>Gate denials</h3>{_denials_table(day)}'
            f'<h3>Alerts</h3>{_alerts_table(day)}')


def _checkpoint_text(checkpoint: Mapping[str, object] | None) -> str:
    if checkpoint is None:
        return "no audit checkpoint published"
    fields = [f"{k} {checkpoint[k]}" for k in ("size", "tree_size", "entries", "ts", "issued_at")
              if k in checkpoint]
    return "last audit checkpoint: " + (", ".join(fields) if fields else "published")


def render_page(days: Sequence[FundDay], date: dt.date, *,
                checkpoint: Mapping[str, object] | None, missing: Sequence[str] = (),
                unreadable: int = 0) -> str:
    """The page for ``date``: one section per fund, then the audit and data notes."""
    notes = [_checkpoint_text(checkpoint).capitalize() + "."]
    if missing:
        notes.append("Streams not found in this namespace (their service never ran here): "
                     + ", ".join(sorted(missing)) + ".")
    if unreadable:
        notes.append(f"{unreadable} stored messages did not decode and were left out.")
    body = "".join(_fund_section(d) for d in days) or '<p class="warn">No fund found.</p>'
    footer = "".join(f"<p>{_e(n)}</p>" for n in notes)
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>MTS1B daily report {_e(date.isoformat())}</title>"
            f"<style>{_STYLE}</style></head><body>"
            f"<h1>Daily report {_e(date.isoformat())}</h1>{body}"
            f"<h2>Audit and data</h2>{footer}</body></html>\n")


def render_summary(days: Sequence[FundDay], date: dt.date, *,
                   checkpoint: Mapping[str, object] | None) -> str:
    """A few plain lines per fund for a chat message (well under Telegram's 4,096 chars for
    a handful of funds; the dispatcher splits longer ones)."""
    lines = [f"MTS1B daily report {date.isoformat()}"]
    for d in days:
        if d.nav is None:
            lines.append(f"{d.name}: no NAV struck")
            continue
        lines.append(f"{d.name}: NAV {_money(d.nav.nav)} ({_pct(d.return_pct)}), "
                     f"PnL {_money(d.nav.pnl)}, drawdown {_pct(d.drawdown)}")
        breached = [u.name for u in d.limits if (u.share or 0) > 1]
        lines.append(f"  fills {len(d.fills)}, commissions {_money(d.commissions)}, "
                     f"denials {sum(c for _, c in d.denials)}, alerts {len(d.alerts)}"
                     + (f", over limit: {', '.join(breached)}" if breached else ""))
    lines.append(_checkpoint_text(checkpoint))
    return "\n".join(lines)
