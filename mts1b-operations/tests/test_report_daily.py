"""The daily report: its figures from events (pure), and the command over real NATS JetStream.

The events are the models the treasury and the OMS publish, written into a fresh namespace
the way those services write them; the command reads them back as a user would run it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from mts1b_foundation import (
    Alert,
    Bar,
    Denial,
    Fill,
    FundConfig,
    FundNav,
    OrderEvent,
    OrderEventType,
    OrderStatus,
    Position,
    ReplyCode,
    RiskEnvelope,
    Severity,
    Side,
)
from mts1b_operations.report.daily import DayInputs, day_bounds, fund_days
from mts1b_operations.report.page import render_page, render_summary

DAY = dt.date(2016, 1, 6)
CLOSE = dt.datetime(2016, 1, 6, 21, tzinfo=dt.UTC)  # 16:00 in New York


def _nav(session: str, nav: str, previous: str, pnl_by: dict[str, str],
         hour: int = 21) -> FundNav:
    day = int(session[-2:])
    pnl = Decimal(nav) - Decimal(previous)
    by = {k: Decimal(v) for k, v in pnl_by.items()}
    return FundNav(fund_id="f1", session=session,
                   as_of=dt.datetime(2016, 1, day, hour, 5, tzinfo=dt.UTC), nav=Decimal(nav),
                   previous_nav=Decimal(previous), cash=Decimal(nav), positions_value=Decimal(0),
                   pnl=pnl, fees=Decimal("1.50"), pnl_by_strategy=by,
                   unattributed=pnl - sum(by.values(), Decimal(0)),
                   inputs_sha256="0" * 64, outputs_sha256="0" * 64)


def _fund() -> FundConfig:
    return FundConfig(fund_id="f1", name="Fund <one>", target_nav_usd=Decimal(100_000),
                      broker="paper", broker_account_id="a1",
                      risk=RiskEnvelope(max_position_pct_nav=Decimal("0.25"),
                                        max_gross_exposure=Decimal("1.5")))


def _fill(trade: str, order: str, side: Side, qty: str, price: str, ts: dt.datetime) -> Fill:
    return Fill(trade_id=trade, order_id=order, fund_id="f1", symbol="AAPL", side=side,
                quantity=Decimal(qty), price=Decimal(price), commission=Decimal("0.75"), ts=ts)


def _denied(order: str, ts: dt.datetime, code: ReplyCode) -> OrderEvent:
    return OrderEvent(event_id=f"e-{order}", order_id=order, fund_id="f1",
                      event_type=OrderEventType.DENIED, status=OrderStatus.DENIED, ts=ts,
                      denial=Denial(code=code, gate="g", message="no"))


def _position(sleeve: str, symbol: str, qty: str, ts: dt.datetime) -> Position:
    return Position(fund_id="f1", strategy_id=sleeve, symbol=symbol, quantity=Decimal(qty),
                    as_of=ts)


def _bar(symbol: str, close: str, ts: dt.datetime) -> Bar:
    px = Decimal(close)
    return Bar(symbol=symbol, ts=ts, open=px, high=px, low=px, close=px, volume=Decimal(1))


def _events() -> dict[str, list[object]]:
    t = dt.datetime(2016, 1, 6, 15, tzinfo=dt.UTC)
    yesterday = dt.datetime(2016, 1, 5, 15, tzinfo=dt.UTC)
    return {
        "mts.v1.treasury.funds.updated": [_fund()],
        "mts.v1.treasury.nav.struck": [
            _nav("2016-01-04", "100000", "100000", {}),
            _nav("2016-01-05", "104000", "100000", {"mom": "4000"}),
            _nav("2016-01-06", "102000", "104000", {"mom": "-1500", "val": "-400"}),
            _nav("2016-01-07", "99000", "102000", {"mom": "-3000"})],  # after the day
        "mts.v1.oms.fills.recorded": [
            _fill("t0", "o0", Side.BUY, "10", "100", yesterday),
            _fill("t1", "o1", Side.BUY, "100", "101.5", t),
            _fill("t2", "o1", Side.BUY, "50", "101.5", t),
            _fill("t3", "o2", Side.SELL, "20", "102", t)],
        "mts.v1.oms.orders.denied": [
            _denied("o3", t, ReplyCode.NOTIONAL_EXCEEDS_MAXIMUM),
            _denied("o4", t, ReplyCode.NOTIONAL_EXCEEDS_MAXIMUM),
            _denied("o5", t, ReplyCode.TRADING_HALTED),
            _denied("o6", yesterday, ReplyCode.TRADING_HALTED)],
        "mts.v1.oms.positions.updated": [
            _position("mom", "AAPL", "200", yesterday),
            _position("mom", "AAPL", "300", t),  # the sleeve's last position counts
            _position("val", "AAPL", "-50", t),
            _position("val", "MSFT", "10", t)],  # no close stored: unmarked
        "mts.v1.datalake.bars.AAPL": [_bar("AAPL", "100", CLOSE)],
        "mts.v1.operations.alerts.raised": [
            Alert(alert_id="a1", labels={"alertname": "FundHalted", "fund": "f1"},
                  severity=Severity.ERROR, source="oms", text="<script>x</script> fund halted",
                  ts=t),
            Alert(alert_id="a2", labels={"alertname": "FundHalted", "fund": "f2"},
                  severity=Severity.WARNING, source="oms", text="other fund", ts=t)],
    }


def _inputs() -> DayInputs:
    ev = _events()
    marks = {"AAPL": ("2016-01-06", Decimal(100))}
    return DayInputs(navs=ev["mts.v1.treasury.nav.struck"],  # type: ignore[arg-type]
                     funds={"f1": _fund()}, positions=ev["mts.v1.oms.positions.updated"],  # type: ignore[arg-type]
                     fills=ev["mts.v1.oms.fills.recorded"],  # type: ignore[arg-type]
                     denials=ev["mts.v1.oms.orders.denied"],  # type: ignore[arg-type]
                     alerts=ev["mts.v1.operations.alerts.raised"], marks=marks)  # type: ignore[arg-type]


def test_the_days_figures_come_from_the_events_exactly() -> None:
    [day] = fund_days(_inputs(), DAY)
    assert day.nav is not None and day.nav.nav == Decimal(102000)
    assert day.return_pct == pytest.approx(-2000 / 104000)
    assert [s for s, _ in day.history] == ["2016-01-04", "2016-01-05", "2016-01-06"]
    assert day.drawdown == Decimal(2000) / Decimal(104000)
    assert [f.trade_id for f in day.fills] == ["t1", "t2", "t3"]
    assert day.bought == Decimal("15225.0") and day.sold == Decimal("2040")
    assert day.commissions == Decimal("2.25")
    assert day.denials == (("NOTIONAL_EXCEEDS_MAXIMUM", 2), ("TRADING_HALTED", 1))
    assert [a.alert_id for a in day.alerts] == ["a1"]  # a2 names another fund
    assert day.unmarked == ("MSFT",) and day.positions == 2
    uses = {u.name: u for u in day.limits}
    # AAPL: 300 (mom) - 50 (val) = 250 shares at 100 = 25,000 of 102,000
    assert uses["max_position_pct_nav"].used == Decimal(25000) / Decimal(102000)
    assert uses["max_gross_exposure"].used == Decimal(25000) / Decimal(102000)
    assert uses["max_gross_exposure"].share == pytest.approx(25000 / 102000 / 1.5)
    assert uses["max_net_exposure"].limit is None  # unlimited
    assert uses["max_order_quantity"].used == Decimal(150)  # o1 filled in two parts
    assert uses["max_order_notional"].used == Decimal("15225.0")
    assert uses["max_order_notional"].limit == Decimal(10_000)  # 10 % of the target NAV
    assert uses["max_order_notional"].share == pytest.approx(1.5225)


def test_a_restated_session_counts_its_last_strike() -> None:
    inputs = _inputs()
    restated = _nav("2016-01-06", "102500", "104000", {"mom": "-1500"}, hour=22)
    got = fund_days(DayInputs(navs=[*inputs.navs, restated], funds=inputs.funds), DAY)
    assert got[0].nav == restated


def test_the_page_escapes_what_events_carry_and_flags_a_breached_limit() -> None:
    days = fund_days(_inputs(), DAY)
    page = render_page(days, DAY, checkpoint={"tree_size": 1000, "ts": "2016-01-06T21:00Z"},
                       missing=["operations"], unreadable=2)
    assert "<script>x</script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "Fund &lt;one&gt;" in page
    assert "102,000.00" in page and "-2,000.00" in page
    assert 'class="bad">152.25%' in page  # max_order_notional used 1.5225x
    assert "MSFT" in page and "2 stored messages did not decode" in page
    assert "tree_size 1000" in page and "operations" in page
    assert page.count("<svg") == 2  # the NAV chart and the attribution
    assert render_page(days, DAY, checkpoint=None) == render_page(days, DAY, checkpoint=None)
    text = render_summary(days, DAY, checkpoint=None)
    assert "NAV 102,000.00 (-1.92%)" in text and "over limit: max_order_notional" in text
    assert "no audit checkpoint published" in text and len(text) < 4096


def test_day_bounds_follow_the_time_zone() -> None:
    assert day_bounds(DAY, "America/New_York") == (
        dt.datetime(2016, 1, 6, 5, tzinfo=dt.UTC), dt.datetime(2016, 1, 7, 5, tzinfo=dt.UTC))


def _mts(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``mts ARGS`` through the console script's entry point: its exit status and output."""
    from mts1b_platform.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 0), out + err


@pytest.mark.integration
def test_the_command_reads_the_streams_over_nats(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """``mts mts1b-operations report daily`` as typed, on events published to real NATS
    JetStream in a fresh namespace (plus one message that does not decode)."""
    import asyncio

    pytest.importorskip("nats", reason="nats-py (the platform's bus extra) is not installed")
    from mts1b_platform.bus import Bus

    namespace = f"t{uuid.uuid4().hex[:10]}"

    async def publish() -> None:
        bus = await Bus.connect(namespace=namespace, name="test-daily-report")
        try:
            await bus.declare_streams(["treasury", "oms", "datalake", "operations"])
            for subject, items in _events().items():
                for item in items:
                    await bus.publish_acked(subject, item)  # type: ignore[arg-type]
            await bus.js.publish(bus.wire_subject("mts.v1.oms.fills.recorded"), b"\xff junk")
        finally:
            await bus.drain()

    async def drop() -> None:
        bus = await Bus.connect(namespace=namespace, name="test-daily-report")
        try:
            await bus.delete_streams()
        finally:
            await bus.drain()

    report = ("mts1b-operations", "report", "daily", "--namespace", namespace)
    # a namespace where no service ran: no date to default to; a given date names the streams
    code, text = _mts(capsys, *report)
    assert code == 1 and "no NAV struck yet" in text
    empty = tmp_path / "empty.html"
    assert _mts(capsys, *report, "--date", "2016-01-06", "--out", str(empty))[0] == 0
    assert "datalake, oms, operations, treasury" in empty.read_text()
    asyncio.run(publish())
    try:
        out = tmp_path / "day.html"
        code, text = _mts(capsys, *report, "--date", "2016-01-06", "--out", str(out),
                          "--summary")
        assert code == 0, text
        assert "wrote" in text and "NAV 102,000.00 (-1.92%)" in text
        page = out.read_text()
        assert "102,000.00" in page and "NOTIONAL_EXCEEDS_MAXIMUM" in page
        assert "1 stored messages did not decode" in page
        # without --date: the last session struck (2016-01-07)
        code, text = _mts(capsys, *report, "--out", str(tmp_path / "last.html"))
        assert code == 0 and "2016-01-07" in text
        code, text = _mts(capsys, *report, "--date", "06/01/2016")
        assert code == 1 and "--date" in text and "06/01/2016" in text
        assert "Traceback" not in text
        code, text = _mts(capsys, *report, "--fund", "nope", "--date", "2016-01-06",
                          "--out", str(tmp_path / "x.html"))
        assert code == 1 and "--fund" in text and "nope" in text
        assert not (tmp_path / "x.html").exists()
    finally:
        asyncio.run(drop())


@pytest.mark.integration
async def test_the_announced_summary_reaches_a_receiver_through_the_router(
        tmp_path: Path, alerts_db: object, fresh_bus: object, kit: object) -> None:
    """``report daily --announce``: the summary goes out as the info alert DailyReport, and
    the alerts router (real NATS, PostgreSQL outbox) delivers it to a webhook receiver (a
    local HTTP server standing in for a real endpoint)."""
    import asyncio

    from mts1b_operations.alerts.config import load_alerts_config
    from mts1b_operations.alerts.service import run_alerts
    from mts1b_operations.testing import LocalWebhook

    bus = fresh_bus
    await bus.declare_streams(["treasury", "oms", "datalake", "operations"])  # type: ignore[attr-defined]
    for subject, items in _events().items():
        for item in items:
            await bus.publish_acked(subject, item)  # type: ignore[attr-defined]
    async with LocalWebhook() as hook:
        config = load_alerts_config(None, environ={}, overrides={
            "database_url": kit.DSN, "schema_name": alerts_db.schema,  # type: ignore[attr-defined]
            "group_wait": 0.2, "tick": 0.1,
            "receivers": [{"kind": "webhook", "name": "hook", "url": hook.url}]})
        stop, ready = asyncio.Event(), asyncio.Event()
        service = asyncio.create_task(run_alerts(config, namespace=bus.namespace,  # type: ignore[attr-defined]
                                                 stop=stop, ready=ready))
        try:
            await asyncio.wait_for(ready.wait(), 20)
            code, text = await asyncio.to_thread(_mts_plain, "mts1b-operations", "report",
                                                 "daily", "--date", "2016-01-06", "--out",
                                                 str(tmp_path / "d.html"), "--namespace",
                                                 bus.namespace, "--announce")  # type: ignore[attr-defined]
            assert code == 0, text
            assert "announced: alert DailyReport for 2016-01-06" in text
            got: list[dict[str, object]] = []
            for _ in range(100):
                got = [a for r in hook.requests for a in r.json()["alerts"]
                       if a["labels"]["alertname"] == "DailyReport"]
                if got:
                    break
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.wait_for(service, 20)
    assert got and got[0]["labels"]["date"] == "2016-01-06"  # type: ignore[index]
    assert "NAV 102,000.00 (-1.92%)" in str(got[0])


def _mts_plain(*args: str) -> tuple[int, str]:
    """``mts ARGS`` in a child process, as typed: its exit status and output."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "mts1b_platform.cli", *args],
                          capture_output=True, text=True, timeout=120, check=False)
    return done.returncode, done.stdout + done.stderr
