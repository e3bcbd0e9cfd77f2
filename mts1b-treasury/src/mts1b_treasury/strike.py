"""A fund's NAV inputs read from the ledger at a session close, struck, stored, reconciled.

Why the inputs are rebuilt from posted fills rather than read from balances: the strike must
give the same bits when a session is struck again later, after more has been posted. Positions,
sleeve positions and the cash the fills moved all come from the same set - the current
revision of each fill executed up to the close (``ledger_fills``), with the splits effective by
then - and the other cash (flows, transfers, dividends, borrow) from journal entries dated up to
the close. A split effective in the session re-bases the previous close (its positions, sleeves
and mark) into post-split shares, so the day's PnL sees neither the split's quantity nor its
price change. A fill busted or corrected after a session was struck changes that session's inputs:
striking it again is then refused unless restated (:class:`~mts1b_treasury.navstore.NavStore`).

Dividends and borrow are attributed by symbol, which the ledger writes first in the entry's memo
(``dividend <SYMBOL> ...``, ``borrow fee <SYMBOL>``). Marks: today's are given; the previous
session's come from the previous strike's stored inputs, or from ``previous_marks`` for a
fund's first strike that holds positions.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from mts1b_foundation import AccountSnapshot, FundNav

from mts1b_treasury.db import TreasuryDb
from mts1b_treasury.errors import TreasuryInputError
from mts1b_treasury.nav import NavFill, NavInputs, session_close
from mts1b_treasury.navstore import NavStore, StoredStrike
from mts1b_treasury.reconcile import ReconcileResult, reconcile, unsettled_cash

__all__ = ["StrikeOutcome", "nav_inputs", "previous_session", "strike_fund"]

ZERO = Decimal(0)
_CASH_KINDS = ["flow", "transfer", "dividend", "borrow"]


def previous_session(session: dt.date, calendar: str = "XNYS") -> dt.date:
    """The calendar's session before ``session``."""
    from mts1b_platform.calendars import MarketCalendar

    days = MarketCalendar(calendar).sessions(session - dt.timedelta(days=14),
                                             session - dt.timedelta(days=1))
    if not days:
        raise TreasuryInputError("session", session.isoformat(), f"no {calendar} session in "
                                 "the two weeks before it")
    last = days[-1]
    return last if isinstance(last, dt.date) else dt.date.fromisoformat(str(last)[:10])


async def _ledger_rows(db: TreasuryDb, fund_id: str, until: dt.datetime
                      ) -> tuple[list[Any], list[Any]]:
    """The fund's posted fills (current revisions) executed up to ``until`` and its splits
    effective by then, in time order: read once, replayed to each cut point."""
    fills = await db.pool.fetch(
        "SELECT symbol, side, quantity, price, commission, ts, sleeve_ids, sleeve_qty, sequence "
        "FROM ledger_fills WHERE fund_id = $1 AND status = 'posted' AND ts <= $2 "
        "ORDER BY ts, sequence", fund_id, until)
    splits = await db.pool.fetch(
        "SELECT symbol, ratio, effective FROM ledger_splits WHERE fund_id = $1 AND "
        "effective <= $2 ORDER BY effective, sequence", fund_id, until.date())
    return list(fills), list(splits)


def _holdings(fills: Sequence[Any], splits: Sequence[Any], until: dt.datetime
              ) -> tuple[dict[str, Decimal], dict[tuple[str, str], Decimal], Decimal,
                         list[NavFill]]:
    """Positions, sleeve positions, the cash the fills moved, and the fills themselves (each
    with its sleeve split) up to ``until``, splits applied in time order."""
    positions: dict[str, Decimal] = {}
    sleeves: dict[tuple[str, str], Decimal] = {}
    cash = ZERO
    out: list[NavFill] = []
    pending = [s for s in splits if s["effective"] <= until.date()]
    for f in (f for f in fills if f["ts"] <= until):
        while pending and pending[0]["effective"] <= f["ts"].date():
            _split(pending.pop(0), positions, sleeves)
        signed = f["quantity"] if f["side"] == "buy" else -f["quantity"]
        positions[f["symbol"]] = positions.get(f["symbol"], ZERO) + signed
        split = dict(zip(f["sleeve_ids"], f["sleeve_qty"], strict=True))
        for sleeve, qty in split.items():
            key = (sleeve, f["symbol"])
            sleeves[key] = sleeves.get(key, ZERO) + qty
        cash -= signed * f["price"] + f["commission"]
        out.append(NavFill(f["symbol"], signed, f["price"], f["commission"], split))
    for s in pending:
        _split(s, positions, sleeves)
    return ({k: v for k, v in positions.items() if v != 0},
            {k: v for k, v in sleeves.items() if v != 0}, cash, out)


def _split(row: Mapping[str, object], positions: dict[str, Decimal],
           sleeves: dict[tuple[str, str], Decimal]) -> None:
    symbol, ratio = str(row["symbol"]), Decimal(str(row["ratio"]))
    if symbol in positions:
        positions[symbol] *= ratio
    for key in [k for k in sleeves if k[1] == symbol]:
        sleeves[key] *= ratio


def _rebase(row: Mapping[str, object], positions: dict[str, Decimal],
            sleeves: dict[tuple[str, str], Decimal], marks: dict[str, Decimal]) -> None:
    """The previous close in the shares of a split effective this session: quantities times
    the ratio, the mark divided by it.

    Why: the strike checks that each sleeve's position is its previous one plus its fills,
    and attributes the market move as ``previous_qty * (mark - previous_mark)``; a split
    between the two closes changes the quantity without a fill and the price without a
    market move. Re-based, the 100 shares at 100 of a 2-for-1 split are 200 at 50: the same
    value, no invented PnL.
    """
    _split(row, positions, sleeves)
    symbol, ratio = str(row["symbol"]), Decimal(str(row["ratio"]))
    if symbol in marks:
        marks[symbol] = marks[symbol] / ratio


async def _other_cash(db: TreasuryDb, fund_id: str, until: dt.datetime
                      ) -> list[tuple[dt.datetime, str, str, Decimal]]:
    """(ts, kind, memo, cash amount) of the non-fill entries dated up to ``until``."""
    rows = await db.pool.fetch(
        "SELECT e.ts, e.kind, e.memo, l.amount FROM journal_entries e JOIN journal_lines l "
        "USING (entry_id) WHERE e.fund_id = $1 AND e.status = 'posted' AND l.account = 'cash' "
        "AND e.kind = ANY($2::text[]) AND e.ts <= $3", fund_id, _CASH_KINDS, until)
    return [(r["ts"], r["kind"], r["memo"], r["amount"]) for r in rows]


def _memo_symbol(memo: str) -> str:
    words = memo.split()
    return words[2] if memo.startswith("borrow fee ") else words[1] if len(words) > 1 else ""


async def _previous_strike(db: TreasuryDb, fund_id: str, session: dt.date
                           ) -> dict[str, object] | None:
    raw = await db.pool.fetchval(
        "SELECT inputs_json FROM nav_strikes WHERE fund_id = $1 AND session < $2 AND current "
        "ORDER BY session DESC LIMIT 1", fund_id, session)
    return None if raw is None else dict(json.loads(raw))


async def nav_inputs(db: TreasuryDb, fund_id: str, session: dt.date, *,
                     marks: Mapping[str, Decimal],
                     previous_marks: Mapping[str, Decimal] | None = None,
                     calendar: str = "XNYS") -> NavInputs:
    """The inputs of ``fund_id``'s strike at ``session``'s close (see the module docstring)."""
    close = session_close(session, calendar)
    created = await db.pool.fetchval("SELECT min(changed_at) FROM fund_versions WHERE "
                                     "fund_id = $1", fund_id)
    if created is not None and created > close:
        raise TreasuryInputError("session", session.isoformat(),
                                 f"fund {fund_id} was created after that session's close "
                                 f"({created.isoformat()}): strike a later session")
    previous_close = session_close(previous_session(session, calendar), calendar)
    store = NavStore(db)
    previous_nav = await store.previous_nav(fund_id, session)
    fills, splits = await _ledger_rows(db, fund_id, close)
    positions, sleeves, fill_cash, all_fills = _holdings(fills, splits, close)
    before, before_sleeves, _, before_fills = _holdings(fills, splits, previous_close)
    todays = all_fills[len(before_fills):]
    other = await _other_cash(db, fund_id, close)
    cash = fill_cash + sum((a for _, _, _, a in other), ZERO)
    flows: list[Decimal] = []
    dividends: dict[str, Decimal] = {}
    borrow: dict[str, Decimal] = {}
    for _, kind, memo, amount in (o for o in other if o[0] > previous_close):
        if kind in ("flow", "transfer"):
            flows.append(amount)
        elif kind == "dividend":
            symbol = _memo_symbol(memo)
            dividends[symbol] = dividends.get(symbol, ZERO) + amount
        else:
            symbol = _memo_symbol(memo)
            borrow[symbol] = borrow.get(symbol, ZERO) - amount
    prior = await _previous_strike(db, fund_id, session)
    before_marks: dict[str, Decimal] = dict(previous_marks or {})
    if prior is not None and not previous_marks:
        stored = prior.get("marks")
        if isinstance(stored, dict):
            before_marks = {str(k): Decimal(str(v)) for k, v in stored.items()}
    for split in (s for s in splits if s["effective"] > previous_close.date()):
        _rebase(split, before, before_sleeves, before_marks)
    wanted = set(positions) | {f.symbol for f in todays} | set(dividends)
    held_before = set(before) | {symbol for _, symbol in before_sleeves}
    return NavInputs(fund_id=fund_id, session=session, as_of=close, previous_nav=previous_nav,
                     cash=cash, positions=positions,
                     marks={s: m for s, m in marks.items() if s in wanted},
                     previous_marks={s: m for s, m in before_marks.items() if s in held_before},
                     sleeve_positions=sleeves, previous_sleeve_positions=before_sleeves,
                     fills=tuple(todays), flows=tuple(flows), borrow_fees=borrow,
                     dividends=dividends)


class StrikeOutcome:
    """A stored strike and, when a snapshot was given, its reconciliation."""

    def __init__(self, stored: StoredStrike, reconciliation: ReconcileResult | None) -> None:
        self.stored = stored
        self.reconciliation = reconciliation

    @property
    def nav(self) -> FundNav:
        return self.stored.nav


async def strike_fund(db: TreasuryDb, fund_id: str, session: dt.date, *,
                      marks: Mapping[str, Decimal],
                      previous_marks: Mapping[str, Decimal] | None = None,
                      calendar: str = "XNYS", restate: bool = False,
                      snapshot: AccountSnapshot | None = None,
                      now: Callable[[], dt.datetime] | None = None) -> StrikeOutcome:
    """Build the inputs, strike and store them (:class:`NavStore`), and reconcile with the
    broker's ``snapshot`` when one is given: settled cash (the ledger's less what the
    session's and earlier unsettled trades still owe, T+1) within 0.01, positions exactly.
    ``now`` stamps the stored strike (``struck_at``; the wall clock by default, a replay's
    clock on a replay)."""
    inputs = await nav_inputs(db, fund_id, session, marks=marks, previous_marks=previous_marks,
                              calendar=calendar)
    store = NavStore(db) if now is None else NavStore(db, clock=now)
    stored = await store.strike(inputs, restate=restate)
    result = None
    if snapshot is not None:
        unsettled = unsettled_cash({session: inputs.fills}, at=snapshot.as_of.date())
        result = reconcile(fund_id=fund_id, session=session, ledger_cash=inputs.cash,
                           ledger_positions=inputs.positions, unsettled_cash=unsettled,
                           snapshot=snapshot)
    return StrikeOutcome(stored, result)
