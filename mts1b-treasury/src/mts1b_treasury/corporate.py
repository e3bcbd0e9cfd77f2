"""Corporate actions from the datalake into the ledger: splits for every fund, cash dividends
for each fund that held the symbol at its ex-date.

Why from a file: the datalake (``mts mts1b-datalake store events``) and the treasury are
separate installs, and the CSV it writes (``symbol,date,kind,value``) is the contract. Each
event is booked under a key made of what it is (``split:AAPL:2026-06-10``,
``dividend:AAPL:2026-06-10:core``), so booking the same file again books nothing twice, and a
corrected value under the same key is a conflict a person sees. The datalake has no pay dates:
a dividend is paid on its ex-date here (documented; the NAV sees it that session).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from mts1b_treasury.errors import TreasuryInputError
from mts1b_treasury.funds import FundRegistry
from mts1b_treasury.ledger import Ledger, PostOutcome

__all__ = ["CorporateAction", "book_actions", "read_actions"]

_KINDS = ("split", "dividend")


@dataclass(frozen=True, slots=True)
class CorporateAction:
    symbol: str
    ex_date: dt.date
    kind: str
    value: Decimal


def read_actions(path: Path) -> list[CorporateAction]:
    """The events of a ``symbol,date,kind,value`` CSV; a bad row is refused naming its line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TreasuryInputError("--events", str(path), f"cannot be read ({exc.strerror})"
                                 ) from None
    rows = list(csv.DictReader(io.StringIO(text)))
    if rows and not {"symbol", "date", "kind", "value"} <= set(rows[0]):
        raise TreasuryInputError("--events", str(path),
                                 "needs the columns symbol, date, kind and value")
    return [_action(row, line) for line, row in enumerate(rows, start=2)]


def _action(row: dict[str, str], line: int) -> CorporateAction:
    where = f"--events:{line}"
    symbol = (row.get("symbol") or "").strip()
    kind = (row.get("kind") or "").strip()
    if not symbol:
        raise TreasuryInputError(f"{where} symbol", row.get("symbol"), "is empty")
    if kind not in _KINDS:
        raise TreasuryInputError(f"{where} kind", kind, f"must be one of {list(_KINDS)}")
    try:
        day = dt.date.fromisoformat((row.get("date") or "").strip())
    except ValueError:
        raise TreasuryInputError(f"{where} date", row.get("date"), "not a date (YYYY-MM-DD)"
                                 ) from None
    try:
        value = Decimal((row.get("value") or "").strip())
    except InvalidOperation:
        raise TreasuryInputError(f"{where} value", row.get("value"), "not a number") from None
    if not value.is_finite() or value <= 0:
        raise TreasuryInputError(f"{where} value", row.get("value"), "must be a number > 0")
    return CorporateAction(symbol, day, kind, value)


async def book_actions(registry: FundRegistry, actions: Sequence[CorporateAction]
                       ) -> list[tuple[CorporateAction, str, PostOutcome]]:
    """Book each action in ex-date order: (action, fund or '*', outcome) per posting."""
    ledger = Ledger(registry.db)
    funds = [r.fund_id for r in await registry.funds()]
    out: list[tuple[CorporateAction, str, PostOutcome]] = []
    for action in sorted(actions, key=lambda a: (a.ex_date, a.symbol, a.kind)):
        key = f"{action.kind}:{action.symbol}:{action.ex_date.isoformat()}"
        if action.kind == "split":
            for outcome in await ledger.apply_split(action.symbol, action.value,
                                                    action.ex_date, key):
                out.append((action, "*", outcome))
            continue
        for fund_id in funds:
            outcome = await ledger.post_dividend(fund_id, action.symbol, action.value,
                                                 action.ex_date, action.ex_date,
                                                 f"{key}:{fund_id}")
            out.append((action, fund_id, outcome))
    return out
