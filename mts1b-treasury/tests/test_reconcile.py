"""Reconciliation with the broker's snapshot: settled cash within 0.01, positions exactly, T+1."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D  # noqa: N817

import pytest
from mts1b_foundation import AccountSnapshot, Severity
from mts1b_platform.calendars import MarketCalendar
from mts1b_treasury.errors import TreasuryInputError
from mts1b_treasury.nav import NavFill
from mts1b_treasury.reconcile import ReconcileResult, reconcile, settlement_date, unsettled_cash

FRI = dt.date(2026, 12, 4)
MON = dt.date(2026, 12, 7)
NOW = dt.datetime(2026, 12, 4, 21, 5, tzinfo=dt.UTC)
BUY = NavFill("XYZ", D(100), D("100.00"), D("1.00"), {"A": D(100)})


def snapshot(cash: str, positions: dict[str, D], day: dt.date = FRI) -> AccountSnapshot:
    return AccountSnapshot(broker="paper", account_id="ACC-SECRET-42", cash=D(cash),
                           buying_power=D(cash), equity=D(cash), positions=positions,
                           as_of=dt.datetime.combine(day, dt.time(21), dt.UTC))


def run(ledger_cash: str, ledger: dict[str, D], snap: AccountSnapshot,
        unsettled: D = D(0), session: dt.date = FRI) -> ReconcileResult:
    return reconcile(fund_id="fund-1", session=session, ledger_cash=D(ledger_cash),
                     ledger_positions=ledger, unsettled_cash=unsettled, snapshot=snap,
                     clock=lambda: NOW)


def test_an_exact_match_raises_nothing() -> None:
    result = run("1000.00", {"XYZ": D(10), "ABC": D(-5)},
                 snapshot("1000", {"ABC": D("-5.0"), "XYZ": D(10), "ZERO": D(0)}))
    assert result.ok and result.alerts == [] and result.position_breaks == ()
    assert result.cash_difference == 0


def test_cash_within_a_cent_passes_and_beyond_warns() -> None:
    assert run("1000.00", {}, snapshot("1000.01", {})).alerts == []
    assert run("1000.00", {}, snapshot("999.99", {})).alerts == []
    result = run("1000.00", {}, snapshot("1000.011", {}))
    assert not result.ok and result.cash_difference == D("0.011")
    [alert] = result.alerts
    assert alert.severity is Severity.WARNING and alert.source == "treasury" and alert.ts == NOW
    assert alert.context["ours"] == "1000.00" and alert.context["theirs"] == "1000.011"
    assert alert.context["fund_id"] == "fund-1" and alert.context["difference"] == "0.011"
    assert "ACC-SECRET-42" not in alert.model_dump_json()


def test_a_trade_of_the_session_is_unsettled_at_its_close() -> None:
    """Bought 100 XYZ at 100 (+1 commission) on Friday: the ledger's cash fell by 10,001, the
    broker's settled cash has not until Monday."""
    snap = snapshot("100000.00", {"XYZ": D(100)})
    unsettled = unsettled_cash({FRI: [BUY]}, at=FRI)
    assert unsettled == D("-10001")
    result = run("89999.00", {"XYZ": D(100)}, snap, unsettled)
    assert result.ok and result.settled_cash == D("100000") and result.alerts == []
    # compared as if settled, the same books would warn
    assert not run("89999.00", {"XYZ": D(100)}, snap).cash_ok
    # on Monday the trade has settled on both sides
    assert unsettled_cash({FRI: [BUY]}, at=MON) == 0
    monday = run("89999.00", {"XYZ": D(100)}, snapshot("89999", {"XYZ": D(100)}, MON),
                 unsettled_cash({FRI: [BUY]}, at=MON), MON)
    assert monday.ok


def test_missing_extra_and_different_positions_are_errors() -> None:
    result = run("0", {"GONE": D(5), "DIFF": D(10), "SAME": D(1)},
                 snapshot("0", {"DIFF": D("10.5"), "SAME": D(1), "EXTRA": D(-3)}))
    assert [(b.symbol, b.kind, b.difference) for b in result.position_breaks] == [
        ("DIFF", "mismatch", D("0.5")), ("EXTRA", "missing_in_ledger", D(-3)),
        ("GONE", "missing_at_broker", D(-5))]
    assert [a.severity for a in result.alerts] == [Severity.ERROR] * 3
    assert [(a.context["symbol"], a.context["ours"], a.context["theirs"])
            for a in result.alerts] == [("DIFF", "10", "10.5"), ("EXTRA", "0", "-3"),
                                        ("GONE", "5", "0")]
    assert result.cash_ok and not result.ok
    # re-running raises the same ids (a sink can deduplicate), one per problem
    again = run("0", {"GONE": D(5), "DIFF": D(10), "SAME": D(1)},
                snapshot("0", {"DIFF": D("10.5"), "SAME": D(1), "EXTRA": D(-3)}))
    assert [a.alert_id for a in again.alerts] == [a.alert_id for a in result.alerts]
    assert len({a.alert_id for a in result.alerts}) == 3


def test_settlement_dates() -> None:
    assert settlement_date(FRI) == MON
    assert settlement_date(FRI, 2) == dt.date(2026, 12, 8)
    assert settlement_date(FRI, 0) == FRI
    xnys = MarketCalendar("XNYS")
    assert settlement_date(dt.date(2024, 11, 27), 1, xnys) == dt.date(2024, 11, 29)
    assert settlement_date(dt.date(2024, 11, 27), 1) == dt.date(2024, 11, 28)
    # a Wednesday trade before Thanksgiving is still open on the holiday
    assert unsettled_cash({dt.date(2024, 11, 27): [BUY]}, at=dt.date(2024, 11, 28),
                          calendar=xnys) == D(-10001)
    with pytest.raises(TreasuryInputError) as info:
        settlement_date(FRI, -1)
    assert info.value.context["field"] == "settlement_days"


def test_bad_input_is_named() -> None:
    with pytest.raises(TreasuryInputError) as info:
        reconcile(fund_id="f", session=FRI, ledger_cash=D(0), ledger_positions={},
                  unsettled_cash=D(0), snapshot=snapshot("0", {}), cash_tolerance=D("-0.01"))
    assert info.value.context["field"] == "cash_tolerance"
    with pytest.raises(TreasuryInputError) as info:
        run("0", {"XYZ": 1.5}, snapshot("0", {}))  # type: ignore[dict-item]
    assert info.value.context["field"] == "ledger_positions[XYZ]"
