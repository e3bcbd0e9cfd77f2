"""The treasury's double-entry ledger in PostgreSQL: fills, busts, reservations, flows, lots.

Why a journal and not balances: every change of a fund's books is an entry whose lines sum to
zero (debit positive, credit negative), written once under a key and never edited; balances,
positions and the NAV are sums over posted lines, so any figure can be traced to its entries and
recomputed. PostgreSQL enforces the rules itself (``migrations/0001_ledger.sql``): an entry
that does not balance is refused at COMMIT, lines cannot be updated or deleted, and an entry
only moves from pending to posted or voided.

Accounts per fund (the scheme is in the migration): ``cash``, ``reserved_cash``,
``positions:<SYMBOL>`` (book cost; quantity on the lines beside it), ``realized_pnl``,
``dividends``, ``commissions``, ``borrow``, ``capital`` (flows) and ``transfers`` (between
funds).

Decisions:

* Idempotency: every entry has a key unique per (kind, key, fund); posting the same terms again
  is a ``duplicate`` (nothing written), other terms under a posted key a ``conflict`` (nothing
  of that request written). In :meth:`Ledger.post_fills` a conflict refuses only that fill: the
  other fills of the batch post (a bad message from the bus must not hold up good ones).
* Lots are derived state: each fill rewrites its (fund, symbol) lots with
  :func:`mts1b_treasury.lots.apply_fill` under the fund's method. A bust or correction posts the
  exact reversing entry, then replays the symbol's remaining fills and splits from scratch; if
  that moves later disposals (a bust of an early buy after later sells), the difference is
  posted as a dated ``restatement`` entry (position cost against realised PnL).
* A transfer between funds is two entries under one key, one in each fund, each balanced by the
  fund's ``transfers`` account: each fund's books balance on their own, and the ``transfers``
  accounts of all funds sum to zero.
* Reservations are pending entries (cash to ``reserved_cash``); releasing voids them. Pending
  entries never count in balances; :meth:`Ledger.available_cash` subtracts them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from decimal import Decimal

import asyncpg
from mts1b_foundation import TaxLotMethod

from mts1b_treasury.db import TreasuryDb
from mts1b_treasury.errors import LedgerError, TreasuryInputError
from mts1b_treasury.ledger_fills import (
    answer_repeats,
    current_revision,
    dedupe_batch,
    drop_known,
    post_new_fills,
    rebuild,
    restate,
    reverse,
)
from mts1b_treasury.ledger_model import (
    ACCOUNT_TYPES,
    UNATTRIBUTED,
    FillPosting,
    Line,
    PostedFill,
    PostOutcome,
    PostStatus,
    SplitEvent,
    position_account,
    replay,
)
from mts1b_treasury.ledger_rows import (
    NewEntry,
    disposal_from_row,
    insert_entries,
    load_events,
    lot_from_row,
    next_sequences,
    position_balance,
    posted_fill_from_row,
    write_derived,
)
from mts1b_treasury.lots import Disposal, OpenLot, apply_split

__all__ = ["UNATTRIBUTED", "FillPosting", "Ledger", "PostOutcome", "PostStatus", "PostedFill"]

ZERO = Decimal(0)
_RACE_RETRIES = 3


class _Rollback(Exception):
    """Raised inside a transaction to undo it and answer ``outcome`` instead."""

    def __init__(self, outcome: PostOutcome) -> None:
        super().__init__(outcome.key)
        self.outcome = outcome


class Ledger:
    """The fund ledger on a :class:`~mts1b_treasury.db.TreasuryDb`."""

    def __init__(self, db: TreasuryDb) -> None:
        self._pool = db.pool

    # --- funds ----------------------------------------------------------------------------------

    async def open_fund_accounts(self, fund_id: str, method: TaxLotMethod) -> None:
        """Open ``fund_id``'s accounts with its lot method (again: nothing happens).

        The method cannot change afterwards (:class:`LedgerError`): lots are replayed under it,
        so a new method would silently restate every past disposal.
        """
        if not fund_id:
            raise TreasuryInputError("fund_id", fund_id, "must not be empty")
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("INSERT INTO ledger_funds (fund_id, lot_method) VALUES ($1, $2) "
                               "ON CONFLICT DO NOTHING", fund_id, TaxLotMethod(method).value)
            held = await conn.fetchval("SELECT lot_method FROM ledger_funds WHERE fund_id = $1",
                                       fund_id)
            if held != TaxLotMethod(method).value:
                raise LedgerError("the fund's ledger is open with another lot method",
                                  fund_id=fund_id, method=str(held))
            await conn.execute(
                "INSERT INTO ledger_accounts (fund_id, account, account_type) "
                "SELECT $1, a, t FROM unnest($2::text[], $3::text[]) AS k(a, t) "
                "ON CONFLICT DO NOTHING", fund_id, list(ACCOUNT_TYPES),
                list(ACCOUNT_TYPES.values()))

    @staticmethod
    async def _lock_funds(conn: asyncpg.Connection, fund_ids: Collection[str]
                          ) -> dict[str, TaxLotMethod]:
        """Lock the funds' rows (in id order: no deadlock) and return their lot methods.

        Why a lock: lots are read, changed in Python and written back, so two postings of one
        fund must not interleave.
        """
        rows = await conn.fetch("SELECT fund_id, lot_method FROM ledger_funds "
                                "WHERE fund_id = ANY($1::text[]) ORDER BY fund_id FOR UPDATE",
                                sorted(fund_ids))
        methods = {r["fund_id"]: TaxLotMethod(r["lot_method"]) for r in rows}
        for fund_id in sorted(fund_ids):
            if fund_id not in methods:
                raise TreasuryInputError("fund_id", fund_id, "the fund has no ledger accounts: "
                                         "open_fund_accounts first")
        return methods

    # --- fills ----------------------------------------------------------------------------------

    async def post_fills(self, fills: Sequence[FillPosting]) -> list[PostOutcome]:
        """Post a batch of fills in one transaction, each trade id exactly once.

        Per fill: ``posted``; ``duplicate`` (posted before, or earlier in this batch, with the
        same terms); ``conflict`` (the trade id holds other terms, or was busted: nothing of
        this fill is written, the rest of the batch posts). An unknown fund or a fill the lots
        refuse (a specific-id fill naming no open lot) raises and posts nothing of the batch.
        """
        if not fills:
            return []
        for attempt in range(_RACE_RETRIES):
            try:
                return await self._post_fills_once(fills)
            except asyncpg.UniqueViolationError:
                # The same new trade id was committed meanwhile by a batch of another fund
                # (the fund locks do not serialise those): the next attempt sees it and answers
                # duplicate or conflict.
                if attempt == _RACE_RETRIES - 1:
                    raise LedgerError("a trade id of this batch kept being posted concurrently",
                                      attempts=_RACE_RETRIES) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _post_fills_once(self, fills: Sequence[FillPosting]) -> list[PostOutcome]:
        outcomes: list[PostOutcome | None] = [None] * len(fills)
        first = dedupe_batch(fills, outcomes)
        fresh = sorted(first.values())
        async with self._pool.acquire() as conn, conn.transaction():
            methods = await self._lock_funds(conn, {fills[i].fill.fund_id for i in fresh})
            fresh = await drop_known(conn, fills, fresh, outcomes)
            if fresh:
                ids = await post_new_fills(conn, methods, [fills[i] for i in fresh])
                for i, entry_id in zip(fresh, ids, strict=True):
                    outcomes[i] = PostOutcome(fills[i].fill.trade_id, PostStatus.POSTED, entry_id)
        return answer_repeats(fills, first, outcomes)

    async def bust(self, trade_id: str, *, reason: str) -> PostOutcome:
        """Cancel a posted fill: post the exact reversal of its entry, then rebuild the fund's
        lots of that symbol by replaying its other fills (restating later disposals if they
        change). A second bust of the same trade is a ``duplicate``."""
        async with self._pool.acquire() as conn, conn.transaction():
            current = await current_revision(conn, trade_id)
            if current is None:
                bust = await conn.fetchval("SELECT entry_id FROM journal_entries "
                                           "WHERE kind = 'bust' AND key = $1", trade_id)
                if bust is None:
                    raise TreasuryInputError("trade_id", trade_id, "no fill with this trade id")
                return PostOutcome(trade_id, PostStatus.DUPLICATE, int(bust))
            f = current.posting.fill
            method = (await self._lock_funds(conn, [f.fund_id]))[f.fund_id]
            entry_id = await reverse(conn, current, "bust", trade_id, reason, status="busted")
            await rebuild(conn, method, f.fund_id, f.symbol, key=trade_id, extra=None)
        return PostOutcome(trade_id, PostStatus.POSTED, entry_id)

    async def correct(self, trade_id: str, new: FillPosting) -> PostOutcome:
        """Replace a posted fill's terms: reverse its entry (kind ``correction``), post the new
        terms at the original fill's place in the replay order, and restate later disposals
        that change. The trade id and the fund must stay; the symbol may change. Correcting
        to the terms already posted is a ``duplicate``."""
        if new.fill.trade_id != trade_id:
            raise TreasuryInputError("new.fill.trade_id", new.fill.trade_id,
                                     f"a correction keeps the trade id {trade_id!r}")
        async with self._pool.acquire() as conn, conn.transaction():
            current = await current_revision(conn, trade_id)
            if current is None:
                raise TreasuryInputError("trade_id", trade_id, "no posted fill with this id")
            old = current.posting.fill
            if new.fill.fund_id != old.fund_id:
                raise TreasuryInputError("new.fill.fund_id", new.fill.fund_id,
                                         f"a correction keeps the fund {old.fund_id!r}")
            if new.terms() == current.posting.terms():
                return PostOutcome(trade_id, PostStatus.DUPLICATE, current.entry_id)
            method = (await self._lock_funds(conn, [old.fund_id]))[old.fund_id]
            revision = current.revision + 1
            key = f"{trade_id}#{revision}"
            entry_id = await reverse(conn, current, "correction", key, "corrected",
                                      status="corrected")
            extra = PostedFill(new, revision, 0, current.sequence)
            if new.fill.symbol != old.symbol:
                await rebuild(conn, method, old.fund_id, old.symbol, key=key, extra=None)
            await rebuild(conn, method, old.fund_id, new.fill.symbol, key=key, extra=extra)
        return PostOutcome(trade_id, PostStatus.POSTED, entry_id)

    # --- reservations ---------------------------------------------------------------------------

    async def reserve(self, order_id: str, fund_id: str, amount: Decimal) -> PostOutcome:
        """Set ``amount`` of cash aside for an open order: a PENDING entry (cash to
        ``reserved_cash``) that no balance counts until it is voided by :meth:`release`.
        Reserving again with the same terms is a duplicate; other terms a conflict."""
        _positive("amount", amount)
        when = dt.datetime.now(dt.UTC)
        lines = [Line("reserved_cash", amount), Line("cash", -amount)]
        return await self._post_keyed(fund_id, "reservation", order_id, when, lines,
                                      f"reserve for order {order_id}", status="pending")

    async def release(self, order_id: str) -> PostOutcome:
        """Void the reservation of ``order_id`` (on its fill or cancel); again: duplicate."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch("SELECT entry_id, status FROM journal_entries WHERE kind = "
                                    "'reservation' AND key = $1 FOR UPDATE", order_id)
            if not rows:
                raise TreasuryInputError("order_id", order_id, "no reservation for this order")
            pending = [int(r["entry_id"]) for r in rows if r["status"] == "pending"]
            if not pending:
                return PostOutcome(order_id, PostStatus.DUPLICATE, int(rows[0]["entry_id"]))
            await conn.execute("UPDATE journal_entries SET status = 'voided' "
                               "WHERE entry_id = ANY($1::bigint[])", pending)
        return PostOutcome(order_id, PostStatus.POSTED, pending[0])

    async def available_cash(self, fund_id: str) -> Decimal:
        """Posted cash less the cash pending reservations hold."""
        value = await self._pool.fetchval(
            "SELECT coalesce(sum(l.amount), 0) FROM journal_lines l JOIN journal_entries e "
            "USING (entry_id) WHERE l.fund_id = $1 AND l.account = 'cash' "
            "AND e.status IN ('posted', 'pending')", fund_id)
        return Decimal(value)

    # --- flows, dividends, borrow, splits ------------------------------------------------------

    async def contribute(self, fund_id: str, amount: Decimal, *, key: str,
                         when: dt.datetime) -> PostOutcome:
        """Capital paid into the fund: Dr cash, Cr capital."""
        _positive("amount", amount)
        return await self._post_keyed(fund_id, "flow", key, _utc("when", when),
                                      [Line("cash", amount), Line("capital", -amount)],
                                      "contribution")

    async def withdraw(self, fund_id: str, amount: Decimal, *, key: str,
                       when: dt.datetime) -> PostOutcome:
        """Capital paid out of the fund: Dr capital, Cr cash. Contributions and withdrawals
        share the kind ``flow``, so one key cannot be both."""
        _positive("amount", amount)
        return await self._post_keyed(fund_id, "flow", key, _utc("when", when),
                                      [Line("capital", amount), Line("cash", -amount)],
                                      "withdrawal")

    async def transfer(self, from_fund: str, to_fund: str, amount: Decimal, *, key: str,
                       when: dt.datetime) -> PostOutcome:
        """Move cash between funds: one entry in each fund under ``key`` (Dr transfers, Cr cash
        in ``from_fund``; Dr cash, Cr transfers in ``to_fund``), both or neither."""
        _positive("amount", amount)
        if from_fund == to_fund:
            raise TreasuryInputError("to_fund", to_fund, "must differ from from_fund")
        when = _utc("when", when)
        legs = [(from_fund, [Line("transfers", amount), Line("cash", -amount)],
                 f"transfer to {to_fund}"),
                (to_fund, [Line("cash", amount), Line("transfers", -amount)],
                 f"transfer from {from_fund}")]
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await self._lock_funds(conn, [from_fund, to_fund])
                outcomes = [await _post_keyed_in(conn, fund, "transfer", key, when, lines, memo)
                            for fund, lines, memo in legs]
                refused = [o for o in outcomes if o.status is not outcomes[0].status]
                if refused or outcomes[0].status is PostStatus.CONFLICT:
                    raise _Rollback(PostOutcome(key, PostStatus.CONFLICT,
                                                reason="the key holds another transfer"))
        except _Rollback as rollback:
            return rollback.outcome
        return outcomes[0]

    async def post_dividend(self, fund_id: str, symbol: str, per_share: Decimal,
                            ex_date: dt.date, pay_date: dt.date, key: str) -> PostOutcome:
        """A cash dividend on the position held at the start of ``ex_date`` (posted lines
        effective before it), booked on ``pay_date``: Dr cash, Cr dividends; a short pays it
        (the signs follow the quantity). Nothing held: an entry without lines records that the
        dividend was processed."""
        _positive("per_share", per_share)
        if pay_date < ex_date:
            raise TreasuryInputError("pay_date", pay_date, f"is before ex_date {ex_date}")
        held = await self._pool.fetchval(
            "SELECT coalesce(sum(l.quantity), 0) FROM journal_lines l JOIN journal_entries e "
            "USING (entry_id) WHERE l.fund_id = $1 AND l.account = $2 AND e.status = 'posted' "
            "AND e.effective < $3", fund_id, position_account(symbol), ex_date)
        amount = Decimal(held) * per_share
        lines = [Line("cash", amount), Line("dividends", -amount)] if amount else []
        return await self._post_keyed(fund_id, "dividend", key, _midnight(pay_date), lines,
                                      f"dividend {symbol} {per_share}/share on {held}")

    async def post_borrow(self, fund_id: str, symbol: str, amount: Decimal, key: str,
                          when: dt.datetime) -> PostOutcome:
        """A stock-borrow fee for a short: Dr borrow, Cr cash."""
        _positive("amount", amount)
        return await self._post_keyed(fund_id, "borrow", key, _utc("when", when),
                                      [Line("borrow", amount), Line("cash", -amount)],
                                      f"borrow fee {symbol}")

    async def apply_split(self, symbol: str, ratio: Decimal, effective: dt.date,
                          key: str) -> list[PostOutcome]:
        """Split ``symbol`` (``ratio`` new shares per old) in every fund holding lots of it: the
        lots' quantities change, their cost does not, and each fund gets a dated ``split``
        entry (a position line of amount zero carrying the quantity change). Returns one
        outcome per fund changed (none when no fund holds the symbol); the same key again
        answers one ``duplicate`` outcome, or ``conflict`` with other terms. Fills of the
        ex-date or later posted before the split (the fills of a replayed session's open, booked
        before its tick) are replayed after it: they were made in post-split shares."""
        _positive("ratio", ratio)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("LOCK TABLE ledger_split_actions IN SHARE ROW EXCLUSIVE MODE")
            held = await conn.fetchrow("SELECT * FROM ledger_split_actions WHERE key = $1", key)
            if held is not None:
                same = (held["symbol"], held["ratio"], held["effective"]) == (symbol, ratio,
                                                                              effective)
                return [PostOutcome(key, PostStatus.DUPLICATE if same else PostStatus.CONFLICT)]
            await conn.execute("INSERT INTO ledger_split_actions VALUES ($1, $2, $3, $4)",
                               key, symbol, ratio, effective)
            await conn.fetch("SELECT 1 FROM ledger_funds ORDER BY fund_id FOR UPDATE")
            funds = [r[0] for r in await conn.fetch(
                "SELECT DISTINCT fund_id FROM ledger_lots WHERE symbol = $1 ORDER BY 1", symbol)]
            return [await _split_fund(conn, fund, symbol, ratio, effective, key)
                    for fund in funds]

    # --- the idempotent keyed entry -------------------------------------------------------------

    async def _post_keyed(self, fund_id: str, kind: str, key: str, when: dt.datetime,
                          lines: list[Line], memo: str, *, status: str = "posted"
                          ) -> PostOutcome:
        async with self._pool.acquire() as conn, conn.transaction():
            await self._lock_funds(conn, [fund_id])
            return await _post_keyed_in(conn, fund_id, kind, key, when, lines, memo, status)

    # --- queries --------------------------------------------------------------------------------

    async def balances(self, fund_id: str, *, as_of: dt.datetime | None = None
                       ) -> dict[str, Decimal]:
        """Every account of the fund with its posted balance (entries stamped at or before
        ``as_of`` when given); debit balances positive, credit negative."""
        rows = await self._pool.fetch(
            "SELECT a.account, coalesce(sum(l.amount) FILTER (WHERE e.status = 'posted' AND "
            "($2::timestamptz IS NULL OR e.ts <= $2)), 0) AS balance "
            "FROM ledger_accounts a LEFT JOIN journal_lines l ON l.fund_id = a.fund_id AND "
            "l.account = a.account LEFT JOIN journal_entries e ON e.entry_id = l.entry_id "
            "WHERE a.fund_id = $1 GROUP BY a.account ORDER BY a.account", fund_id, as_of)
        return {r["account"]: r["balance"] for r in rows}

    async def positions(self, fund_id: str) -> dict[str, tuple[Decimal, Decimal]]:
        """symbol -> (quantity, book cost) of the fund's open positions (posted lines)."""
        rows = await self._pool.fetch(
            "SELECT substr(l.account, 11) AS symbol, sum(l.quantity) AS q, sum(l.amount) AS c "
            "FROM journal_lines l JOIN journal_entries e USING (entry_id) WHERE l.fund_id = $1 "
            "AND l.account LIKE 'positions:%' AND e.status = 'posted' GROUP BY l.account "
            "HAVING sum(l.quantity) <> 0 OR sum(l.amount) <> 0 ORDER BY 1", fund_id)
        return {r["symbol"]: (r["q"], r["c"]) for r in rows}

    async def sleeve_positions(self, fund_id: str) -> dict[tuple[str, str], Decimal]:
        """(strategy_id, symbol) -> quantity; unattributed fills under :data:`UNATTRIBUTED`."""
        rows = await self._pool.fetch(
            "SELECT strategy_id, symbol, quantity FROM ledger_sleeve_positions WHERE fund_id = $1 "
            "AND quantity <> 0 ORDER BY strategy_id, symbol", fund_id)
        return {(r["strategy_id"], r["symbol"]): r["quantity"] for r in rows}

    async def lots(self, fund_id: str, symbol: str) -> list[OpenLot]:
        rows = await self._pool.fetch("SELECT * FROM ledger_lots WHERE fund_id = $1 AND "
                                      "symbol = $2 ORDER BY acquired, sequence, lot_id",
                                      fund_id, symbol)
        return [lot_from_row(r) for r in rows]

    async def disposals(self, fund_id: str, *, symbol: str | None = None,
                        since: dt.date | None = None, until: dt.date | None = None
                        ) -> list[Disposal]:
        """The fund's disposals (disposed in ``[since, until)`` when given), in posting order."""
        rows = await self._pool.fetch(
            "SELECT * FROM ledger_disposals WHERE fund_id = $1 AND ($2::text IS NULL OR "
            "symbol = $2) AND ($3::date IS NULL OR disposed >= $3) AND ($4::date IS NULL OR "
            "disposed < $4) ORDER BY sequence, lot_id", fund_id, symbol, since, until)
        return [disposal_from_row(r) for r in rows]

    async def fills(self, fund_id: str, *, since: dt.datetime | None = None,
                    until: dt.datetime | None = None) -> list[PostedFill]:
        """The fund's posted fills (current revisions, busted ones left out) with their sleeve
        split, executed in ``[since, until)`` when given, in posting order."""
        rows = await self._pool.fetch(
            "SELECT * FROM ledger_fills WHERE fund_id = $1 AND status = 'posted' AND "
            "($2::timestamptz IS NULL OR ts >= $2) AND ($3::timestamptz IS NULL OR ts < $3) "
            "ORDER BY sequence", fund_id, since, until)
        return [posted_fill_from_row(r) for r in rows]

    async def trial_balance(self) -> dict[str, Decimal]:
        """fund_id -> the sum of all its posted lines: zero for every fund of sound books."""
        rows = await self._pool.fetch(
            "SELECT f.fund_id, coalesce(sum(l.amount) FILTER (WHERE e.status = 'posted'), 0) "
            "AS total FROM ledger_funds f LEFT JOIN journal_entries e ON e.fund_id = f.fund_id "
            "LEFT JOIN journal_lines l ON l.entry_id = e.entry_id GROUP BY f.fund_id "
            "ORDER BY f.fund_id")
        return {r["fund_id"]: r["total"] for r in rows}


async def _post_keyed_in(conn: asyncpg.Connection, fund_id: str, kind: str, key: str,
                         when: dt.datetime, lines: list[Line], memo: str,
                         status: str = "posted") -> PostOutcome:
    """Post one entry under (kind, key, fund) unless it is there: the same lines and status
    answer ``duplicate``, other ones ``conflict``."""
    held = await conn.fetchrow("SELECT entry_id, status FROM journal_entries WHERE kind = $1 "
                               "AND key = $2 AND fund_id = $3", kind, key, fund_id)
    if held is None:
        [entry_id] = await insert_entries(conn, [NewEntry(fund_id, kind, key, when, lines, memo,
                                                          status=status)])
        return PostOutcome(key, PostStatus.POSTED, entry_id)
    entry_id = int(held["entry_id"])
    stored = [Line(r["account"], r["amount"], r["quantity"]) for r in await conn.fetch(
        "SELECT account, amount, quantity FROM journal_lines WHERE entry_id = $1 "
        "ORDER BY line_no", entry_id)]
    if stored == lines:
        return PostOutcome(key, PostStatus.DUPLICATE, entry_id)
    return PostOutcome(key, PostStatus.CONFLICT, entry_id,
                       reason=f"the key holds another {kind} entry")


async def _split_fund(conn: asyncpg.Connection, fund_id: str, symbol: str, ratio: Decimal,
                      effective: dt.date, key: str) -> PostOutcome:
    """One fund's part of a split: its lots rewritten, its sleeves scaled, a dated entry.

    When fills of the ex-date or later are posted already (a replay's session tick books the
    session's actions after the fills of its open), the symbol is replayed with the split
    before them (:func:`~mts1b_treasury.ledger_model.replay_order`) instead: those fills were
    made in post-split shares. The position's quantity moves by what the replay says, and a
    disposal of those fills that now relieves other cost is restated against realised PnL.
    """
    later = await conn.fetchval("SELECT count(*) FROM ledger_fills WHERE fund_id = $1 AND "
                                "symbol = $2 AND status = 'posted' AND ts >= $3",
                                fund_id, symbol, _midnight(effective))
    if later:
        return await _split_fund_replayed(conn, fund_id, symbol, ratio, effective, key)
    rows = await conn.fetch("SELECT * FROM ledger_lots WHERE fund_id = $1 AND symbol = $2 "
                            "ORDER BY acquired, sequence, lot_id", fund_id, symbol)
    before = [lot_from_row(r) for r in rows]
    after = apply_split(before, ratio=ratio, effective=effective)
    change = sum((lot.quantity for lot in after), ZERO) - sum((lot.quantity for lot in before),
                                                               ZERO)
    [entry_id] = await insert_entries(conn, [NewEntry(
        fund_id, "split", key, _midnight(effective), [Line(position_account(symbol), ZERO,
                                                           change)],
        f"split {symbol} {ratio}:1", effective=effective)])
    [sequence] = [int(r[0]) for r in await conn.fetch("SELECT nextval('ledger_event_seq')")]
    await conn.execute("INSERT INTO ledger_splits VALUES ($1, $2, $3, $4, $5, $6, $7)",
                       fund_id, symbol, key, ratio, effective, sequence, entry_id)
    await conn.execute("DELETE FROM ledger_lots WHERE fund_id = $1 AND symbol = $2",
                       fund_id, symbol)
    await conn.executemany(
        "INSERT INTO ledger_lots (fund_id, symbol, lot_id, quantity, cost, fees, acquired, "
        "sequence) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        [(fund_id, symbol, lot.lot_id, lot.quantity, lot.cost, lot.fees, lot.acquired,
          lot.sequence) for lot in after])
    await conn.execute("UPDATE ledger_sleeve_positions SET quantity = quantity * $3 "
                       "WHERE fund_id = $1 AND symbol = $2", fund_id, symbol, ratio)
    return PostOutcome(key, PostStatus.POSTED, entry_id)


async def _split_fund_replayed(conn: asyncpg.Connection, fund_id: str, symbol: str,
                               ratio: Decimal, effective: dt.date, key: str) -> PostOutcome:
    """:func:`_split_fund` when fills on or after the ex-date are posted: replay, then post."""
    method = TaxLotMethod(await conn.fetchval(
        "SELECT lot_method FROM ledger_funds WHERE fund_id = $1", fund_id))
    [sequence] = await next_sequences(conn, 1)
    events = [*await load_events(conn, fund_id, symbol), SplitEvent(ratio, effective, sequence)]
    try:
        state = replay(method, events)
    except TreasuryInputError as exc:
        raise LedgerError("the fund's fills of this symbol cannot be replayed across the "
                          "split", fund_id=fund_id, symbol=symbol,
                          refused=exc.context.get("field", "")) from None
    quantity, _ = await position_balance(conn, fund_id, symbol)
    change = sum((lot.quantity for lot in state.lots), ZERO) - quantity
    [entry_id] = await insert_entries(conn, [NewEntry(
        fund_id, "split", key, _midnight(effective), [Line(position_account(symbol), ZERO,
                                                           change)],
        f"split {symbol} {ratio}:1", effective=effective)])
    await conn.execute("INSERT INTO ledger_splits VALUES ($1, $2, $3, $4, $5, $6, $7)",
                       fund_id, symbol, key, ratio, effective, sequence, entry_id)
    await write_derived(conn, {(fund_id, symbol): state}, before=None)
    await restate(conn, fund_id, symbol, state, key)
    return PostOutcome(key, PostStatus.POSTED, entry_id)


def _positive(field: str, value: Decimal) -> None:
    if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
        raise TreasuryInputError(field, value, "must be a positive, finite Decimal")


def _utc(field: str, when: dt.datetime) -> dt.datetime:
    if when.tzinfo is None:
        raise TreasuryInputError(field, when, "must be timezone-aware")
    return when.astimezone(dt.UTC)


def _midnight(day: dt.date) -> dt.datetime:
    """The timestamp of an entry dated ``day`` (balances ``as_of`` compare timestamps)."""
    return dt.datetime.combine(day, dt.time(0), dt.UTC)
