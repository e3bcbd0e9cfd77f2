"""The ledger's row writers and readers (asyncpg), each one statement over arrays.

Why a module of its own: :mod:`mts1b_treasury.ledger` decides what to post; this module only
turns entries, lines, fills, lots and sleeves into batched statements (``unnest`` of one array
per column, the project's style) and back. Every function runs inside the caller's transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
from mts1b_foundation import Fill, Side

from mts1b_treasury.ledger_model import (
    FillPosting,
    Line,
    PostedFill,
    Replay,
    SplitEvent,
)
from mts1b_treasury.lots import Disposal, OpenLot

__all__ = [
    "NewEntry",
    "fill_rows_posting",
    "insert_entries",
    "insert_fills",
    "load_events",
    "load_lots",
    "next_sequences",
    "position_balance",
    "write_derived",
]

Pair = tuple[str, str]  # (fund_id, symbol)


@dataclass(frozen=True, slots=True)
class NewEntry:
    """An entry to insert with its lines."""

    fund_id: str
    kind: str
    key: str
    ts: dt.datetime
    lines: Sequence[Line]
    memo: str = ""
    status: str = "posted"
    reverses: int | None = None
    effective: dt.date | None = None


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows to one list per column (the arguments of an ``unnest`` insert)."""
    return [[row[i] for row in rows] for i in range(width)] if rows else [[]] * width


_INSERT_ENTRIES = """
INSERT INTO journal_entries (fund_id, kind, key, effective, ts, status, memo, reverses)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::date[], $5::timestamptz[],
                     $6::text[], $7::text[], $8::bigint[])
RETURNING entry_id, fund_id, kind, key
"""

_INSERT_LINES = """
INSERT INTO journal_lines (entry_id, line_no, fund_id, account, amount, quantity)
SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::text[], $4::text[], $5::numeric[],
                     $6::numeric[])
"""

_INSERT_ACCOUNTS = """
INSERT INTO ledger_accounts (fund_id, account, account_type)
SELECT f, a, 'asset' FROM unnest($1::text[], $2::text[]) AS k(f, a)
ON CONFLICT DO NOTHING
"""


async def insert_entries(conn: asyncpg.Connection, entries: Sequence[NewEntry]) -> list[int]:
    """Insert the entries and their lines (opening the position accounts they name); return
    their ids in order. Nothing here checks the balance: the database does at COMMIT."""
    if not entries:
        return []
    rows = [(e.fund_id, e.kind, e.key, e.effective or e.ts.astimezone(dt.UTC).date(), e.ts,
             e.status, e.memo, e.reverses) for e in entries]
    ids = {(r["fund_id"], r["kind"], r["key"]): int(r["entry_id"])
           for r in await conn.fetch(_INSERT_ENTRIES, *_columns(rows, 8))}
    entry_ids = [ids[(e.fund_id, e.kind, e.key)] for e in entries]
    accounts = sorted({(e.fund_id, ln.account) for e in entries for ln in e.lines
                       if ln.account.startswith("positions:")})
    if accounts:
        await conn.execute(_INSERT_ACCOUNTS, *_columns(accounts, 2))
    lines = [(eid, n, e.fund_id, ln.account, ln.amount, ln.quantity)
             for eid, e in zip(entry_ids, entries, strict=True)
             for n, ln in enumerate(e.lines)]
    if lines:
        await conn.execute(_INSERT_LINES, *_columns(lines, 6))
    return entry_ids


_INSERT_FILLS = """
INSERT INTO ledger_fills (trade_id, revision, status, entry_id, sequence, fund_id, order_id,
                          symbol, side, quantity, price, commission, ts, venue, sleeve_ids,
                          sleeve_qty, lot_ids)
SELECT t, r, 'posted', e, s, f, o, sy, si, q, p, c, ts, v,
       string_to_array(sl, chr(31)), string_to_array(sq, chr(31))::numeric[],
       CASE WHEN li IS NULL THEN NULL ELSE string_to_array(li, chr(31)) END
FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bigint[], $5::text[], $6::text[],
            $7::text[], $8::text[], $9::numeric[], $10::numeric[], $11::numeric[],
            $12::timestamptz[], $13::text[], $14::text[], $15::text[], $16::text[])
     AS u(t, r, e, s, f, o, sy, si, q, p, c, ts, v, sl, sq, li)
"""
_SEP = chr(31)  # the unit separator joins a fill's sleeves (arrays of arrays must be square)


def fill_rows_posting(posted: PostedFill) -> tuple[Any, ...]:
    """A ``ledger_fills`` row: the sleeves and lot ids travel as separator-joined text."""
    p, f = posted.posting, posted.posting.fill
    sleeves = sorted(p.sleeves.items())
    return (f.trade_id, posted.revision, posted.entry_id, posted.sequence, f.fund_id,
            f.order_id, f.symbol, f.side.value, f.quantity, f.price, f.commission, f.ts,
            f.venue, _SEP.join(s for s, _ in sleeves), _SEP.join(str(q) for _, q in sleeves),
            None if p.lot_ids is None else _SEP.join(p.lot_ids))


async def insert_fills(conn: asyncpg.Connection, fills: Sequence[PostedFill]) -> None:
    if fills:
        await conn.execute(_INSERT_FILLS, *_columns([fill_rows_posting(p) for p in fills], 16))


async def next_sequences(conn: asyncpg.Connection, n: int) -> list[int]:
    """``n`` numbers of the event sequence (the replay order of fills and splits)."""
    rows = await conn.fetch("SELECT nextval('ledger_event_seq') FROM generate_series(1, $1)", n)
    return [int(r[0]) for r in rows]


def _lot(r: asyncpg.Record) -> OpenLot:
    return OpenLot(lot_id=r["lot_id"], symbol=r["symbol"], quantity=r["quantity"],
                   cost=r["cost"], fees=r["fees"], acquired=r["acquired"],
                   sequence=int(r["sequence"]))


async def load_lots(conn: asyncpg.Connection, pairs: Iterable[Pair]
                    ) -> dict[Pair, tuple[OpenLot, ...]]:
    """The open lots of each (fund, symbol), in the order they were stored."""
    keys = sorted(set(pairs))
    rows = await conn.fetch(
        "SELECT l.* FROM ledger_lots l JOIN unnest($1::text[], $2::text[]) AS k(f, s) "
        "ON l.fund_id = k.f AND l.symbol = k.s ORDER BY l.acquired, l.sequence, l.lot_id",
        *_columns(keys, 2))
    found: dict[Pair, list[OpenLot]] = {k: [] for k in keys}
    for r in rows:
        found[(r["fund_id"], r["symbol"])].append(_lot(r))
    return {k: tuple(v) for k, v in found.items()}


_DELETE_DERIVED = """
WITH k AS (SELECT * FROM unnest($1::text[], $2::text[]) AS k(f, s)),
     a AS (DELETE FROM ledger_lots l USING k WHERE l.fund_id = k.f AND l.symbol = k.s)
DELETE FROM ledger_sleeve_positions p USING k WHERE p.fund_id = k.f AND p.symbol = k.s
"""
_DELETE_DISPOSALS = """
DELETE FROM ledger_disposals d USING unnest($1::text[], $2::text[]) AS k(f, s)
WHERE d.fund_id = k.f AND d.symbol = k.s
"""
_UPSERT_LOTS = """
INSERT INTO ledger_lots AS l (fund_id, symbol, lot_id, quantity, cost, fees, acquired, sequence)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::numeric[], $5::numeric[],
                     $6::numeric[], $7::date[], $8::bigint[])
ON CONFLICT (fund_id, symbol, lot_id) DO UPDATE SET quantity = EXCLUDED.quantity,
    cost = EXCLUDED.cost, fees = EXCLUDED.fees, acquired = EXCLUDED.acquired,
    sequence = EXCLUDED.sequence
"""
_DELETE_LOTS = """
DELETE FROM ledger_lots l USING unnest($1::text[], $2::text[], $3::text[]) AS k(f, s, i)
WHERE l.fund_id = k.f AND l.symbol = k.s AND l.lot_id = k.i
"""
_INSERT_DISPOSALS = """
INSERT INTO ledger_disposals (fund_id, symbol, trade_id, lot_id, quantity, cost, fees, proceeds,
                              sale_fees, realized, acquired, disposed, sequence)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::numeric[],
                     $6::numeric[], $7::numeric[], $8::numeric[], $9::numeric[], $10::numeric[],
                     $11::date[], $12::date[], $13::bigint[])
"""
_INSERT_SLEEVES = """
INSERT INTO ledger_sleeve_positions AS p (fund_id, strategy_id, symbol, quantity)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::numeric[])
ON CONFLICT (fund_id, strategy_id, symbol) DO UPDATE SET quantity = p.quantity + EXCLUDED.quantity
"""


async def write_derived(conn: asyncpg.Connection, states: dict[Pair, Replay], *,
                        before: dict[Pair, tuple[OpenLot, ...]] | None) -> None:
    """Write the lots, disposals and sleeve positions of each (fund, symbol).

    With ``before`` (the lots the states started from: a batch of new fills) only what
    changed is written - lots removed are deleted, lots new or changed upserted, the new
    disposals added, the sleeve deltas added - so a batch costs what it changes, not what the
    fund holds. Without it (after a replay) the pair's lots, disposals and sleeves are
    replaced wholesale.
    """
    keys = sorted(states)
    if before is None:
        await conn.execute(_DELETE_DERIVED, *_columns(keys, 2))
        await conn.execute(_DELETE_DISPOSALS, *_columns(keys, 2))
    gone, changed = _lot_changes(states, before or {})
    if gone:
        await conn.execute(_DELETE_LOTS, *_columns(gone, 3))
    if changed:
        await conn.execute(_UPSERT_LOTS, *_columns(changed, 8))
    disposals = [_disposal_row(f, seq, d) for (f, s) in keys
                 for seq, d in states[(f, s)].disposals]
    if disposals:
        await conn.execute(_INSERT_DISPOSALS, *_columns(disposals, 13))
    sleeves = [(f, strategy, s, q) for (f, s) in keys
               for strategy, q in sorted(states[(f, s)].sleeves.items())
               if q or before is None]
    if sleeves:
        await conn.execute(_INSERT_SLEEVES, *_columns(sleeves, 4))


def _lot_changes(states: dict[Pair, Replay], before: dict[Pair, tuple[OpenLot, ...]]
                 ) -> tuple[list[tuple[str, str, str]], list[tuple[Any, ...]]]:
    """(lots to delete, lots to upsert) taking each pair from ``before`` to its state."""
    gone: list[tuple[str, str, str]] = []
    changed: list[tuple[Any, ...]] = []
    for (f, s), state in sorted(states.items()):
        old = {lot.lot_id: lot for lot in before.get((f, s), ())}
        now = {lot.lot_id: lot for lot in state.lots}
        gone.extend((f, s, lot_id) for lot_id in old if lot_id not in now)
        changed.extend((f, s, lot.lot_id, lot.quantity, lot.cost, lot.fees, lot.acquired,
                        lot.sequence) for lot_id, lot in now.items() if old.get(lot_id) != lot)
    return gone, changed


def _disposal_row(fund_id: str, sequence: int, d: Disposal) -> tuple[Any, ...]:
    return (fund_id, d.symbol, d.trade_id, d.lot_id, d.quantity, d.cost, d.fees, d.proceeds,
            d.sale_fees, d.realized, d.acquired, d.disposed, sequence)


def disposal_from_row(r: asyncpg.Record) -> Disposal:
    return Disposal(trade_id=r["trade_id"], lot_id=r["lot_id"], symbol=r["symbol"],
                    quantity=r["quantity"], cost=r["cost"], fees=r["fees"],
                    proceeds=r["proceeds"], sale_fees=r["sale_fees"], realized=r["realized"],
                    acquired=r["acquired"], disposed=r["disposed"])


def lot_from_row(r: asyncpg.Record) -> OpenLot:
    return _lot(r)


def posted_fill_from_row(r: asyncpg.Record) -> PostedFill:
    """A ``ledger_fills`` row back to the posting it recorded."""
    fill = Fill(trade_id=r["trade_id"], order_id=r["order_id"], fund_id=r["fund_id"],
                symbol=r["symbol"], side=Side(r["side"]), quantity=r["quantity"],
                price=r["price"], commission=r["commission"], ts=r["ts"], venue=r["venue"])
    sleeves = dict(zip(r["sleeve_ids"], r["sleeve_qty"], strict=True))
    lot_ids = None if r["lot_ids"] is None else tuple(r["lot_ids"])
    return PostedFill(FillPosting(fill, sleeves, lot_ids), int(r["revision"]),
                      int(r["entry_id"]), int(r["sequence"]))


async def load_events(conn: asyncpg.Connection, fund_id: str, symbol: str
                      ) -> list[PostedFill | SplitEvent]:
    """The posted fills and the splits of a fund's symbol: what a replay starts from."""
    fills = await conn.fetch("SELECT * FROM ledger_fills WHERE fund_id = $1 AND symbol = $2 "
                             "AND status = 'posted' ORDER BY sequence", fund_id, symbol)
    splits = await conn.fetch("SELECT ratio, effective, sequence FROM ledger_splits "
                              "WHERE fund_id = $1 AND symbol = $2 ORDER BY sequence",
                              fund_id, symbol)
    events: list[PostedFill | SplitEvent] = [posted_fill_from_row(r) for r in fills]
    events.extend(SplitEvent(r["ratio"], r["effective"], int(r["sequence"])) for r in splits)
    return events


async def position_balance(conn: asyncpg.Connection, fund_id: str, symbol: str
                           ) -> tuple[Decimal, Decimal]:
    """(quantity, book cost) of a position account over its posted lines."""
    row = await conn.fetchrow(  # an aggregate without GROUP BY: always one row
        "SELECT coalesce(sum(l.quantity), 0) AS q, coalesce(sum(l.amount), 0) AS a "
        "FROM journal_lines l JOIN journal_entries e USING (entry_id) "
        "WHERE l.fund_id = $1 AND l.account = $2 AND e.status = 'posted'",
        fund_id, f"positions:{symbol}")
    return (row["q"], row["a"]) if row is not None else (Decimal(0), Decimal(0))
