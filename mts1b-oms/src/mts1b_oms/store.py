"""PostgreSQL persistence (asyncpg): versioned migrations, orders, events, outbox.

Every method that changes state writes the change, the events announcing it and their outbox rows
in **one transaction**; :class:`~mts1b_oms.outbox.OutboxRelay` publishes the outbox afterwards,
so an event is never lost (it is committed with the change) and never invented (it is not
published unless the change committed).

All tables live in one PostgreSQL schema (default ``mts_oms``): tests use a fresh schema each
and drop it afterwards. Migrations are the numbered ``migrations/NNNN_*.sql`` files of this
package, applied in order under an advisory lock and recorded in ``schema_migrations``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
from mts1b_foundation import (
    Alert,
    Denial,
    Fill,
    Order,
    OrderStatus,
    ReplaceRequest,
    Side,
    TradingState,
    TradingStateChange,
)
from mts1b_foundation.subjects import check_publishable
from mts1b_platform.dsn import connecting, dsn_message
from mts1b_platform.migrations import (
    applied_versions,
    apply_migrations,
    create_schema,
    package_migrations,
    schema_name_error,
)
from mts1b_platform.signing import claim_nonce_in

from mts1b_oms.groupcommit import GroupCommit
from mts1b_oms.orderstore import (
    RETRYABLE,
    Attempt,
    CancelOutcome,
    KeyClaim,
    OutboxItem,
    OutboxRow,
    SplitRecord,
    StaleState,
    StateWrite,
    StoreError,
    Sweep,
    SweepOrder,
    Transfer,
)
from mts1b_oms.positions import PositionState, SplitStep
from mts1b_oms.sleeves import sleeve_fills
from mts1b_oms.state import OrderState

__all__ = ["OutboxItem", "OutboxRow", "StaleState", "Store", "StoreError", "state_from_json",
           "state_to_json"]

_LOCK_KEY = 0x6D74_736F  # advisory lock id for migrations ("mtso")
_TERMINAL = [s.value for s in OrderStatus if s.is_terminal]
_RETRYABLE = sorted(s.value for s in RETRYABLE)


_ORDER_JSON: dict[int, tuple[Order, str]] = {}
_ORDER_JSON_SIZE = 4096


def _order_json(order: Order) -> str:
    """``order.model_dump_json()``, remembered for the same order object: an order's state is
    written at least twice with the same (frozen) order in it - pending, then the broker's
    answer - and its JSON was half of each write's serialising. Keyed by identity and holding
    the order itself, so a key cannot be reused by another object while it is remembered; the
    oldest entries go first. Sound because nothing changes an order in place (it is frozen;
    its ``tags`` and ``sleeves`` dicts are never written to after validation): a changed order
    is a new object."""
    hit = _ORDER_JSON.get(id(order))
    if hit is not None and hit[0] is order:
        return hit[1]
    text = order.model_dump_json()
    if len(_ORDER_JSON) >= _ORDER_JSON_SIZE:
        del _ORDER_JSON[next(iter(_ORDER_JSON))]
    _ORDER_JSON[id(order)] = (order, text)
    return text


def state_to_json(s: OrderState) -> str:
    """The ``state`` column: the order, its status and fills, as one JSON object.

    Written on every change of every order, so it is put together from pydantic's own JSON of
    each model rather than dumped to dicts and encoded again (a third of the time).
    """
    fills = ",".join(f.model_dump_json() for f in s.fills.values())
    replace = s.pending_replace.model_dump_json() if s.pending_replace else "null"
    return (f'{{"order":{_order_json(s.order)},'
            f'"status":{_json_enum(s.status)},"prior":{_json_enum(s.prior)},'
            f'"fills":[{fills}],"busted":{json.dumps(sorted(s.busted)) if s.busted else "[]"},'
            f'"pending_replace":{replace},"sequence":{int(s.sequence)}'
            f'{_credits_json(s.credits)}}}')


def _credits_json(credits: Mapping[str, Mapping[str, Decimal]]) -> str:
    """``,"credits":{trade: {sleeve: "signed"}}`` for a sleeve order, else nothing (the
    state of an order without sleeves stays as it was)."""
    if not credits:
        return ""
    return ',"credits":' + json.dumps(
        {t: {s: str(q) for s, q in c.items()} for t, c in credits.items()})


def _json_enum(value: OrderStatus | None) -> str:
    return "null" if value is None else _STATUS_JSON[value]


_STATUS_JSON = {s: json.dumps(s.value) for s in OrderStatus}


def state_from_json(text: str | dict[str, Any]) -> OrderState:
    d = json.loads(text) if isinstance(text, str) else text
    fills = [Fill.model_validate(f) for f in d["fills"]]
    return OrderState(
        order=Order.model_validate(d["order"]),
        status=OrderStatus(d["status"]) if d["status"] else None,
        prior=OrderStatus(d["prior"]) if d["prior"] else None,
        fills={f.trade_id: f for f in fills},
        busted=frozenset(d["busted"]),
        pending_replace=(ReplaceRequest.model_validate(d["pending_replace"])
                         if d["pending_replace"] else None),
        sequence=int(d["sequence"]),
        credits={t: {s: Decimal(q) for s, q in c.items()}
                 for t, c in d.get("credits", {}).items()},
    )


class Store:
    """The OMS's system of record. Create with :meth:`open`; close with :meth:`close`."""

    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self.pool = pool
        self.schema = schema
        self._creates: GroupCommit[_NewOrder, KeyClaim] = GroupCommit(
            self._write_creates, keys=lambda item: [item.row[0]])  # one claim per key
        self._changes: GroupCommit[_Change, bool] = GroupCommit(self._write_changes,
                                                                keys=_change_keys)
        self._commit_listeners: list[Callable[[list[OutboxRow]], None]] = []
        self.fresh_batches = 0  # create batches that took the short statement (tests)

    def on_commit(self, listener: Callable[[list[OutboxRow]], None]) -> Callable[[], None]:
        """Call ``listener`` with the outbox rows of every write of this store, right after it
        commits (in commit order); returns the function that stops it.

        The relay publishes from here without reading the rows back, so a busy OMS spends one
        statement per relayed batch (marking it published) instead of three. The table stays
        the system of record: what a listener misses (a crash, another process's writes) is
        still found there.
        """
        self._commit_listeners.append(listener)

        def remove() -> None:
            if listener in self._commit_listeners:
                self._commit_listeners.remove(listener)

        return remove

    def _committed(self, rows: list[OutboxRow]) -> None:
        if rows:
            for listener in list(self._commit_listeners):
                listener(rows)

    @classmethod
    async def open(cls, dsn: str, *, schema: str = "mts_oms", min_size: int = 2,
                   max_size: int = 10) -> Store:
        """Connect, create ``schema`` if needed and apply pending migrations. A malformed DSN
        or a server that cannot be reached is a :class:`StoreError` in one line
        (:func:`mts1b_platform.dsn.connecting`)."""
        if (problem := schema_name_error(schema)) is not None:
            raise StoreError(problem, schema=schema)
        with connecting(dsn, StoreError, _dsn_error):  # names the server, never the password
            conn = await asyncpg.connect(dsn)
        try:
            await create_schema(conn, schema)
        finally:
            await conn.close()
        # Custom plans: each statement is planned for the tables as they are now. The OMS's
        # tables grow by thousands of rows a minute, and PostgreSQL keeps a prepared
        # statement's generic plan - made once, when the tables may have been nearly empty -
        # until an ANALYZE invalidates it, which may be never (autovacuum off or behind). With
        # such a plan a batch of order changes cost more the larger orders grew: 1.1 ms of
        # server time at 300 orders, 4.7 ms at 12,300. Planning each batch costs far less.
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size,
                                         server_settings={"search_path": schema,
                                                          "plan_cache_mode": "force_custom_plan"},
                                         reset=_keep_session)
        store = cls(pool, schema)
        await store.migrate()
        return store

    async def close(self) -> None:
        await self.pool.close()

    async def drop_schema(self) -> None:
        """Remove every table of this store (tests)."""
        async with self.pool.acquire() as conn:
            await conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")

    async def migrate(self) -> list[int]:
        """Apply the migrations not yet recorded; return the versions applied now."""
        return await apply_migrations(self.pool, package_migrations("mts1b_oms"), _LOCK_KEY)

    async def migration_versions(self) -> list[int]:
        return await applied_versions(self.pool)

    # --- writes ---------------------------------------------------------------------------------
    #
    # Orders are created and changed through two GroupCommit batchers: the writes that arrive
    # while a statement is in flight go out together as the next statement. Each statement is
    # a chain of data-modifying CTEs over arrays (unnest) whose inserts keep only the rows of
    # orders whose first step succeeded (the idempotency key was claimed; the stored sequence
    # still matched). PostgreSQL runs one statement atomically, so a batch is all-or-nothing
    # and every order in it is exactly as durable as with its own BEGIN ... COMMIT; what the
    # orders share is the round trip, the plan and the WAL flush, which were most of the cost.

    @staticmethod
    async def _outbox(conn: asyncpg.Connection, items: Iterable[OutboxItem]) -> list[OutboxRow]:
        """Insert outbox rows inside the caller's transaction; return them for
        :meth:`_committed` once that commits."""
        _ids, msg_ids, subjects, payloads = _outbox_rows("", items)
        if msg_ids:
            await conn.execute(_INSERT_OUTBOX, msg_ids, subjects, payloads)
        return list(zip(msg_ids, subjects, payloads, strict=True))

    async def create_order(self, state: OrderState, outbox: Sequence[OutboxItem], *,
                           now: dt.datetime, window: dt.timedelta,
                           denial: tuple[str, Denial] | None = None,
                           content_hash: str | None = None) -> KeyClaim:
        """Insert a new order with its first events and its content hash, claiming its
        idempotency key.

        The key is taken when it is free, expired, or held by an order that ended DENIED or
        REJECTED (the new order then records that one as ``previous_order_id``); otherwise
        nothing is written and the claim names the holder and its content hash.
        """
        o = state.order
        row = (o.idempotency_key, state.order_id, now, o.fund_id, o.strategy_id,
               o.instrument.symbol, o.side.value, _status(state), o.quantity,
               state.filled_quantity, state.sequence, state_to_json(state), content_hash)
        denial_row = None
        if denial is not None:
            event_id, d = denial
            denial_row = (state.order_id, event_id, d.code.value, d.gate, d.message,
                          json.dumps(d.context))
        events, outbox_rows = _event_rows(state.order_id, outbox)
        return await self._creates.run(_NewOrder(row, window, denial_row, events, outbox_rows))

    async def update_order(self, before_sequence: int, state: OrderState,
                           outbox: Sequence[OutboxItem], *, now: dt.datetime,
                           fill: Fill | None = None, busted_trade_id: str | None = None,
                           positions: Sequence[tuple[str, str, str, PositionState]] = (),
                           ) -> None:
        """Write ``state`` if the stored sequence is still ``before_sequence`` (else
        :class:`StaleState`), with its events, a fill row, position rows and outbox rows."""
        o = state.order
        oid = state.order_id
        row = (oid, before_sequence, _status(state), o.quantity, state.filled_quantity,
               state.sequence, state_to_json(state), now)
        fill_row = None
        if fill is not None:
            fill_row = (fill.trade_id, oid, fill.fund_id, o.strategy_id, fill.symbol,
                        fill.side.value, fill.quantity, fill.price, fill.commission, fill.ts)
        position_rows = [(oid, f, st, sym, p.quantity, p.avg_cost, p.realized_pnl, now)
                         for f, st, sym, p in positions]
        sleeve_rows = [] if fill is None else [
            (oid, fill.trade_id, part.strategy_id, fill.fund_id, fill.symbol, part.quantity,
             part.commission) for part in sleeve_fills(state, fill)]
        events, outbox_rows = _event_rows(oid, outbox)
        changed = await self._changes.run(_Change(row, fill_row, busted_trade_id, position_rows,
                                                  events, outbox_rows, sleeve_rows))
        if not changed:
            raise StaleState(f"order {oid} changed since sequence {before_sequence}",
                             order_id=oid)

    async def _write_creates(self, batch: Sequence[_NewOrder]) -> list[KeyClaim]:
        results: dict[str, KeyClaim] = {}
        async with self.pool.acquire() as conn:
            for window in {item.window for item in batch}:  # one statement per window (one)
                items = [item for item in batch if item.window == window]
                claimed: dict[str, str | None] = {}
                rest = items
                if all(item.denial is None for item in items):  # the usual batch
                    self.fresh_batches += 1
                    claimed = {r[0]: r[1] for r in await conn.fetch(
                        _CREATE_FRESH, *_columns([item.row for item in items], 13),
                        *_columns([e for item in items for e in item.events], 7),
                        *_columns([r for item in items for r in item.outbox], 4))}
                    rest = [item for item in items if item.row[1] not in claimed]
                if rest:  # denials, or keys that exist: decided by the full statement
                    claimed.update({r[0]: r[1] for r in await conn.fetch(
                        _CREATE_ORDERS, *_columns([item.row for item in rest], 13), window,
                        _RETRYABLE,
                        *_columns([item.denial for item in rest if item.denial], 6),
                        *_columns([e for item in rest for e in item.events], 7),
                        *_columns([r for item in rest for r in item.outbox], 4))})
                held = [item.row[0] for item in items if item.row[1] not in claimed]
                holders = {}
                if held:
                    # The keys are held. A fresh statement (a new snapshot) sees each holder,
                    # also one that committed while ours waited on the key's index entry.
                    holders = {r[0]: (r[1], r[2]) for r in await conn.fetch(
                        "SELECT k.idempotency_key, k.order_id, o.content_hash "
                        "FROM idempotency k LEFT JOIN orders o ON o.order_id = k.order_id "
                        "WHERE k.idempotency_key = ANY($1::text[])", held)}
                for item in items:
                    key, oid = item.row[0], item.row[1]
                    if oid in claimed:
                        results[oid] = KeyClaim(True, oid, item.row[12], claimed[oid])
                    else:
                        holder, held_hash = holders.get(key, (None, None))
                        results[oid] = KeyClaim(False, str(holder), held_hash)
        self._committed([(r[1], r[2], r[3]) for item in batch if results[item.row[1]].created
                         for r in item.outbox])
        return [results[item.row[1]] for item in batch]

    async def _write_changes(self, batch: Sequence[_Change]) -> list[bool]:
        rows = _columns([item.row for item in batch], 8)
        events = _columns([e for item in batch for e in item.events], 7)
        outbox = _columns([r for item in batch for r in item.outbox], 4)
        if any(item.fill or item.busted or item.positions or item.sleeves for item in batch):
            query, args = _UPDATE_ORDERS, [
                *rows, *_columns([item.fill for item in batch if item.fill], 10),
                *_columns([(item.row[0], item.busted) for item in batch if item.busted], 2),
                *_columns([p for item in batch for p in item.positions], 8), *events, *outbox,
                *_columns([r for item in batch for r in item.sleeves], 7)]
        else:
            query, args = _UPDATE_PLAIN, [*rows, *events, *outbox]
        async with self.pool.acquire() as conn:
            changed = {r[0] for r in await conn.fetch(query, *args)}
        self._committed([(r[1], r[2], r[3]) for item in batch if item.row[0] in changed
                         for r in item.outbox])
        return [item.row[0] in changed for item in batch]

    async def set_trading_state(self, change: TradingStateChange,
                                outbox: Sequence[OutboxItem], *, escalate_only: bool = False,
                                sweep_id: str | None = None,
                                sweep_orders: Sequence[str] | None = None) -> StateWrite:
        """Record a kill-switch change with its events and, with ``sweep_id``, the sweep that
        cancels what the change forbids - all in one transaction.

        ``escalate_only`` (automatic changes such as the drawdown gate's): recorded only when
        more restrictive than the scope's stored state, so it can never undo an operator's halt
        written by another instance. ``sweep_orders``: the orders to cancel (REDUCING: those
        that add risk, chosen by the caller); ``None``: every open order of the scope as this
        transaction sees it (HALTED), across all funds, so the reply can say how many cancels
        the halt left outstanding. Orders already outstanding in an unfinished sweep stay
        with it.
        """
        rows: list[OutboxRow] = []
        sweep = None
        async with self.pool.acquire() as conn, conn.transaction():
            applied = await conn.fetchval(
                _SET_TRADING_STATE, change.scope, change.scope_id, change.state.value,
                change.actor, change.reason, change.ts, escalate_only)
            if applied:
                rows = await self._outbox(conn, outbox)
                if sweep_id is not None and change.state is not TradingState.ACTIVE:
                    sweep = await _insert_sweep(conn, change, sweep_id, sweep_orders,
                                                change.ts, keep_empty=True)
        self._committed(rows)
        return StateWrite(bool(applied), sweep)

    async def create_sweep(self, change: TradingStateChange, sweep_id: str,
                           order_ids: Sequence[str] | None, *, now: dt.datetime
                           ) -> Sweep | None:
        """A sweep for a state already recorded (another instance's REDUCING, or orders found
        working in a halted scope at start); ``None`` when there is nothing to cancel."""
        async with self.pool.acquire() as conn, conn.transaction():
            return await _insert_sweep(conn, change, sweep_id, order_ids, now, keep_empty=False)

    async def record_cancel_outcome(self, sweep_id: str, order_id: str,
                                    outcome: CancelOutcome, status: OrderStatus | None,
                                    detail: str | None, *, now: dt.datetime) -> bool:
        """Settle one order of a sweep; return True if that finished the sweep.

        The sweep's row is locked first, so of two instances settling its last two orders at
        once the second sees the first's row settled and finishes the sweep.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval("SELECT finished_at IS NULL FROM kill_sweeps "
                                   "WHERE sweep_id = $1 FOR UPDATE", sweep_id) is not True:
                return False
            await conn.execute(
                "UPDATE kill_sweep_orders SET outcome = $3, status = $4, detail = $5, "
                "updated_at = $6 WHERE sweep_id = $1 AND order_id = $2 AND outcome IS NULL",
                sweep_id, order_id, outcome.value, status.value if status else None,
                detail[:2000] if detail else None, now)
            left = await conn.fetchval("SELECT count(*) FROM kill_sweep_orders "
                                       "WHERE sweep_id = $1 AND outcome IS NULL", sweep_id)
            if left:
                return False
            await conn.execute("UPDATE kill_sweeps SET finished_at = $2 WHERE sweep_id = $1",
                               sweep_id, now)
            return True

    def fund_lock(self, fund_ids: Collection[str]) -> _PgFundLock:
        """The funds' sweeper lock: a session advisory lock per fund on a connection kept out
        of the pool, so PostgreSQL releases it when that connection goes (a killed process
        included) and the next instance to start can take the sweeps over."""
        return _PgFundLock(self.pool, self.schema, fund_ids)

    async def claim_nonce(self, key_id: str, nonce: str, *, command: str,
                          signed_at: dt.datetime, now: dt.datetime,
                          forget_before: dt.datetime) -> bool:
        """Record a signed command's nonce (:class:`~mts1b_oms.signing.NonceStore`): False if
        the key used it before. The primary key decides, so two instances given the same
        command at once apply it once; rows signed before ``forget_before`` are dropped in the
        same transaction."""
        return await claim_nonce_in(self.pool, key_id, nonce, command=command,
                                    signed_at=signed_at, now=now, forget_before=forget_before)

    async def record_alert(self, alert: Alert, outbox: Sequence[OutboxItem]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO alerts (alert_id, severity, text, alert, ts) VALUES "
                "($1,$2,$3,$4::jsonb,$5) ON CONFLICT DO NOTHING", alert.alert_id,
                alert.severity.value, alert.text, alert.model_dump_json(), alert.ts)
            rows = await self._outbox(conn, outbox)
        self._committed(rows)

    async def record_transfer(self, transfer: Transfer, outbox: Sequence[OutboxItem], *,
                              positions: Sequence[tuple[str, str, str, PositionState]]
                              ) -> bool:
        """Book an internal transfer between sleeves with its credits, the positions it moves
        and its outbox rows in one transaction; ``False`` (nothing written) when the transfer
        id is booked already."""
        t = transfer
        async with self.pool.acquire() as conn, conn.transaction():
            booked = await conn.fetchval(
                "INSERT INTO sleeve_transfers (transfer_id, fund_id, symbol, price, ts) "
                "VALUES ($1,$2,$3,$4,$5) ON CONFLICT DO NOTHING RETURNING true",
                t.transfer_id, t.fund_id, t.symbol, t.price, t.ts)
            if not booked:
                return False
            await conn.executemany(
                "INSERT INTO sleeve_fills (trade_id, strategy_id, order_id, fund_id, symbol, "
                "quantity, commission) VALUES ($1,$2,$1,$3,$4,$5,0)",
                [(t.transfer_id, s, t.fund_id, t.symbol, q) for s, q in sorted(t.credits.items())])
            await _upsert_positions(conn, positions, t.ts)
            rows = await self._outbox(conn, outbox)
        self._committed(rows)
        return True

    async def record_split(self, split: SplitRecord, outbox: Sequence[OutboxItem], *,
                           positions: Sequence[tuple[str, str, str, PositionState]]
                           ) -> bool:
        """Book a split for one fund with what its sleeves gave up in lieu, the positions it
        moves and its outbox rows in one transaction; ``False`` (nothing written) when the
        (action id, fund) is booked already."""
        t = split
        async with self.pool.acquire() as conn, conn.transaction():
            booked = await conn.fetchval(
                "INSERT INTO splits (action_id, fund_id, symbol, ex_date, ratio, effective_at, "
                "applied_at, close_price) VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT DO "
                "NOTHING RETURNING true", t.action_id, t.fund_id, t.symbol, t.ex_date, t.ratio,
                t.effective_at, t.applied_at, t.close_price)
            if not booked:
                return False
            await conn.executemany(
                "INSERT INTO split_in_lieu (action_id, fund_id, strategy_id, quantity, price) "
                "VALUES ($1,$2,$3,$4,$5)",
                [(t.action_id, t.fund_id, s, q, px) for s, (q, px) in sorted(t.in_lieu.items())])
            await _upsert_positions(conn, positions, t.applied_at)
            rows = await self._outbox(conn, outbox)
        self._committed(rows)
        return True

    async def set_nav(self, fund_id: str, nav: Decimal, now: dt.datetime) -> Decimal:
        """Record NAV; return the peak (high-water mark) including it."""
        peak = await self.pool.fetchval(
            "INSERT INTO fund_nav (fund_id, nav, peak_nav, updated_at) VALUES ($1,$2,$2,$3) "
            "ON CONFLICT (fund_id) DO UPDATE SET nav=EXCLUDED.nav, "
            "peak_nav=GREATEST(fund_nav.peak_nav, EXCLUDED.nav), updated_at=EXCLUDED.updated_at "
            "RETURNING peak_nav", fund_id, nav, now)
        return Decimal(peak)

    # --- reads ----------------------------------------------------------------------------------

    async def idempotent_order(self, key: str, now: dt.datetime,
                               window: dt.timedelta) -> str | None:
        """The order_id holding ``key`` inside the window, else None."""
        row = await self.pool.fetchrow(
            "SELECT order_id FROM idempotency WHERE idempotency_key=$1 AND created_at >= $2",
            key, now - window)
        return None if row is None else str(row["order_id"])

    async def load_order(self, order_id: str) -> OrderState | None:
        text = await self.pool.fetchval("SELECT state FROM orders WHERE order_id=$1", order_id)
        return None if text is None else state_from_json(text)

    async def open_orders(self, fund_id: str | None = None) -> list[OrderState]:
        rows = await self.pool.fetch(
            "SELECT state FROM orders WHERE NOT (status = ANY($1::text[])) "
            "AND ($2::text IS NULL OR fund_id = $2) ORDER BY created_at", _TERMINAL, fund_id)
        return [state_from_json(r["state"]) for r in rows]

    async def orders(self, fund_id: str | None = None) -> list[OrderState]:
        rows = await self.pool.fetch(
            "SELECT state FROM orders WHERE ($1::text IS NULL OR fund_id = $1) "
            "ORDER BY created_at", fund_id)
        return [state_from_json(r["state"]) for r in rows]

    async def events(self, order_id: str) -> list[dict[str, Any]]:
        rows = await self.pool.fetch("SELECT event FROM order_events WHERE order_id=$1 "
                                     "ORDER BY sequence", order_id)
        return [json.loads(r["event"]) for r in rows]

    async def attempts(self, idempotency_key: str) -> list[Attempt]:
        """The chain of attempts of a key, oldest first: its holder and, through each
        ``previous_order_id``, the DENIED or REJECTED attempts it replaced."""
        rows = await self.pool.fetch(_ATTEMPTS, idempotency_key)
        return [Attempt(r["order_id"], None if r["status"] == "new" else OrderStatus(r["status"]),
                        r["content_hash"], r["previous_order_id"]) for r in reversed(rows)]

    async def denials(self, fund_id: str | None = None) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT order_id, code, gate, message, context FROM denials "
            "WHERE ($1::text IS NULL OR fund_id=$1) ORDER BY ts", fund_id)
        return [dict(r) | {"context": json.loads(r["context"])} for r in rows]

    async def fills(self, order_id: str | None = None, *,
                    include_busted: bool = False) -> list[Fill]:
        rows = await self.pool.fetch(
            "SELECT * FROM fills WHERE ($1::text IS NULL OR order_id=$1) AND ($2 OR NOT busted) "
            "ORDER BY ts, trade_id", order_id, include_busted)
        return [Fill(trade_id=r["trade_id"], order_id=r["order_id"], fund_id=r["fund_id"],
                     symbol=r["symbol"], side=Side(r["side"]), quantity=r["quantity"],
                     price=r["price"], commission=r["commission"], ts=r["ts"]) for r in rows]

    async def fills_for(self, fund_id: str, strategy_id: str, symbol: str) -> list[Fill]:
        """The standing fills of one sleeve (strategy) in one symbol, as credited to it: its
        signed credit as side and quantity, its part of the commission; its internal
        transfers beside them."""
        rows = await self.pool.fetch(
            "SELECT s.trade_id, s.order_id, s.fund_id, s.symbol, "
            "coalesce(f.price, t.price) AS price, coalesce(f.ts, t.ts) AS ts, "
            "s.quantity AS credit, s.commission AS part FROM sleeve_fills s "
            "LEFT JOIN fills f ON f.trade_id = s.trade_id "
            "LEFT JOIN sleeve_transfers t ON t.transfer_id = s.trade_id "
            "WHERE s.fund_id=$1 AND s.strategy_id=$2 AND s.symbol=$3 AND s.quantity <> 0 "
            "AND (NOT f.busted OR t.transfer_id IS NOT NULL) ORDER BY 6, 1",
            fund_id, strategy_id, symbol)
        return [Fill(trade_id=r["trade_id"], order_id=r["order_id"], fund_id=r["fund_id"],
                     symbol=r["symbol"], side=Side.BUY if r["credit"] > 0 else Side.SELL,
                     quantity=abs(r["credit"]), price=r["price"], commission=r["part"],
                     ts=r["ts"]) for r in rows]

    async def splits_for(self, fund_id: str, strategy_id: str, symbol: str
                         ) -> list[SplitStep]:
        """The splits booked for ``fund_id`` in ``symbol``, in effective order, each with what
        ``strategy_id`` gave up in lieu (0 when nothing)."""
        rows = await self.pool.fetch(
            "SELECT s.action_id, s.effective_at, s.ratio, l.quantity, l.price, s.close_price "
            "FROM splits s "
            "LEFT JOIN split_in_lieu l ON l.action_id = s.action_id AND l.fund_id = s.fund_id "
            "AND l.strategy_id = $2 WHERE s.fund_id = $1 AND s.symbol = $3 "
            "ORDER BY s.effective_at, s.action_id", fund_id, strategy_id, symbol)
        return [SplitStep(r["action_id"], r["effective_at"], Decimal(r["ratio"]),
                          Decimal(r["quantity"]) if r["quantity"] is not None else Decimal(0),
                          Decimal(r["price"]) if r["price"] is not None else None,
                          Decimal(r["close_price"]) if r["close_price"] is not None else None)
                for r in rows]

    async def split_booked(self, action_id: str, fund_id: str) -> bool:
        return bool(await self.pool.fetchval(
            "SELECT true FROM splits WHERE action_id=$1 AND fund_id=$2", action_id, fund_id))

    async def split_times(self) -> dict[tuple[str, str], dt.datetime]:
        """(fund, symbol) -> the latest effective time of a split booked there."""
        rows = await self.pool.fetch("SELECT fund_id, symbol, max(effective_at) AS at "
                                     "FROM splits GROUP BY fund_id, symbol")
        return {(r["fund_id"], r["symbol"]): r["at"] for r in rows}

    async def positions(self, fund_id: str | None = None
                        ) -> list[tuple[str, str, str, PositionState]]:
        rows = await self.pool.fetch(
            "SELECT * FROM positions WHERE ($1::text IS NULL OR fund_id=$1) "
            "ORDER BY fund_id, strategy_id, symbol", fund_id)
        return [(r["fund_id"], r["strategy_id"], r["symbol"],
                 PositionState(Decimal(r["quantity"]), Decimal(r["avg_cost"]),
                               Decimal(r["realized_pnl"]))) for r in rows]

    async def trading_states(self) -> list[tuple[str, str, TradingState]]:
        rows = await self.pool.fetch("SELECT scope, scope_id, state FROM trading_states")
        return [(r["scope"], r["scope_id"], TradingState(r["state"])) for r in rows]

    async def state_changes(self) -> list[TradingStateChange]:
        """Every scope's stored state as the change that set it (who, why, when)."""
        rows = await self.pool.fetch("SELECT scope, scope_id, state, actor, reason, ts "
                                     "FROM trading_states ORDER BY ts")
        return [TradingStateChange(scope=r["scope"], scope_id=r["scope_id"],
                                   state=TradingState(r["state"]), actor=r["actor"],
                                   reason=r["reason"], ts=r["ts"]) for r in rows]

    async def sweep(self, sweep_id: str) -> Sweep | None:
        sweeps = _sweeps(await self.pool.fetch(_SWEEP_BY_ID, sweep_id))
        return sweeps[0] if sweeps else None

    async def unfinished_sweeps(self, fund_ids: Collection[str] | None = None
                                ) -> list[Sweep]:
        """Sweeps not finished that have an outstanding order of ``fund_ids`` (any fund if
        None), oldest first, with all their orders."""
        return _sweeps(await self.pool.fetch(
            _UNFINISHED_SWEEPS, None if fund_ids is None else list(fund_ids)))

    async def nav(self, fund_id: str) -> tuple[Decimal, Decimal] | None:
        row = await self.pool.fetchrow("SELECT nav, peak_nav FROM fund_nav WHERE fund_id=$1",
                                       fund_id)
        return None if row is None else (Decimal(row["nav"]), Decimal(row["peak_nav"]))

    # --- outbox ---------------------------------------------------------------------------------

    async def unpublished(self, limit: int, *, older_than: dt.timedelta = dt.timedelta(0)
                          ) -> list[OutboxRow]:
        """Up to ``limit`` rows not yet marked published, oldest first, committed at least
        ``older_than`` ago (younger ones are normally on their way through
        :meth:`on_commit`). Nothing is locked: two relays reading the same row both publish
        it, and the bus drops the second copy by its ``Nats-Msg-Id``."""
        rows = await self.pool.fetch(
            "SELECT msg_id, subject, payload FROM outbox WHERE published_at IS NULL "
            "AND created_at <= now() - $2::interval ORDER BY id LIMIT $1", limit, older_than)
        return [(r["msg_id"], r["subject"], bytes(r["payload"])) for r in rows]

    async def mark_published(self, msg_ids: Sequence[str]) -> None:
        """Record that these rows are on the bus (after the bus acknowledged them) by deleting
        them. The outbox is a queue, not a record: each event stays in its own table
        (``order_events``, ``fills``, ``positions``, ``alerts``, ``trading_states``). A delete
        is also cheaper than setting ``published_at`` (no new row version and no new index
        entries for every row); that column stays NULL."""
        if msg_ids:
            await self.pool.execute("DELETE FROM outbox WHERE msg_id = ANY($1::text[])",
                                    list(msg_ids))

    async def unpublished_count(self) -> int:
        return int(await self.pool.fetchval(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL"))


class _PgFundLock:
    """See :meth:`Store.fund_lock`. Never waits: a fund another holder has is tried again at
    the next :meth:`acquire`."""

    def __init__(self, pool: asyncpg.Pool, schema: str, fund_ids: Collection[str]) -> None:
        self._pool = pool
        self._keys = {f: _lock_key(schema, f) for f in fund_ids}
        self._conn: asyncpg.Connection | None = None
        self._held: set[str] = set()

    @property
    def held(self) -> frozenset[str]:
        return frozenset(self._held)

    async def acquire(self) -> frozenset[str]:
        wanted = [f for f in self._keys if f not in self._held]
        if not wanted:
            return self.held
        if self._conn is None:
            self._conn = await self._pool.acquire()
        for fund_id in wanted:
            if await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", self._keys[fund_id]):
                self._held.add(fund_id)
        if not self._held:  # nothing to keep the session for
            await self._pool.release(self._conn)
            self._conn = None
        return self.held

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        held, self._held = self._held, set()
        if conn is None:
            return
        with contextlib.suppress(Exception):  # a dead connection has released them already
            for fund_id in held:
                await conn.execute("SELECT pg_advisory_unlock($1)", self._keys[fund_id])
        with contextlib.suppress(Exception):
            await self._pool.release(conn)


def _lock_key(schema: str, fund_id: str) -> int:
    """A fund's 64-bit advisory lock key, per schema (tests run side by side in one database)."""
    digest = hashlib.blake2b(f"mts1b-oms sweeper {schema}:{fund_id}".encode(),
                             digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def _insert_sweep(conn: asyncpg.Connection, change: TradingStateChange, sweep_id: str,
                        order_ids: Sequence[str] | None, now: dt.datetime, *,
                        keep_empty: bool) -> Sweep | None:
    """Insert a sweep and its outstanding rows inside the caller's transaction."""
    await conn.execute(
        "INSERT INTO kill_sweeps (sweep_id, scope, scope_id, state, actor, reason, created_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7)", sweep_id, change.scope, change.scope_id,
        change.state.value, change.actor, change.reason, now)
    picked = await conn.fetch(_PICK_SWEEP_ORDERS, sweep_id, _TERMINAL, change.scope,
                              change.scope_id, None if order_ids is None else list(order_ids),
                              now)
    finished = None
    if not picked:
        if not keep_empty:
            await conn.execute("DELETE FROM kill_sweeps WHERE sweep_id = $1", sweep_id)
            return None
        finished = now
        await conn.execute("UPDATE kill_sweeps SET finished_at = $2 WHERE sweep_id = $1",
                           sweep_id, now)
    orders = tuple(SweepOrder(r["order_id"], r["fund_id"])
                   for r in sorted(picked, key=lambda r: str(r["order_id"])))
    return Sweep(sweep_id, change.scope, change.scope_id, change.state, change.actor,
                 change.reason, now, finished, orders)


def _sweeps(rows: Sequence[asyncpg.Record]) -> list[Sweep]:
    """Rows of :data:`_SWEEP_BY_ID` / :data:`_UNFINISHED_SWEEPS` (grouped by sweep) -> one
    :class:`Sweep` each."""
    out: list[Sweep] = []
    orders: list[SweepOrder] = []
    for i, r in enumerate(rows):
        if r["order_id"] is not None:
            orders.append(SweepOrder(
                r["order_id"], r["fund_id"],
                CancelOutcome(r["outcome"]) if r["outcome"] else None,
                OrderStatus(r["status"]) if r["status"] else None, r["detail"]))
        if i + 1 == len(rows) or rows[i + 1]["sweep_id"] != r["sweep_id"]:
            out.append(Sweep(r["sweep_id"], r["scope"], r["scope_id"], TradingState(r["state"]),
                             r["actor"], r["reason"], r["created_at"], r["finished_at"],
                             tuple(orders)))
            orders = []
    return out


def _status(state: OrderState) -> str:
    return state.status.value if state.status else "new"


def _dsn_error(dsn: str, problem: str) -> StoreError:
    return StoreError(dsn_message(dsn, problem) + " (--dsn or $MTS_DATABASE_URL)")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool ``reset`` hook: nothing beyond asyncpg's own rollback of an open transaction.

    asyncpg's default sends ``RESET ALL; UNLISTEN *; ...`` on every release, a round trip per
    query. The store sets no session state (search_path comes from the connection's startup
    settings, which RESET ALL would keep anyway), takes only transaction-scoped advisory locks
    and never LISTENs, so there is nothing to reset.
    """


@dataclass(frozen=True, slots=True)
class _NewOrder:
    """One order's rows for the batched create statement (see :data:`_CREATE_ORDERS`)."""

    row: tuple[Any, ...]
    window: dt.timedelta
    denial: tuple[Any, ...] | None
    events: list[tuple[Any, ...]]
    outbox: list[tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class _Change:
    """One order change's rows for the batched update statement (see :data:`_UPDATE_ORDERS`)."""

    row: tuple[Any, ...]
    fill: tuple[Any, ...] | None
    busted: str | None
    positions: list[tuple[Any, ...]]
    events: list[tuple[Any, ...]]
    outbox: list[tuple[Any, ...]]
    sleeves: list[tuple[Any, ...]]


def _change_keys(change: _Change) -> list[Hashable]:
    """Rows a change upserts: two changes touching one of them go in different statements."""
    keys: list[Hashable] = [("order", change.row[0])]
    keys += [("position", p[1], p[2], p[3]) for p in change.positions]
    if change.fill is not None:
        keys.append(("fill", change.fill[0]))
    if change.busted is not None:
        keys.append(("fill", change.busted))
    return keys


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows -> one list per column (the arrays the statements unnest)."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(col) for col in zip(*rows, strict=True)]


def _outbox_rows(order_id: str, items: Iterable[OutboxItem], payloads: Sequence[bytes] | None = None
                 ) -> tuple[list[str], list[str], list[str], list[bytes]]:
    """Column arrays (order_id, msg_id, subject, payload) of outbox rows; raises SubjectError
    for an item the subject registry refuses (before anything is queued or written)."""
    items = list(items)
    for it in items:
        check_publishable(it.subject, it.message)
    data = list(payloads) if payloads is not None else [it.message.to_json() for it in items]
    return ([order_id] * len(items), [it.msg_id for it in items], [it.subject for it in items],
            data)


def _event_rows(order_id: str, items: Sequence[OutboxItem]
                ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Rows of the order events among ``items`` and outbox rows of all items. An event's row
    and its outbox payload are the same JSON, serialised once."""
    from mts1b_foundation import OrderEvent

    payloads = [it.message.to_json() for it in items]
    events = [(e.event_id, e.order_id, e.sequence, e.event_type.value, e.status.value,
               payload.decode(), e.ts)
              for it, payload in zip(items, payloads, strict=True)
              if isinstance(e := it.message, OrderEvent)]
    outbox = list(zip(*_outbox_rows(order_id, items, payloads), strict=True))
    return events, outbox


# The statements take their rows as arrays (unnest): one fixed text serves any number of orders
# (an empty array inserts nothing), and PostgreSQL prepares each statement once per connection.

# $7 = escalate_only: then an existing row changes only for a more restrictive state (the CASE
# is tradingstate.restrictiveness); RETURNING yields no row when nothing was written.
async def _upsert_positions(conn: Any, positions: Sequence[tuple[str, str, str, PositionState]],
                            ts: dt.datetime) -> None:
    """Write sleeve positions a transfer or a split moved (inside the caller's transaction)."""
    await conn.executemany(
        "INSERT INTO positions (fund_id, strategy_id, symbol, quantity, avg_cost, "
        "realized_pnl, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7) "
        "ON CONFLICT (fund_id, strategy_id, symbol) DO UPDATE SET "
        "quantity = EXCLUDED.quantity, avg_cost = EXCLUDED.avg_cost, "
        "realized_pnl = EXCLUDED.realized_pnl, updated_at = EXCLUDED.updated_at",
        [(f, st, sym, p.quantity, p.avg_cost, p.realized_pnl, ts) for f, st, sym, p in positions])


_SET_TRADING_STATE = """
INSERT INTO trading_states AS t (scope, scope_id, state, actor, reason, ts)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (scope, scope_id) DO UPDATE
    SET state = EXCLUDED.state, actor = EXCLUDED.actor, reason = EXCLUDED.reason, ts = EXCLUDED.ts
    WHERE NOT $7
       OR (CASE t.state WHEN 'HALTED' THEN 2 WHEN 'REDUCING' THEN 1 ELSE 0 END)
        < (CASE EXCLUDED.state WHEN 'HALTED' THEN 2 WHEN 'REDUCING' THEN 1 ELSE 0 END)
RETURNING true
"""

# The open orders of a scope (and, if $5 is given, among those ids) that are not outstanding in
# another sweep, as outstanding rows of sweep $1. The partial unique index on outstanding rows
# settles a race between two sweeps picking the same order: the second leaves it out.
_PICK_SWEEP_ORDERS = """
INSERT INTO kill_sweep_orders (sweep_id, order_id, fund_id, updated_at)
SELECT $1, o.order_id, o.fund_id, $6 FROM orders o
WHERE NOT (o.status = ANY($2::text[]))
  AND ($3 = 'global' OR ($3 = 'fund' AND o.fund_id = $4)
       OR ($3 = 'strategy' AND o.strategy_id = $4))
  AND ($5::text[] IS NULL OR o.order_id = ANY($5::text[]))
  AND NOT EXISTS (SELECT 1 FROM kill_sweep_orders k
                  WHERE k.order_id = o.order_id AND k.outcome IS NULL)
ORDER BY o.order_id
ON CONFLICT DO NOTHING
RETURNING order_id, fund_id
"""

_SWEEP_BY_ID = """
SELECT s.sweep_id, s.scope, s.scope_id, s.state, s.actor, s.reason, s.created_at, s.finished_at,
       k.order_id, k.fund_id, k.outcome, k.status, k.detail
FROM kill_sweeps s LEFT JOIN kill_sweep_orders k ON k.sweep_id = s.sweep_id
WHERE s.sweep_id = $1
ORDER BY k.order_id
"""

_UNFINISHED_SWEEPS = """
SELECT s.sweep_id, s.scope, s.scope_id, s.state, s.actor, s.reason, s.created_at, s.finished_at,
       k.order_id, k.fund_id, k.outcome, k.status, k.detail
FROM kill_sweeps s LEFT JOIN kill_sweep_orders k ON k.sweep_id = s.sweep_id
WHERE s.finished_at IS NULL AND s.sweep_id IN (
    SELECT sweep_id FROM kill_sweep_orders WHERE outcome IS NULL
    AND ($1::text[] IS NULL OR fund_id = ANY($1::text[])))
ORDER BY s.created_at, s.sweep_id, k.order_id
"""

_INSERT_OUTBOX = """
INSERT INTO outbox (msg_id, subject, payload)
SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[])
ON CONFLICT (msg_id) DO NOTHING
"""

# The create and update statements are put together from the parts below, each taking its
# rows as arrays from the parameter number it is given. A batch of plain orders - the usual
# case - goes out as a statement without the parts it does not need: every part is planned
# again for each batch (custom plans, see ``Store.open``), and the parts an acknowledged order
# does not need were over a quarter of its two statements' server time (bench/RESULTS.md).
# The parts a statement leaves out are exactly those that would have inserted nothing.

def _events_cte(n: int, keep: str) -> str:
    """``new_events``: order event rows from parameters $n..$n+6, kept if ``keep``'s CTE
    returned their order."""
    return f"""new_events AS (
    INSERT INTO order_events (event_id, order_id, sequence, event_type, status, event, ts)
    SELECT e.event_id, e.order_id, e.sequence, e.event_type, e.status, e.event::jsonb, e.ts
    FROM unnest(${n}::text[], ${n + 1}::text[], ${n + 2}::int[], ${n + 3}::text[],
                ${n + 4}::text[], ${n + 5}::text[], ${n + 6}::timestamptz[])
        AS e(event_id, order_id, sequence, event_type, status, event, ts)
    WHERE e.order_id IN (SELECT order_id FROM {keep})
)"""  # noqa: S608 (numbers and a CTE's name from this module)


def _outbox_cte(n: int, keep: str) -> str:
    """``new_outbox``: outbox rows from parameters $n..$n+3, kept as :func:`_events_cte`."""
    return f"""new_outbox AS (
    INSERT INTO outbox (msg_id, subject, payload)
    SELECT o.msg_id, o.subject, o.payload
    FROM unnest(${n}::text[], ${n + 1}::text[], ${n + 2}::text[], ${n + 3}::bytea[])
        AS o(order_id, msg_id, subject, payload)
    WHERE o.order_id IN (SELECT order_id FROM {keep})
    ON CONFLICT (msg_id) DO NOTHING
)"""  # noqa: S608 (numbers and a CTE's name from this module)


_CREATE_INPUT = """input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[],
                         $6::text[], $7::text[], $8::text[], $9::numeric[], $10::numeric[],
                         $11::int[], $12::text[], $13::text[])
        AS i(idempotency_key, order_id, created_at, fund_id, strategy_id, symbol, side, status,
             quantity, filled_quantity, sequence, state, content_hash)
)"""

# A key is claimed when free, expired ($14) or held by an order whose status is one of $15
# (denied, rejected: a new attempt may take it over). ``previous`` reads the holder as the
# statement's snapshot saw it: the attempt a takeover replaces, stored as previous_order_id.
# Two concurrent takeovers of one key: the second waits on the first's index entry, then
# re-checks the key's row, now held by the first's order, which its snapshot cannot see in
# orders - so it does not claim, and the caller answers it as a repeat of the first.
_CREATE_ORDERS = f"""
WITH {_CREATE_INPUT}, previous AS (
    SELECT i.order_id, k.order_id AS previous_order_id
    FROM input i JOIN idempotency k ON k.idempotency_key = i.idempotency_key
    JOIN orders p ON p.order_id = k.order_id AND p.status = ANY($15::text[])
), claim AS (
    INSERT INTO idempotency (idempotency_key, order_id, created_at)
    SELECT idempotency_key, order_id, created_at FROM input
    ON CONFLICT (idempotency_key) DO UPDATE
        SET order_id = EXCLUDED.order_id, created_at = EXCLUDED.created_at
        WHERE idempotency.created_at < EXCLUDED.created_at - $14::interval
           OR EXISTS (SELECT 1 FROM orders p WHERE p.order_id = idempotency.order_id
                      AND p.status = ANY($15::text[]))
    RETURNING order_id
), new_orders AS (
    INSERT INTO orders (order_id, idempotency_key, fund_id, strategy_id, symbol, side, status,
                        quantity, filled_quantity, sequence, state, created_at, updated_at,
                        content_hash, previous_order_id)
    SELECT i.order_id, i.idempotency_key, i.fund_id, i.strategy_id, i.symbol, i.side, i.status,
           i.quantity, i.filled_quantity, i.sequence, i.state::jsonb, i.created_at,
           i.created_at, i.content_hash, pr.previous_order_id
    FROM input i LEFT JOIN previous pr ON pr.order_id = i.order_id
    WHERE i.order_id IN (SELECT order_id FROM claim)
), new_denials AS (
    INSERT INTO denials (event_id, order_id, fund_id, code, gate, message, context, ts)
    SELECT d.event_id, d.order_id, i.fund_id, d.code, d.gate, d.message, d.context::jsonb,
           i.created_at
    FROM unnest($16::text[], $17::text[], $18::text[], $19::text[], $20::text[], $21::text[])
        AS d(order_id, event_id, code, gate, message, context)
    JOIN input i ON i.order_id = d.order_id
    WHERE d.order_id IN (SELECT order_id FROM claim)
), {_events_cte(22, "claim")}, {_outbox_cte(29, "claim")}
SELECT c.order_id, pr.previous_order_id FROM claim c
LEFT JOIN previous pr ON pr.order_id = c.order_id
"""  # noqa: S608 (this module's constant parts)

# The usual batch: orders under fresh keys, none denied. Only a free key is claimed; an order
# whose key exists (a repeat, a takeover, an expired key) is left out, and the caller sends it
# again in _CREATE_ORDERS, which decides it with a new snapshot. The same columns as
# _CREATE_ORDERS without $14..$21; it returns no previous_order_id (a free key has none).
_CREATE_FRESH = f"""
WITH {_CREATE_INPUT}, claim AS (
    INSERT INTO idempotency (idempotency_key, order_id, created_at)
    SELECT idempotency_key, order_id, created_at FROM input
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING order_id
), new_orders AS (
    INSERT INTO orders (order_id, idempotency_key, fund_id, strategy_id, symbol, side, status,
                        quantity, filled_quantity, sequence, state, created_at, updated_at,
                        content_hash)
    SELECT i.order_id, i.idempotency_key, i.fund_id, i.strategy_id, i.symbol, i.side, i.status,
           i.quantity, i.filled_quantity, i.sequence, i.state::jsonb, i.created_at,
           i.created_at, i.content_hash
    FROM input i WHERE i.order_id IN (SELECT order_id FROM claim)
), {_events_cte(14, "claim")}, {_outbox_cte(21, "claim")}
SELECT order_id, NULL::text FROM claim
"""  # noqa: S608 (this module's constant parts)

# The holder of a key and the attempts before it, newest first (each a primary-key lookup).
_ATTEMPTS = """
WITH RECURSIVE chain AS (
    SELECT o.order_id, o.status, o.content_hash, o.previous_order_id, 0 AS depth
    FROM idempotency k JOIN orders o ON o.order_id = k.order_id
    WHERE k.idempotency_key = $1
    UNION ALL
    SELECT o.order_id, o.status, o.content_hash, o.previous_order_id, c.depth + 1
    FROM orders o JOIN chain c ON o.order_id = c.previous_order_id
)
SELECT order_id, status, content_hash, previous_order_id FROM chain ORDER BY depth
"""

_UPDATE_INPUT = """input AS (
    SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::numeric[], $5::numeric[],
                         $6::int[], $7::text[], $8::timestamptz[])
        AS u(order_id, before_sequence, status, quantity, filled_quantity, sequence, state,
             updated_at)
), changed AS (
    UPDATE orders o SET status = u.status, quantity = u.quantity,
                        filled_quantity = u.filled_quantity, sequence = u.sequence,
                        state = u.state::jsonb, updated_at = u.updated_at
    FROM input u
    WHERE o.order_id = u.order_id AND o.sequence = u.before_sequence
    RETURNING o.order_id
)"""

_UPDATE_ORDERS = f"""
WITH {_UPDATE_INPUT}, new_fills AS (
    INSERT INTO fills (trade_id, order_id, fund_id, strategy_id, symbol, side, quantity, price,
                       commission, ts)
    SELECT * FROM unnest($9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
                         $14::text[], $15::numeric[], $16::numeric[], $17::numeric[],
                         $18::timestamptz[])
        AS f(trade_id, order_id, fund_id, strategy_id, symbol, side, quantity, price,
             commission, ts)
    WHERE f.order_id IN (SELECT order_id FROM changed)
    ON CONFLICT (trade_id) DO UPDATE SET quantity = EXCLUDED.quantity,
        price = EXCLUDED.price, commission = EXCLUDED.commission
), busts AS (
    UPDATE fills SET busted = true
    FROM unnest($19::text[], $20::text[]) AS b(order_id, trade_id)
    WHERE fills.trade_id = b.trade_id AND b.order_id IN (SELECT order_id FROM changed)
), new_positions AS (
    INSERT INTO positions (fund_id, strategy_id, symbol, quantity, avg_cost, realized_pnl,
                           updated_at)
    SELECT p.fund_id, p.strategy_id, p.symbol, p.quantity, p.avg_cost, p.realized_pnl,
           p.updated_at
    FROM unnest($21::text[], $22::text[], $23::text[], $24::text[], $25::numeric[],
                $26::numeric[], $27::numeric[], $28::timestamptz[])
        AS p(order_id, fund_id, strategy_id, symbol, quantity, avg_cost, realized_pnl,
             updated_at)
    WHERE p.order_id IN (SELECT order_id FROM changed)
    ON CONFLICT (fund_id, strategy_id, symbol) DO UPDATE SET quantity = EXCLUDED.quantity,
        avg_cost = EXCLUDED.avg_cost, realized_pnl = EXCLUDED.realized_pnl,
        updated_at = EXCLUDED.updated_at
), {_events_cte(29, "changed")}, {_outbox_cte(36, "changed")}, new_sleeve_fills AS (
    INSERT INTO sleeve_fills (trade_id, strategy_id, order_id, fund_id, symbol, quantity,
                              commission)
    SELECT c.trade_id, c.strategy_id, c.order_id, c.fund_id, c.symbol, c.quantity, c.commission
    FROM unnest($40::text[], $41::text[], $42::text[], $43::text[], $44::text[],
                $45::numeric[], $46::numeric[])
        AS c(order_id, trade_id, strategy_id, fund_id, symbol, quantity, commission)
    WHERE c.order_id IN (SELECT order_id FROM changed)
    ON CONFLICT (trade_id, strategy_id) DO UPDATE SET quantity = EXCLUDED.quantity,
        commission = EXCLUDED.commission
)
SELECT order_id FROM changed
"""  # noqa: S608 (this module's constant parts)

# A batch of changes without fills, busts or positions (acknowledgements, cancels,
# rejections): _UPDATE_ORDERS without those parts, the events and outbox from $9.
_UPDATE_PLAIN = f"""
WITH {_UPDATE_INPUT}, {_events_cte(9, "changed")}, {_outbox_cte(16, "changed")}
SELECT order_id FROM changed
"""  # noqa: S608 (this module's constant parts)
