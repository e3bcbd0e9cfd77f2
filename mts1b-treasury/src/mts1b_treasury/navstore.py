"""NAV strikes stored in PostgreSQL: each strike once, restatements explicit, history kept.

Why a store and not just the function: a NAV is published and read by others (reports, the
allocator, investors), so striking a session must be idempotent and a changed NAV must be a
decision, not an accident. The rules of :meth:`NavStore.strike`:

- no current strike of (fund, session): strike, store, return it;
- a current strike with the same ``inputs_sha256``: return the stored strike (its exact bytes;
  no new row) - striking the same day again gives the same bits;
- a current strike with other inputs: refused with :class:`NavRestateRefused` naming both
  digests, unless ``restate=True``; then the old row stays (``current = false``, it is history)
  and the new row is current and names it in ``restates``.

Rows are never edited beyond that one flag, nor deleted (a trigger of ``0003_nav.sql`` refuses
it). Two processes striking the same session are serialised by a transaction-scoped advisory
lock on (fund, session), and the partial unique index keeps one current row whatever happens.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from mts1b_foundation import FundNav, ReplyCode, parse_message

from mts1b_treasury.db import TreasuryDb
from mts1b_treasury.errors import TreasuryError
from mts1b_treasury.nav import NavInputs, canonical_inputs_json, strike_nav

__all__ = ["NavRestateRefused", "NavStore", "StoredStrike"]

_CURRENT = ("SELECT strike_id, fund_id, session, inputs_json, inputs_sha256, nav_json, "
            "outputs_sha256, struck_at, current, restates FROM nav_strikes "
            "WHERE fund_id = $1 AND session = $2 AND current")
_HISTORY = ("SELECT strike_id, fund_id, session, inputs_json, inputs_sha256, nav_json, "
            "outputs_sha256, struck_at, current, restates FROM nav_strikes "
            "WHERE fund_id = $1 AND session = $2 ORDER BY strike_id")
_INSERT = ("INSERT INTO nav_strikes (fund_id, session, inputs_json, inputs_sha256, nav_json, "
           "outputs_sha256, nav, struck_at, current, restates) "
           "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, true, $9) RETURNING strike_id, fund_id, "
           "session, inputs_json, inputs_sha256, nav_json, outputs_sha256, struck_at, current, "
           "restates")


class NavRestateRefused(TreasuryError):
    """A session already has a current strike from other inputs, and no restatement was asked."""

    code: ClassVar[str] = "TREASURY.NAV_RESTATE_REFUSED"
    reply_code: ClassVar[ReplyCode] = ReplyCode.IDEMPOTENCY_CONFLICT


@dataclass(frozen=True, slots=True)
class StoredStrike:
    """One stored strike: the FundNav, the exact bytes stored, and its place in the history."""

    strike_id: int
    nav: FundNav
    nav_json: bytes
    inputs_json: str
    struck_at: dt.datetime
    current: bool
    restates: int | None


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _lock_key(fund_id: str, session: dt.date) -> int:
    digest = hashlib.sha256(f"nav\x1f{fund_id}\x1f{session.isoformat()}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _stored(row: Any) -> StoredStrike:
    nav_json = str(row["nav_json"]).encode()
    return StoredStrike(
        strike_id=int(row["strike_id"]), nav=parse_message(FundNav, nav_json),
        nav_json=nav_json, inputs_json=str(row["inputs_json"]), struck_at=row["struck_at"],
        current=bool(row["current"]),
        restates=None if row["restates"] is None else int(row["restates"]))


class NavStore:
    """Strikes NAVs through :func:`~mts1b_treasury.nav.strike_nav` and keeps them."""

    def __init__(self, db: TreasuryDb, *, clock: Callable[[], dt.datetime] = _utc_now) -> None:
        self._pool = db.pool
        self._clock = clock

    async def strike(self, inputs: NavInputs, *, restate: bool = False) -> StoredStrike:
        """Strike ``inputs``' session and store it, by the rules of the module.

        The strike itself runs before the transaction (it is pure); a bad input raises
        :class:`~mts1b_treasury.errors.TreasuryInputError` and stores nothing.
        """
        inputs_json = canonical_inputs_json(inputs)
        digest = hashlib.sha256(inputs_json.encode()).hexdigest()
        nav = strike_nav(inputs, inputs_digest=digest)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)",
                               _lock_key(inputs.fund_id, inputs.session))
            row = await conn.fetchrow(_CURRENT, inputs.fund_id, inputs.session)
            if row is not None and row["inputs_sha256"] == digest:
                return _stored(row)
            if row is not None and not restate:
                raise NavRestateRefused(
                    f"{inputs.fund_id} {inputs.session} is struck already from other inputs; "
                    "pass restate=True to restate it (the old strike is kept as history)",
                    fund_id=inputs.fund_id, session=inputs.session.isoformat(),
                    stored_inputs_sha256=row["inputs_sha256"], new_inputs_sha256=digest)
            replaced = None if row is None else int(row["strike_id"])
            if replaced is not None:
                await conn.execute("UPDATE nav_strikes SET current = false WHERE strike_id = $1",
                                   replaced)
            new = await conn.fetchrow(
                _INSERT, inputs.fund_id, inputs.session, inputs_json, digest,
                nav.to_json().decode(), nav.outputs_sha256, nav.nav, self._clock(), replaced)
        return _stored(new)

    async def current(self, fund_id: str, session: dt.date) -> StoredStrike | None:
        """The current strike of ``fund_id``'s ``session``, or ``None``."""
        row = await self._pool.fetchrow(_CURRENT, fund_id, session)
        return None if row is None else _stored(row)

    async def history(self, fund_id: str, session: dt.date) -> list[StoredStrike]:
        """Every strike of the session, oldest first (the current one last after a restatement)."""
        rows = await self._pool.fetch(_HISTORY, fund_id, session)
        return [_stored(r) for r in rows]

    async def previous_nav(self, fund_id: str, session: dt.date) -> Decimal:
        """The NAV of the latest current strike before ``session`` (0 if none): the
        ``previous_nav`` of the session's strike. Sessions without a strike are skipped."""
        value = await self._pool.fetchval(
            "SELECT nav FROM nav_strikes WHERE fund_id = $1 AND session < $2 AND current "
            "ORDER BY session DESC LIMIT 1", fund_id, session)
        return Decimal(0) if value is None else Decimal(value)

