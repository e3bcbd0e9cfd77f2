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

import datetime as dt
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from typing import Any

import asyncpg
from mts1b_foundation import (
    Alert,
    Denial,
    Fill,
    MtsError,
    Order,
    OrderStatus,
    ReplaceRequest,
    TradingState,
    TradingStateChange,
    WireModel,
)
from mts1b_foundation.subjects import check_publishable

from mts1b_oms.positions import PositionState
from mts1b_oms.state import OrderState

__all__ = ["OutboxItem", "StaleState", "Store", "StoreError", "state_from_json", "state_to_json"]

_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_MIGRATION = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x6D74_736F  # advisory lock id for migrations ("mtso")


class StoreError(MtsError):
    code = "OMS.STORE"


class StaleState(StoreError):
    """Another writer changed the order first (its sequence moved); reload and retry."""

    code = "OMS.STORE.STALE"


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One message to publish after commit: subject, model and its ``Nats-Msg-Id``."""

    subject: str
    message: WireModel
    msg_id: str


def state_to_json(s: OrderState) -> str:
    return json.dumps({
        "order": s.order.model_dump(mode="json"),
        "status": s.status.value if s.status else None,
        "prior": s.prior.value if s.prior else None,
        "fills": [f.model_dump(mode="json") for f in s.fills.values()],
        "busted": sorted(s.busted),
        "pending_replace": (s.pending_replace.model_dump(mode="json")
                            if s.pending_replace else None),
        "sequence": s.sequence,
    })


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
    )


def _migrations() -> list[tuple[int, str, str]]:
    out = []
    for entry in resources.files("mts1b_oms").joinpath("migrations").iterdir():
        m = _MIGRATION.match(entry.name)
        if m:
            out.append((int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    return sorted(out)


class Store:
    """The OMS's system of record. Create with :meth:`open`; close with :meth:`close`."""

    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self.pool = pool
        self.schema = schema

    @classmethod
    async def open(cls, dsn: str, *, schema: str = "mts_oms", min_size: int = 2,
                   max_size: int = 10) -> Store:
        """Connect, create ``schema`` if needed and apply pending migrations."""
        if not _SCHEMA.match(schema):
            raise StoreError(f"schema name must match {_SCHEMA.pattern}", schema=schema)
        try:
            conn = await asyncpg.connect(dsn)
        except (OSError, asyncpg.PostgresError) as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {type(exc).__name__}: {exc}"
                             ) from None
        try:
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        finally:
            await conn.close()
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size,
                                         server_settings={"search_path": schema})
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
        applied_now = []
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
                "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
            done = {r["version"] for r in await conn.fetch("SELECT version FROM "
                                                           "schema_migrations")}
            for version, name, sql in _migrations():
                if version in done:
                    continue
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version, name) VALUES "
                                   "($1, $2)", version, name)
                applied_now.append(version)
        return applied_now

    async def migration_versions(self) -> list[int]:
        rows = await self.pool.fetch("SELECT version FROM schema_migrations ORDER BY version")
        return [r["version"] for r in rows]

    # --- writes ---------------------------------------------------------------------------------

    @staticmethod
    async def _outbox(conn: asyncpg.Connection, items: Iterable[OutboxItem]) -> None:
        rows = []
        for it in items:
            check_publishable(it.subject, it.message)
            rows.append((it.msg_id, it.subject, it.message.to_json()))
        if rows:
            await conn.executemany(
                "INSERT INTO outbox (msg_id, subject, payload) VALUES ($1, $2, $3) "
                "ON CONFLICT (msg_id) DO NOTHING", rows)

    @staticmethod
    async def _events(conn: asyncpg.Connection, items: Iterable[OutboxItem]) -> None:
        from mts1b_foundation import OrderEvent

        rows = [(e.event_id, e.order_id, e.sequence, e.event_type.value, e.status.value,
                 e.model_dump_json(), e.ts)
                for it in items if isinstance(e := it.message, OrderEvent)]
        if rows:
            await conn.executemany(
                "INSERT INTO order_events (event_id, order_id, sequence, event_type, status, "
                "event, ts) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7)", rows)

    async def create_order(self, state: OrderState, outbox: Sequence[OutboxItem], *,
                           now: dt.datetime, window: dt.timedelta,
                           denial: tuple[str, Denial] | None = None) -> str | None:
        """Insert a new order with its first events, claiming its idempotency key.

        Returns ``None`` when created, or the ``order_id`` that already holds the key inside
        the window (nothing is written then).
        """
        o = state.order
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "INSERT INTO idempotency (idempotency_key, order_id, created_at) "
                "VALUES ($1, $2, $3) ON CONFLICT (idempotency_key) DO UPDATE "
                "SET order_id = EXCLUDED.order_id, created_at = EXCLUDED.created_at "
                "WHERE idempotency.created_at < $4 "
                "RETURNING order_id", o.idempotency_key, state.order_id, now, now - window)
            if row is None:
                held = await conn.fetchval("SELECT order_id FROM idempotency "
                                           "WHERE idempotency_key = $1", o.idempotency_key)
                return str(held)
            await conn.execute(
                "INSERT INTO orders (order_id, idempotency_key, fund_id, strategy_id, symbol, "
                "side, status, quantity, filled_quantity, sequence, state, created_at, "
                "updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11::jsonb,$12,$12)",
                state.order_id, o.idempotency_key, o.fund_id, o.strategy_id,
                o.instrument.symbol, o.side.value, _status(state), o.quantity,
                state.filled_quantity, state.sequence, state_to_json(state), now)
            await self._events(conn, outbox)
            if denial is not None:
                event_id, d = denial
                await conn.execute(
                    "INSERT INTO denials (event_id, order_id, fund_id, code, gate, message, "
                    "context, ts) VALUES ($1,$2,$3,$4,$5,$6,$7::jsonb,$8)", event_id,
                    state.order_id, o.fund_id, d.code.value, d.gate, d.message,
                    json.dumps(d.context), now)
            await self._outbox(conn, outbox)
        return None

    async def update_order(self, before_sequence: int, state: OrderState,
                           outbox: Sequence[OutboxItem], *, now: dt.datetime,
                           fill: Fill | None = None, busted_trade_id: str | None = None,
                           positions: Sequence[tuple[str, str, str, PositionState]] = (),
                           ) -> None:
        """Write ``state`` if the stored sequence is still ``before_sequence`` (else
        :class:`StaleState`), with its events, a fill row, position rows and outbox rows."""
        o = state.order
        async with self.pool.acquire() as conn, conn.transaction():
            done = await conn.execute(
                "UPDATE orders SET status=$2, quantity=$3, filled_quantity=$4, sequence=$5, "
                "state=$6::jsonb, updated_at=$7 WHERE order_id=$1 AND sequence=$8",
                state.order_id, _status(state), o.quantity, state.filled_quantity,
                state.sequence, state_to_json(state), now, before_sequence)
            if done != "UPDATE 1":
                raise StaleState(f"order {state.order_id} changed since sequence "
                                 f"{before_sequence}", order_id=state.order_id)
            await self._events(conn, outbox)
            if fill is not None:
                await conn.execute(
                    "INSERT INTO fills (trade_id, order_id, fund_id, strategy_id, symbol, side, "
                    "quantity, price, commission, ts) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) "
                    "ON CONFLICT (trade_id) DO UPDATE SET quantity=EXCLUDED.quantity, "
                    "price=EXCLUDED.price, commission=EXCLUDED.commission",
                    fill.trade_id, fill.order_id, fill.fund_id, o.strategy_id, fill.symbol,
                    fill.side.value, fill.quantity, fill.price, fill.commission, fill.ts)
            if busted_trade_id is not None:
                await conn.execute("UPDATE fills SET busted = true WHERE trade_id = $1",
                                   busted_trade_id)
            for fund_id, strategy_id, symbol, p in positions:
                await conn.execute(
                    "INSERT INTO positions (fund_id, strategy_id, symbol, quantity, avg_cost, "
                    "realized_pnl, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7) "
                    "ON CONFLICT (fund_id, strategy_id, symbol) DO UPDATE SET "
                    "quantity=EXCLUDED.quantity, avg_cost=EXCLUDED.avg_cost, "
                    "realized_pnl=EXCLUDED.realized_pnl, updated_at=EXCLUDED.updated_at",
                    fund_id, strategy_id, symbol, p.quantity, p.avg_cost, p.realized_pnl, now)
            await self._outbox(conn, outbox)

    async def set_trading_state(self, change: TradingStateChange,
                                outbox: Sequence[OutboxItem]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO trading_states (scope, scope_id, state, actor, reason, ts) "
                "VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (scope, scope_id) DO UPDATE SET "
                "state=EXCLUDED.state, actor=EXCLUDED.actor, reason=EXCLUDED.reason, "
                "ts=EXCLUDED.ts", change.scope, change.scope_id, change.state.value,
                change.actor, change.reason, change.ts)
            await self._outbox(conn, outbox)

    async def record_alert(self, alert: Alert, outbox: Sequence[OutboxItem]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO alerts (alert_id, severity, text, alert, ts) VALUES "
                "($1,$2,$3,$4::jsonb,$5) ON CONFLICT DO NOTHING", alert.alert_id,
                alert.severity.value, alert.text, alert.model_dump_json(), alert.ts)
            await self._outbox(conn, outbox)

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
        terminal = [s.value for s in OrderStatus if s.is_terminal]
        rows = await self.pool.fetch(
            "SELECT state FROM orders WHERE NOT (status = ANY($1::text[])) "
            "AND ($2::text IS NULL OR fund_id = $2) ORDER BY created_at", terminal, fund_id)
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
        from mts1b_foundation import Side

        return [Fill(trade_id=r["trade_id"], order_id=r["order_id"], fund_id=r["fund_id"],
                     symbol=r["symbol"], side=Side(r["side"]), quantity=r["quantity"],
                     price=r["price"], commission=r["commission"], ts=r["ts"]) for r in rows]

    async def fills_for(self, fund_id: str, strategy_id: str, symbol: str) -> list[Fill]:
        from mts1b_foundation import Side

        rows = await self.pool.fetch(
            "SELECT * FROM fills WHERE fund_id=$1 AND strategy_id=$2 AND symbol=$3 "
            "AND NOT busted ORDER BY ts, trade_id", fund_id, strategy_id, symbol)
        return [Fill(trade_id=r["trade_id"], order_id=r["order_id"], fund_id=r["fund_id"],
                     symbol=r["symbol"], side=Side(r["side"]), quantity=r["quantity"],
                     price=r["price"], commission=r["commission"], ts=r["ts"]) for r in rows]

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

    async def nav(self, fund_id: str) -> tuple[Decimal, Decimal] | None:
        row = await self.pool.fetchrow("SELECT nav, peak_nav FROM fund_nav WHERE fund_id=$1",
                                       fund_id)
        return None if row is None else (Decimal(row["nav"]), Decimal(row["peak_nav"]))

    # --- outbox ---------------------------------------------------------------------------------

    async def claim_outbox(self, conn: asyncpg.Connection, limit: int
                           ) -> list[tuple[int, str, str, bytes]]:
        """Lock up to ``limit`` unpublished rows (SKIP LOCKED: relays share the work)."""
        rows = await conn.fetch(
            "SELECT id, msg_id, subject, payload FROM outbox WHERE published_at IS NULL "
            "ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED", limit)
        return [(r["id"], r["msg_id"], r["subject"], bytes(r["payload"])) for r in rows]

    async def unpublished_count(self) -> int:
        return int(await self.pool.fetchval(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL"))


def _status(state: OrderState) -> str:
    return state.status.value if state.status else "new"
