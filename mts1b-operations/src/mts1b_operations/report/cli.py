"""``mts mts1b-operations report daily``: the day's page per fund, from the services' streams."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Annotated, Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer
from mts1b_foundation import FieldError

__all__ = ["ReportInputError", "register"]


class ReportInputError(FieldError):
    """A report option is invalid; names the option and the value."""

    code: ClassVar[str] = "OPERATIONS.REPORT_INPUT"


report_app = typer.Typer(help="Reports drawn from what the services published.",
                         no_args_is_help=True, add_completion=False)


def _date(text: str | None) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ReportInputError("--date", text, "not a date (YYYY-MM-DD)") from None


def _zone(text: str) -> str:
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ReportInputError("--tz", text, "not an IANA time zone") from None
    return text


@report_app.command("daily")
def daily(
    date: Annotated[str | None, typer.Option(
        help="the day, YYYY-MM-DD (default: the last session a NAV was struck for)")] = None,
    out: Annotated[Path | None, typer.Option(
        help="the HTML file to write (default: daily-<date>.html here)")] = None,
    fund: Annotated[str | None, typer.Option(help="only this fund")] = None,
    tz: Annotated[str, typer.Option(
        help="the time zone whose calendar day the events are counted in")
                  ] = "America/New_York",
    summary: Annotated[bool, typer.Option(
        help="also print the short text summary (what a chat message carries)")] = False,
    announce: Annotated[bool, typer.Option(
        help="also publish the summary as an info alert DailyReport (labels: alertname, "
             "service, date), which the alerts router delivers to the receivers whose routes "
             "take it (Telegram, e-mail, webhook)")] = False,
    namespace: Annotated[str | None, typer.Option(envvar="MTS_NATS_NAMESPACE",
                                                  help="NATS namespace prefix")] = None,
    timeout: Annotated[float, typer.Option(min=1, help="seconds to read each stream")] = 60.0,
) -> None:
    """Write one self-contained HTML page for a day: per fund the NAV and PnL the treasury
    struck, PnL by strategy, the risk envelope's usage, fills and costs, gate denials and
    alerts, and the audit checkpoint's status."""
    day = _date(date)
    zone = _zone(tz)
    from mts1b_operations.report.daily import day_bounds, fund_days
    from mts1b_operations.report.page import render_page, render_summary

    inputs = asyncio.run(_gather(namespace, day, zone, timeout))
    if day is None:
        sessions = [n.session for n in inputs.navs if fund is None or n.fund_id == fund]
        if not sessions:
            raise ReportInputError("--date", None, "no NAV struck yet to default to; give "
                                   "--date")
        day = dt.date.fromisoformat(max(sessions))
    days = fund_days(inputs, day, tz=zone, fund=fund)
    if fund is not None and all(d.nav is None for d in days) and fund not in inputs.funds:
        raise ReportInputError("--fund", fund, "no NAV or configuration of this fund "
                               "was published")
    target = out or Path(f"daily-{day.isoformat()}.html")
    target.write_text(render_page(days, day, checkpoint=inputs.checkpoint,
                                  missing=inputs.missing, unreadable=inputs.unreadable),
                      encoding="utf-8")
    typer.echo(f"wrote {target} ({len(days)} funds, {day.isoformat()}, "
               f"{day_bounds(day, zone)[0]:%Y-%m-%d %H:%M} UTC onwards)")
    text = render_summary(days, day, checkpoint=inputs.checkpoint)
    if summary:
        typer.echo(text)
    if announce:
        asyncio.run(_announce(namespace, day, text))
        typer.echo(f"announced: alert DailyReport for {day.isoformat()}")


async def _connect(namespace: str | None) -> Any:
    """The bus, in ``namespace`` when one is given (else as the environment configures it)."""
    from mts1b_platform.bus import Bus

    overrides: dict[str, Any] = {"name": "mts1b-operations-report", "connect_timeout": 5}
    if namespace:
        overrides["namespace"] = namespace
    return await Bus.connect(**overrides)


async def _gather(namespace: str | None, day: dt.date | None, zone: str,
                  timeout: float) -> Any:

    from mts1b_operations.report.daily import day_bounds
    from mts1b_operations.report.gather import gather

    until = (day_bounds(day, zone)[1] if day is not None
             else dt.datetime.max.replace(tzinfo=dt.UTC))
    bus = await _connect(namespace)
    try:
        return await gather(bus, until=until, timeout=timeout)
    finally:
        await bus.drain()


async def _announce(namespace: str | None, day: dt.date, text: str) -> None:
    """Publish the summary as an info :class:`~mts1b_foundation.Alert` named DailyReport:
    dispatch has one home (the alerts router and its outbox), so the report hands it there
    rather than calling Telegram itself."""
    import uuid

    from mts1b_foundation import Alert, Severity
    from mts1b_platform.alerts import ALERT_SUBJECT

    alert = Alert(alert_id=f"alr-{uuid.uuid4().hex[:20]}", severity=Severity.INFO,
                  source="mts1b-operations", text=text[:4000],
                  labels={"alertname": "DailyReport", "service": "operations-report",
                          "date": day.isoformat()},
                  ts=dt.datetime.now(dt.UTC))
    bus = await _connect(namespace)
    try:
        await bus.declare_streams(["operations"])
        await bus.publish_acked(ALERT_SUBJECT, alert, msg_id=alert.alert_id)
    finally:
        await bus.drain()


def register(app: typer.Typer, serve: typer.Typer) -> None:
    """Add ``report daily`` to ``mts mts1b-operations`` (no service of its own)."""
    app.add_typer(report_app, name="report")

