"""Corporate actions into the ledger: splits for every fund, cash dividends for each fund that
held the symbol at its ex-date, from the datalake's CSV or from a lockstep replay's bus; and
from the bus, delistings (each fund's position paid out at the last close).

One model, :class:`mts1b_foundation.CorporateAction`, whichever way an action comes: the
``ledger corporate-actions --events`` command reads the CSV the datalake writes
(``mts mts1b-datalake store events``: ``symbol,date,kind,value``; separate installs, so the file
is the contract), and ``serve --replay-clock`` takes the actions a lockstep replay publishes on
``mts.v1.datalake.actions.<symbol>``. Each action is booked under a key made of what it is
(``split:AAPL:2026-06-10``, ``dividend:AAPL:2026-06-10:core``), not of its ``action_id``: the
same action from the file and from the bus books once, booking it again books nothing twice,
and a corrected value under the same key is a conflict a person sees. The datalake has no pay
dates: a dividend is paid on its ex-date here (documented; the NAV sees it that session), to
the position held before the ex-date (fills of the ex-date's open do not earn it).

A delisting (``value``: the last close; ``ex_date``: the first session without the symbol) is
booked as the disposal of what each fund holds, one fill per sleeve at ``value`` stamped at the
start of the ex-date, no commission (:func:`book_delisting`): the lots are closed and their
realised PnL posted as any sale's, the cash is what the paper venue paid out
(:meth:`mts1b_brokers.PaperClient.delist`), and the sleeves' positions go to zero with it.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path

from mts1b_foundation import CorporateAction, Fill, Side, deterministic_id
from pydantic import ValidationError

from mts1b_treasury.errors import TreasuryInputError
from mts1b_treasury.funds import FundRegistry
from mts1b_treasury.ledger import UNATTRIBUTED, FillPosting, Ledger, PostOutcome, PostStatus

__all__ = ["CorporateAction", "action_key", "book_actions", "book_delisting", "read_actions"]

_KINDS = ("split", "dividend")


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
    try:  # the wire model checks the symbol (the checks above name the line and column)
        return CorporateAction(action_id=f"csv:line:{line}",
                               symbol=symbol, ex_date=day.isoformat(), kind=kind, value=value)
    except ValidationError as exc:
        raise TreasuryInputError(f"{where} symbol", symbol, "not a symbol: "
                                 f"{exc.errors()[0]['msg']}") from None


async def book_actions(registry: FundRegistry, actions: Sequence[CorporateAction]
                       ) -> list[tuple[CorporateAction, str, PostOutcome]]:
    """Book each action in ex-date order: (action, fund or '*', outcome) per posting.

    A split rewrites the lots of every fund holding the symbol (one outcome per fund, or one
    ``duplicate``); a dividend is posted for each open fund, on the quantity it held at the
    start of the ex-date (an entry without lines for a fund that held none: it says the
    dividend was processed); a delisting closes each fund's position (:func:`book_delisting`,
    one outcome per fund that held it or booked it before). The ledger accounts of every open
    fund must be open.
    """
    ledger = Ledger(registry.db)
    funds = [r.fund_id for r in await registry.funds()]
    out: list[tuple[CorporateAction, str, PostOutcome]] = []
    for action in sorted(actions, key=lambda a: (a.ex_date, a.symbol, a.kind)):
        key = action_key(action)
        ex_date = dt.date.fromisoformat(action.ex_date)
        if action.kind == "split":
            for outcome in await ledger.apply_split(action.symbol, action.value, ex_date, key):
                out.append((action, "*", outcome))
            continue
        if action.kind == "delisting":
            for fund_id in funds:
                disposal = await book_delisting(ledger, fund_id, action)
                if disposal is not None:
                    out.append((action, fund_id, disposal))
            continue
        for fund_id in funds:
            outcome = await ledger.post_dividend(fund_id, action.symbol, action.value,
                                                 ex_date, ex_date, f"{key}:{fund_id}")
            out.append((action, fund_id, outcome))
    return out


def action_key(action: CorporateAction) -> str:
    """The ledger key of an action (a dividend's adds the fund): what it is, not its id."""
    return f"{action.kind}:{action.symbol}:{action.ex_date}"


async def book_delisting(ledger: Ledger, fund_id: str, action: CorporateAction
                         ) -> PostOutcome | None:
    """Close ``fund_id``'s position in a delisted symbol at ``action.value``: one fill per sleeve
    holding it (and one unattributed for a remainder no sleeve holds), sold (a short bought
    back) at that price, no commission, stamped at the start of the ex-date, under ids made of
    the action's key, the fund and the sleeve. Returns ``posted``; ``duplicate`` when the
    fills of this key were posted before (the position is closed already; nothing is
    written), ``conflict`` when they were posted at another price; ``None`` when the fund
    held none and never booked it. Why fills: the lots, their realised PnL and the sleeves'
    positions then move exactly as for any sale, and a NAV strike needs no mark for a symbol
    that no longer trades."""
    key = action_key(action)
    at = dt.datetime.combine(dt.date.fromisoformat(action.ex_date), dt.time(0), dt.UTC)
    order_id = deterministic_id("delisting", key, fund_id)
    price = Decimal(action.value)
    before = [p.posting.fill for p in await ledger.fills(fund_id, since=at,
                                                         until=at + dt.timedelta(seconds=1))
              if p.posting.fill.order_id == order_id]
    if before:
        same = all(f.price == price for f in before)
        return PostOutcome(key, PostStatus.DUPLICATE if same else PostStatus.CONFLICT,
                           reason=None if same else f"booked before at {before[0].price}")
    held = (await ledger.positions(fund_id)).get(action.symbol, (Decimal(0), Decimal(0)))[0]
    if held == 0:
        return None
    sleeves = {s: q for (s, sym), q in (await ledger.sleeve_positions(fund_id)).items()
               if sym == action.symbol and q != 0 and s != UNATTRIBUTED}
    parts = sorted(sleeves.items())
    rest = held - sum(sleeves.values(), Decimal(0))
    if rest != 0:
        parts.append((UNATTRIBUTED, rest))
    postings = [FillPosting(Fill(
        trade_id=deterministic_id("delisting", key, fund_id, strategy), order_id=order_id,
        fund_id=fund_id, symbol=action.symbol, side=Side.SELL if q > 0 else Side.BUY,
        quantity=abs(q), price=price, ts=at),
        sleeves={strategy: -q} if strategy != UNATTRIBUTED else {}) for strategy, q in parts]
    outcomes = await ledger.post_fills(postings)
    refused = [o for o in outcomes if o.status is not PostStatus.POSTED]
    return refused[0] if refused else PostOutcome(key, PostStatus.POSTED, outcomes[0].entry_id)
