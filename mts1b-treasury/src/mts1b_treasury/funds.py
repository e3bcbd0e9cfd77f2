"""Funds as the treasury's records: create, configure, allocate capital, close.

Why here and not in a JSON file the OMS reads: a fund's limits and capital are decisions with
an owner and a history. Every configuration a fund ever had is kept (``fund_versions``: who,
when, why, and which limits it loosened); a change that loosens a limit needs the ``risk``
role (:func:`~mts1b_treasury.limits.loosened_limits`); every capital decision is an
:class:`~mts1b_foundation.Allocation` row. What the registry commits it then hands to its
:class:`FundPublisher` (the NATS KV bucket the OMS loads funds from, and the
``mts.v1.treasury.funds.updated`` event); PostgreSQL stays the system of record, and
:meth:`FundRegistry.publish_all` puts the bucket right again after a publish was missed.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

import asyncpg
from mts1b_foundation import Allocation, FundConfig, MtsError, parse_message
from mts1b_platform.logging import get_logger

from mts1b_treasury.db import TreasuryDb
from mts1b_treasury.errors import TreasuryError, TreasuryInputError
from mts1b_treasury.limits import loosened_limits

__all__ = ["RISK_ROLE", "FundPublisher", "FundRecord", "FundRegistry", "LimitsNeedRiskRole"]

_log = get_logger("mts1b_treasury.funds")
_ENTITY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@=+-]{0,127}$")

RISK_ROLE = "risk"
"""The role that may loosen a fund's limits (the signed commands' role of the same name)."""


class LimitsNeedRiskRole(TreasuryError):
    """A configuration loosens limits and the caller does not hold the ``risk`` role."""

    code = "TREASURY.NEEDS_RISK_ROLE"


@dataclass(frozen=True, slots=True)
class FundRecord:
    """A fund as the treasury holds it: its configuration, version and status."""

    config: FundConfig
    version: int
    status: str
    updated_at: dt.datetime
    updated_by: str
    tax_entity: str = "default"
    """The taxpayer whose funds the wash-sale rule sees together (fixed at creation)."""

    @property
    def fund_id(self) -> str:
        return self.config.fund_id

    @property
    def is_open(self) -> bool:
        return self.status == "open"


class FundPublisher(Protocol):
    """Where committed fund changes go (the bus in a deployment; a list in tests)."""

    async def fund_changed(self, record: FundRecord) -> None: ...

    async def allocated(self, allocation: Allocation) -> None: ...


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _record(row: asyncpg.Record) -> FundRecord:
    config = row["config"]
    return FundRecord(parse_message(FundConfig, config if isinstance(config, str)
                                    else json.dumps(config)),
                      row["version"], row["status"], row["updated_at"], row["updated_by"],
                      row["tax_entity"])


class FundRegistry:
    """Funds in the treasury's PostgreSQL schema; changes published after they commit."""

    def __init__(self, db: TreasuryDb, publisher: FundPublisher | None = None) -> None:
        self.db = db
        self.publisher = publisher

    async def create(self, config: FundConfig, *, actor: str, reason: str | None = None,
                     tax_entity: str = "default",
                     now: dt.datetime | None = None) -> FundRecord:
        """Record a new fund (version 1). An existing id is refused, closed funds included:
        a fund id names one history."""
        if not _ENTITY.match(tax_entity):
            raise TreasuryInputError("tax_entity", tax_entity, "must be an id (A-Z a-z 0-9 _ "
                                     ". : @ = + -, at most 128)")
        when = now or _now()
        async with self.db.pool.acquire() as conn, conn.transaction():
            inserted = await conn.fetchrow(
                "INSERT INTO funds (fund_id, config, version, status, updated_at, updated_by, "
                "tax_entity) VALUES ($1, $2::jsonb, 1, 'open', $3, $4, $5) ON CONFLICT "
                "(fund_id) DO NOTHING RETURNING *", config.fund_id, config.to_json().decode(),
                when, actor, tax_entity)
            if inserted is None:
                raise TreasuryInputError("fund_id", config.fund_id, "a fund with this id exists "
                                         "(use configure to change it)")
            await self._version(conn, config, 1, "open", when, actor, reason, [])
        record = _record(inserted)
        await self._published(record)
        return record

    async def configure(self, config: FundConfig, *, actor: str,
                        roles: Collection[str] = (), reason: str | None = None,
                        now: dt.datetime | None = None) -> FundRecord:
        """Replace an open fund's configuration (a new version). Loosening any limit needs
        ``"risk"`` in ``roles``; nothing is written when it is refused."""
        when = now or _now()
        async with self.db.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT * FROM funds WHERE fund_id = $1 FOR UPDATE",
                                      config.fund_id)
            current = self._open(row, config.fund_id)
            loosened = loosened_limits(current.config, config)
            if loosened and RISK_ROLE not in roles:
                raise LimitsNeedRiskRole(
                    f"fund {config.fund_id}: the new configuration loosens "
                    f"{', '.join(loosened)}; that needs the {RISK_ROLE!r} role",
                    fund_id=config.fund_id, loosened=",".join(loosened))
            if config == current.config:
                return current
            version = current.version + 1
            updated = await conn.fetchrow(
                "UPDATE funds SET config = $2::jsonb, version = $3, updated_at = $4, "
                "updated_by = $5 WHERE fund_id = $1 RETURNING *",
                config.fund_id, config.to_json().decode(), version, when, actor)
            await self._version(conn, config, version, "open", when, actor, reason, loosened)
        record = _record(updated)
        await self._published(record)
        return record

    async def close(self, fund_id: str, *, actor: str, reason: str,
                    now: dt.datetime | None = None) -> FundRecord:
        """Close an open fund: the OMS stops serving it. Its books stay (the ledger keeps
        everything); closing a fund that still holds positions or cash is the caller's check
        (the CLI refuses it)."""
        when = now or _now()
        async with self.db.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT * FROM funds WHERE fund_id = $1 FOR UPDATE",
                                      fund_id)
            current = self._open(row, fund_id)
            version = current.version + 1
            updated = await conn.fetchrow(
                "UPDATE funds SET status = 'closed', version = $2, updated_at = $3, "
                "updated_by = $4 WHERE fund_id = $1 RETURNING *", fund_id, version, when, actor)
            await self._version(conn, current.config, version, "closed", when, actor, reason,
                                [])
        record = _record(updated)
        await self._published(record)
        return record

    async def get(self, fund_id: str) -> FundRecord | None:
        row = await self.db.pool.fetchrow("SELECT * FROM funds WHERE fund_id = $1", fund_id)
        return None if row is None else _record(row)

    async def require(self, fund_id: str) -> FundRecord:
        """The fund, or a :class:`TreasuryInputError` naming the id."""
        record = await self.get(fund_id)
        if record is None:
            raise TreasuryInputError("fund_id", fund_id, "no such fund")
        return record

    async def funds(self, *, include_closed: bool = False,
                    tax_entity: str | None = None) -> list[FundRecord]:
        rows = await self.db.pool.fetch(
            "SELECT * FROM funds WHERE ($1 OR status = 'open') AND ($2::text IS NULL OR "
            "tax_entity = $2) ORDER BY fund_id", include_closed, tax_entity)
        return [_record(r) for r in rows]

    async def history(self, fund_id: str) -> list[dict[str, Any]]:
        """Every version of a fund: version, status, when, who, why, what it loosened."""
        rows = await self.db.pool.fetch(
            "SELECT version, status, changed_at, changed_by, reason, loosened FROM "
            "fund_versions WHERE fund_id = $1 ORDER BY version", fund_id)
        return [dict(r) for r in rows]

    async def allocate(self, allocation: Allocation, *, actor: str) -> Allocation:
        """Record capital for a fund (``strategy_id`` ``None``) or one of its strategies.

        A strategy must be one the fund lists, and the strategies' current allocations may
        not add up to more than the fund's own (or, before one is set, its target NAV).
        """
        async with self.db.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT * FROM funds WHERE fund_id = $1 FOR UPDATE",
                                      allocation.fund_id)
            fund = self._open(row, allocation.fund_id).config
            strategy = allocation.strategy_id or ""
            if strategy and strategy not in fund.strategies:
                raise TreasuryInputError("strategy_id", strategy,
                                         f"fund {fund.fund_id} lists strategies "
                                         f"{fund.strategies}")
            current = await _current(conn, fund.fund_id)
            current[strategy] = allocation.amount_usd
            capital = current.get("", fund.target_nav_usd)
            sleeves = sum((v for k, v in current.items() if k), Decimal(0))
            if sleeves > capital:
                raise TreasuryInputError(
                    "amount_usd", allocation.amount_usd,
                    f"the strategies' allocations would total {sleeves:f}, more than the fund's "
                    f"capital {capital:f}")
            await conn.execute(
                "INSERT INTO allocations (fund_id, strategy_id, amount, as_of, reason, actor) "
                "VALUES ($1, $2, $3, $4, $5, $6)", fund.fund_id, strategy, allocation.amount_usd,
                allocation.as_of, allocation.reason, actor)
        if self.publisher is not None:
            try:
                await self.publisher.allocated(allocation)
            except MtsError as exc:
                _log.warning("allocation committed, not published", fund_id=allocation.fund_id,
                             error=exc.code)
        return allocation

    async def allocations(self, fund_id: str) -> list[Allocation]:
        """The current allocation of the fund and of each strategy that has one."""
        rows = await _current_rows(self.db.pool, fund_id)
        return [Allocation(fund_id=fund_id, strategy_id=r["strategy_id"] or None,
                           amount_usd=r["amount"], as_of=r["as_of"], reason=r["reason"])
                for r in rows]

    async def import_funds(self, configs: Sequence[FundConfig], *, actor: str,
                           roles: Collection[str] = ()) -> list[FundRecord]:
        """Create the funds that do not exist and configure those that do (a ``funds.json``
        the OMS used to read, imported once)."""
        out = []
        for config in configs:
            existing = await self.get(config.fund_id)
            if existing is None:
                out.append(await self.create(config, actor=actor, reason="imported"))
            else:
                out.append(await self.configure(config, actor=actor, roles=roles,
                                                reason="imported"))
        return out

    async def publish_all(self) -> int:
        """Hand every fund to the publisher again (the service does it at start: a change
        committed while the bus was unreachable reaches it then); returns how many."""
        records = await self.funds(include_closed=True)
        for record in records:
            await self._published(record)
        return len(records)

    async def _published(self, record: FundRecord) -> None:
        """Hand a committed change to the publisher. A bus failure does not undo the commit
        (PostgreSQL is the record); it is logged, and :meth:`publish_all` repairs it."""
        if self.publisher is None:
            return
        try:
            await self.publisher.fund_changed(record)
        except MtsError as exc:
            _log.warning("fund committed, not published", fund_id=record.fund_id,
                         version=record.version, error=exc.code)

    @staticmethod
    def _open(row: asyncpg.Record | None, fund_id: str) -> FundRecord:
        if row is None:
            raise TreasuryInputError("fund_id", fund_id, "no such fund")
        record = _record(row)
        if not record.is_open:
            raise TreasuryInputError("fund_id", fund_id, "the fund is closed")
        return record

    @staticmethod
    async def _version(conn: asyncpg.Connection, config: FundConfig, version: int,
                       status: str, when: dt.datetime, actor: str, reason: str | None,
                       loosened: list[str]) -> None:
        await conn.execute(
            "INSERT INTO fund_versions (fund_id, version, config, status, changed_at, "
            "changed_by, reason, loosened) VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8)",
            config.fund_id, version, config.to_json().decode(), status, when, actor, reason,
            loosened)


async def _current_rows(conn: asyncpg.Connection | asyncpg.Pool, fund_id: str
                        ) -> list[asyncpg.Record]:
    """The latest allocation row per strategy ('' for the fund's own capital)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT DISTINCT ON (strategy_id) strategy_id, amount, as_of, reason FROM allocations "
        "WHERE fund_id = $1 ORDER BY strategy_id, allocation_id DESC", fund_id)
    return rows


async def _current(conn: asyncpg.Connection, fund_id: str) -> dict[str, Decimal]:
    return {r["strategy_id"]: r["amount"] for r in await _current_rows(conn, fund_id)}
