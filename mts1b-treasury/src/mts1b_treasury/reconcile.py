"""Reconciliation of a fund's books with its broker's :class:`AccountSnapshot` at the strike.

Why: the ledger is the system of record, but the broker holds the money. Each day, at the
strike, the fund's cash and positions are compared with what the broker reports, and every
difference becomes an :class:`Alert` a person reads.

Which cash is compared: the ledger posts a trade on its trade date, so its cash at the close
already includes the session's buys and sells; the broker's ``cash`` in the snapshot is *settled*
cash, and under T+1 a trade settles the next business day. So the comparison is

    settled_ours = ledger_cash - unsettled_cash      vs      snapshot.cash

where ``unsettled_cash`` is the net cash effect (buys negative, sells positive, commissions
negative) of the trades not yet settled when the snapshot was taken (:func:`unsettled_cash`
computes it from the fills of each session and a settlement-days count). A difference of at most
``cash_tolerance`` (0.01 by default, inclusive) passes; beyond it is a WARNING alert (cash can be
off for a benign reason: interest or a fee the broker posted first).

Positions are compared exactly, on trade date (brokers report positions as traded, not as
settled): any non-zero difference is an ERROR alert, as is a symbol held on one side only. A
symbol at 0 counts as absent on either side. Alerts carry the fund, the session, the broker,
the symbol and both figures - never the account id or anything else that could be a secret.
Each alert's id is a digest of (fund, session, what, symbol), so a re-run raises the same ids
and an alert sink can deduplicate.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Literal

from mts1b_foundation import AccountSnapshot, Alert, Severity, alert_labels
from mts1b_platform.calendars import MarketCalendar

from mts1b_treasury.errors import TreasuryInputError
from mts1b_treasury.nav import NavFill, fills_net_cash

__all__ = [
    "PositionBreak",
    "ReconcileResult",
    "reconcile",
    "settlement_date",
    "unsettled_cash",
]

BreakKind = Literal["mismatch", "missing_at_broker", "missing_in_ledger"]
_ZERO = Decimal(0)


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- settlement --------------------------------------------------------------------------------


def settlement_date(trade_date: dt.date, settlement_days: int = 1,
                    calendar: MarketCalendar | None = None) -> dt.date:
    """The day a trade of ``trade_date`` settles: ``settlement_days`` business days later.

    Business days are ``calendar``'s sessions when one is given (for US equities the exchange's
    sessions stand for the settlement calendar: their holidays coincide but for rare days such
    as Columbus Day, when banks close and the NYSE trades), else Monday to Friday.
    """
    if settlement_days < 0:
        raise TreasuryInputError("settlement_days", settlement_days, "must be >= 0")
    if settlement_days == 0:
        return trade_date
    if calendar is not None:
        days = calendar.sessions(trade_date + dt.timedelta(days=1),
                                 trade_date + dt.timedelta(days=3 * settlement_days + 14))
        return days[settlement_days - 1]
    day, left = trade_date, settlement_days
    while left:
        day += dt.timedelta(days=1)
        if day.weekday() < 5:
            left -= 1
    return day


def unsettled_cash(fills_by_session: Mapping[dt.date, Iterable[NavFill]], *, at: dt.date,
                   settlement_days: int = 1, calendar: MarketCalendar | None = None) -> Decimal:
    """Net cash of the fills not yet settled on day ``at`` (the snapshot's business day).

    A fill of session ``d`` is unsettled while its :func:`settlement_date` is after ``at``;
    its cash is ``-(quantity * price) - commission`` (a buy is negative). With T+1 and a
    snapshot at the session's close, that is exactly the session's own fills; pass earlier
    sessions too when a holiday or a longer cycle (T+2) leaves them open.
    """
    total = _ZERO
    for session, fills in fills_by_session.items():
        if settlement_date(session, settlement_days, calendar) > at:
            total += fills_net_cash(fills)
    return total


# --- the result --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PositionBreak:
    """One symbol whose quantity differs: ``ours`` (the ledger) against ``theirs`` (the broker)."""

    symbol: str
    ours: Decimal
    theirs: Decimal
    kind: BreakKind

    @property
    def difference(self) -> Decimal:
        """``theirs - ours``: what the ledger lacks (negative: what it has too much of)."""
        return self.theirs - self.ours


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    """The comparison at the strike, and one alert per problem found (none when all agree)."""

    fund_id: str
    session: dt.date
    broker: str
    snapshot_as_of: dt.datetime
    ledger_cash: Decimal
    unsettled_cash: Decimal
    broker_cash: Decimal
    cash_tolerance: Decimal
    position_breaks: tuple[PositionBreak, ...]
    alerts: list[Alert] = field(default_factory=list)

    @property
    def settled_cash(self) -> Decimal:
        """The ledger's settled cash: ``ledger_cash - unsettled_cash``."""
        return self.ledger_cash - self.unsettled_cash

    @property
    def cash_difference(self) -> Decimal:
        """``broker_cash - settled_cash``."""
        return self.broker_cash - self.settled_cash

    @property
    def cash_ok(self) -> bool:
        return abs(self.cash_difference) <= self.cash_tolerance

    @property
    def ok(self) -> bool:
        return self.cash_ok and not self.position_breaks


# --- the comparison ----------------------------------------------------------------------------


def _position_breaks(ours: Mapping[str, Decimal],
                     theirs: Mapping[str, Decimal]) -> tuple[PositionBreak, ...]:
    breaks: list[PositionBreak] = []
    for symbol in sorted(ours.keys() | theirs.keys()):
        mine, broker = ours.get(symbol, _ZERO), theirs.get(symbol, _ZERO)
        if mine == broker:
            continue
        kind: BreakKind = ("missing_at_broker" if not broker else
                           "missing_in_ledger" if not mine else "mismatch")
        breaks.append(PositionBreak(symbol, mine, broker, kind))
    return tuple(breaks)


def _alert_id(fund_id: str, session: dt.date, what: str, symbol: str = "") -> str:
    key = "\x1f".join((fund_id, session.isoformat(), what, symbol))
    return "recon-" + hashlib.sha256(key.encode()).hexdigest()[:32]


def _cash_alert(result: ReconcileResult, source: str, ts: dt.datetime) -> Alert:
    text = (f"fund {result.fund_id} {result.session}: settled cash per ledger "
            f"{result.settled_cash} (ledger {result.ledger_cash} less unsettled "
            f"{result.unsettled_cash}) differs from {result.broker}'s {result.broker_cash} by "
            f"{result.cash_difference} (tolerance {result.cash_tolerance})")
    return Alert(
        alert_id=_alert_id(result.fund_id, result.session, "cash"), severity=Severity.WARNING,
        labels=alert_labels("ReconciliationBreak", source,
                            {"fund_id": result.fund_id, "broker": result.broker, "check": "cash"}),
        source=source, text=text, ts=ts,
        context={"fund_id": result.fund_id, "session": result.session.isoformat(),
                 "broker": result.broker, "check": "cash", "ours": str(result.settled_cash),
                 "theirs": str(result.broker_cash), "ledger_cash": str(result.ledger_cash),
                 "unsettled_cash": str(result.unsettled_cash),
                 "difference": str(result.cash_difference),
                 "tolerance": str(result.cash_tolerance)})


_WHAT = {"mismatch": "holds {ours} per ledger, {theirs} per {broker}",
         "missing_at_broker": "holds {ours} per ledger and none per {broker}",
         "missing_in_ledger": "holds none per ledger and {theirs} per {broker}"}


def _position_alert(result: ReconcileResult, brk: PositionBreak, source: str,
                    ts: dt.datetime) -> Alert:
    what = _WHAT[brk.kind].format(ours=brk.ours, theirs=brk.theirs, broker=result.broker)
    return Alert(
        alert_id=_alert_id(result.fund_id, result.session, "position", brk.symbol),
        labels=alert_labels("ReconciliationBreak", source,
                            {"fund_id": result.fund_id, "broker": result.broker,
                             "check": "position", "symbol": brk.symbol}),
        severity=Severity.ERROR, source=source, ts=ts,
        text=f"fund {result.fund_id} {result.session}: {brk.symbol} {what}",
        context={"fund_id": result.fund_id, "session": result.session.isoformat(),
                 "broker": result.broker, "check": "position", "kind": brk.kind,
                 "symbol": brk.symbol, "ours": str(brk.ours), "theirs": str(brk.theirs),
                 "difference": str(brk.difference)})


def _check_amount(name: str, value: object) -> Decimal:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise TreasuryInputError(name, value, "expected a finite Decimal")
    return value


def reconcile(*, fund_id: str, session: dt.date, ledger_cash: Decimal,
              ledger_positions: Mapping[str, Decimal], unsettled_cash: Decimal,
              snapshot: AccountSnapshot, cash_tolerance: Decimal = Decimal("0.01"),
              source: str = "treasury",
              clock: Callable[[], dt.datetime] = _utc_now) -> ReconcileResult:
    """Compare the ledger at the strike with ``snapshot`` (see the module for every rule).

    ``unsettled_cash`` is the net cash of trades the ledger posted that the broker had not
    settled at ``snapshot.as_of`` (:func:`unsettled_cash`). ``clock`` stamps the alerts.
    """
    _check_amount("ledger_cash", ledger_cash)
    _check_amount("unsettled_cash", unsettled_cash)
    if _check_amount("cash_tolerance", cash_tolerance) < 0:
        raise TreasuryInputError("cash_tolerance", cash_tolerance, "must be >= 0")
    for symbol, qty in ledger_positions.items():
        _check_amount(f"ledger_positions[{symbol}]", qty)
    result = ReconcileResult(
        fund_id=fund_id, session=session, broker=snapshot.broker,
        snapshot_as_of=snapshot.as_of, ledger_cash=ledger_cash, unsettled_cash=unsettled_cash,
        broker_cash=snapshot.cash, cash_tolerance=cash_tolerance,
        position_breaks=_position_breaks(ledger_positions, snapshot.positions))
    ts = clock()
    alerts = [] if result.cash_ok else [_cash_alert(result, source, ts)]
    alerts += [_position_alert(result, b, source, ts) for b in result.position_breaks]
    return replace(result, alerts=alerts)
