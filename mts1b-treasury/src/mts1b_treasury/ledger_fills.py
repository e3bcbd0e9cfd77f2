"""Posting fills, busts and corrections: the lots each moves and the entries each posts.

Why apart from :mod:`mts1b_treasury.ledger`: these are the steps with accounting in them
(applying fills to lots, replaying a symbol after a bust, restating what a replay moved); the
:class:`~mts1b_treasury.ledger.Ledger` methods only open transactions, lock funds and call them.
Every function runs inside the caller's transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal

import asyncpg
from mts1b_foundation import TaxLotMethod

from mts1b_treasury.errors import LedgerError, TreasuryInputError
from mts1b_treasury.ledger_model import (
    FillPosting,
    Line,
    PostedFill,
    PostOutcome,
    PostStatus,
    Replay,
    fill_lines,
    position_account,
    replay,
    step_fill,
)
from mts1b_treasury.ledger_rows import (
    NewEntry,
    insert_entries,
    insert_fills,
    load_events,
    load_lots,
    next_sequences,
    position_balance,
    posted_fill_from_row,
    write_derived,
)

__all__ = [
    "answer_repeats",
    "current_revision",
    "dedupe_batch",
    "drop_known",
    "post_new_fills",
    "rebuild",
    "restate",
    "reverse",
]

ZERO = Decimal(0)


def dedupe_batch(fills: Sequence[FillPosting], outcomes: list[PostOutcome | None]
                 ) -> dict[str, int]:
    """The index of the first fill of each trade id in the batch. A later fill with the same
    terms stays ``None`` (:func:`answer_repeats` answers it like the first); one with other
    terms is a conflict."""
    first: dict[str, int] = {}
    for i, p in enumerate(fills):
        j = first.setdefault(p.fill.trade_id, i)
        if j != i and fills[j].terms() != p.terms():
            outcomes[i] = PostOutcome(p.fill.trade_id, PostStatus.CONFLICT,
                                      reason="the trade id is in this batch with other terms")
    return first


def answer_repeats(fills: Sequence[FillPosting], first: dict[str, int],
                   outcomes: list[PostOutcome | None]) -> list[PostOutcome]:
    """Answer each repeat within the batch as a duplicate of its first (or, if that one was
    refused, as a conflict too)."""
    answered: list[PostOutcome] = []
    for p, o in zip(fills, outcomes, strict=True):
        if o is None:
            head = outcomes[first[p.fill.trade_id]]
            o = (PostOutcome(head.key, PostStatus.DUPLICATE, head.entry_id)
                 if head is not None and head.status is not PostStatus.CONFLICT
                 else PostOutcome(p.fill.trade_id, PostStatus.CONFLICT,
                                  reason="the trade id was refused earlier in this batch"))
        answered.append(o)
    return answered


# One index probe per trade id, whatever the plan cache holds: a generic plan of the plainer
# "trade_id = ANY($1)" made while the table was small kept scanning it as it grew.
_KNOWN = """
SELECT f.* FROM unnest($1::text[]) AS k(t)
CROSS JOIN LATERAL (SELECT * FROM ledger_fills f WHERE f.trade_id = k.t
                    ORDER BY f.revision DESC LIMIT 1) f
"""


async def drop_known(conn: asyncpg.Connection, fills: Sequence[FillPosting], fresh: list[int],
                      outcomes: list[PostOutcome | None]) -> list[int]:
    """Answer the fills whose trade id the ledger already holds; return the others."""
    rows = await conn.fetch(_KNOWN, [fills[i].fill.trade_id for i in fresh])
    known = {r["trade_id"]: r for r in rows}
    left = []
    for i in fresh:
        row = known.get(fills[i].fill.trade_id)
        if row is None:
            left.append(i)
            continue
        held = posted_fill_from_row(row)
        same = row["status"] == "posted" and held.posting.terms() == fills[i].terms()
        outcomes[i] = (PostOutcome(row["trade_id"], PostStatus.DUPLICATE, held.entry_id) if same
                       else PostOutcome(row["trade_id"], PostStatus.CONFLICT,
                                        reason=f"the trade id is {row['status']} with other "
                                               "terms"))
    return left


async def post_new_fills(conn: asyncpg.Connection, methods: dict[str, TaxLotMethod],
                          postings: Sequence[FillPosting]) -> list[int]:
    """Apply the fills to their lots in order, then write entries, fills and derived state."""
    sequences = await next_sequences(conn, len(postings))
    pairs = {(p.fill.fund_id, p.fill.symbol) for p in postings}
    stored = await load_lots(conn, pairs)
    states = {k: Replay(lots=v) for k, v in stored.items()}
    entries: list[NewEntry] = []
    for posting, sequence in zip(postings, sequences, strict=True):
        f = posting.fill
        state = states[(f.fund_id, f.symbol)]
        lots_before = state.lots
        effect = step_fill(state, methods[f.fund_id], PostedFill(posting, 0, 0, sequence))
        entries.append(fill_entry(posting, fill_lines(posting, lots_before, effect),
                                  f.trade_id))
    entry_ids = await insert_entries(conn, entries)
    await insert_fills(conn, [PostedFill(p, 0, e, s) for p, e, s
                              in zip(postings, entry_ids, sequences, strict=True)])
    await write_derived(conn, states, before=stored)
    return entry_ids


def fill_entry(posting: FillPosting, lines: list[Line], key: str) -> NewEntry:
    f = posting.fill
    if sum((ln.amount for ln in lines), ZERO) != 0:
        raise LedgerError("the fill's entry would not balance", trade_id=f.trade_id)
    memo = f"{f.side.value} {f.quantity} {f.symbol} @ {f.price}"
    return NewEntry(f.fund_id, "fill", key, f.ts, lines, memo)


async def current_revision(conn: asyncpg.Connection, trade_id: str) -> PostedFill | None:
    row = await conn.fetchrow("SELECT * FROM ledger_fills WHERE trade_id = $1 AND "
                              "status = 'posted' FOR UPDATE", trade_id)
    return None if row is None else posted_fill_from_row(row)


async def reverse(conn: asyncpg.Connection, current: PostedFill, kind: str, key: str,
                   memo: str, *, status: str) -> int:
    """Post the exact negation of ``current``'s entry and mark the revision ``status``."""
    lines = [Line(r["account"], -r["amount"], None if r["quantity"] is None else -r["quantity"])
             for r in await conn.fetch("SELECT account, amount, quantity FROM journal_lines "
                                       "WHERE entry_id = $1 ORDER BY line_no", current.entry_id)]
    now = dt.datetime.now(dt.UTC)
    fund_id = current.posting.fill.fund_id
    [entry_id] = await insert_entries(conn, [NewEntry(fund_id, kind, key, now, lines, memo,
                                                      reverses=current.entry_id)])
    await conn.execute("UPDATE ledger_fills SET status = $3 WHERE trade_id = $1 AND revision = $2",
                       current.posting.fill.trade_id, current.revision, status)
    return entry_id


async def rebuild(conn: asyncpg.Connection, method: TaxLotMethod, fund_id: str, symbol: str,
                   *, key: str, extra: PostedFill | None) -> None:
    """Replay the symbol's posted fills and splits (with ``extra``, a correction, at its
    place), post ``extra``'s entry, rewrite the derived state and restate what changed."""
    events = await load_events(conn, fund_id, symbol)
    try:
        state = replay(method, [*events, *([extra] if extra else [])])
    except TreasuryInputError as exc:
        # e.g. a later specific-id sell names the busted buy's lot, or a split now finds a lot
        # opened on or after its date: the books cannot be replayed without that fill.
        raise LedgerError("the remaining fills of this symbol cannot be replayed without it: "
                          "bust or correct the later fills first", trade_id=key,
                          symbol=symbol, refused=exc.context.get("field", "")) from None
    if extra is not None:
        before, effect = state.effects[extra.posting.fill.trade_id]
        lines = fill_lines(extra.posting, before, effect)
        entry = fill_entry(extra.posting, lines, key)
        [entry_id] = await insert_entries(conn, [entry])
        await insert_fills(conn, [PostedFill(extra.posting, extra.revision, entry_id,
                                             extra.sequence)])
    await write_derived(conn, {(fund_id, symbol): state}, before=None)
    await restate(conn, fund_id, symbol, state, key)


async def restate(conn: asyncpg.Connection, fund_id: str, symbol: str, state: Replay,
                   key: str) -> None:
    """Post the difference between the position account and the replayed lots, if any: the
    cost later disposals relieve differently now, against realised PnL."""
    quantity, cost = await position_balance(conn, fund_id, symbol)
    d_quantity = sum((lot.quantity for lot in state.lots), ZERO) - quantity
    d_cost = sum((lot.cost for lot in state.lots), ZERO) - cost
    if not d_quantity and not d_cost:
        return
    lines = [Line(position_account(symbol), d_cost, d_quantity)]
    if d_cost:
        lines.append(Line("realized_pnl", -d_cost))
    await insert_entries(conn, [NewEntry(fund_id, "restatement", f"{key}:{symbol}",
                                         dt.datetime.now(dt.UTC), lines,
                                         "later disposals restated after a replay")])
