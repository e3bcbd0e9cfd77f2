"""The alert router's PostgreSQL schema (migrations in ``alerts/migrations``).

Why PostgreSQL: the router's promise is that nothing is dropped across a restart or a SIGKILL.
An alert is acknowledged on the bus only after its state is committed here; a decision to
notify writes its outbox rows in the same transaction as the group's new state; a row is marked
delivered only after the receiver took it. So after a crash the router resumes exactly where
the database says, and the worst case is a notification sent twice, never one lost.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from mts1b_platform.migrations import SchemaDatabase

from mts1b_operations.alerts.errors import AlertsError

__all__ = ["DEFAULT_SCHEMA", "AlertsDb"]

DEFAULT_SCHEMA = "mts_alerts"


class AlertsDb(SchemaDatabase):
    """A connection pool on the router's schema, its migrations applied."""

    PACKAGE = "mts1b_operations.alerts"
    LOCK_KEY = 0x6D74_616C  # advisory lock id for the alert router's migrations ("mtal")
    DEFAULT_SCHEMA = DEFAULT_SCHEMA
    pool: asyncpg.Pool

    @classmethod
    def connect_error(cls, message: str, **context: Any) -> Exception:
        return AlertsError(message, **context)

    async def undelivered(self, receiver: str | None = None) -> int:
        """Notifications in the outbox not delivered yet (of one receiver, or all)."""
        async with self.pool.acquire() as conn:
            value = await conn.fetchval(
                "SELECT count(*) FROM outbox WHERE delivered_at IS NULL AND "
                "($1::text IS NULL OR receiver = $1)", receiver)
        return int(value or 0)
