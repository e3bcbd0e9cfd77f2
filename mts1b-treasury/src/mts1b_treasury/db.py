"""The treasury's PostgreSQL schema: one pool, the package's migrations applied on open.

Why a schema of its own (``mts_treasury`` by default): the treasury is the system of record for
funds and their books, and shares a database server with the OMS without sharing its tables.
"""

from __future__ import annotations

import asyncpg
from mts1b_platform.migrations import (
    applied_versions,
    apply_migrations,
    create_schema,
    package_migrations,
    schema_name_error,
)

from mts1b_treasury.errors import TreasuryError

__all__ = ["DEFAULT_SCHEMA", "TreasuryDb"]

DEFAULT_SCHEMA = "mts_treasury"
_LOCK_KEY = 0x6D74_7472  # advisory lock id for the treasury's migrations ("mttr")


class TreasuryDb:
    """A connection pool on the treasury's schema. Create with :meth:`open`."""

    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self.pool = pool
        self.schema = schema

    @classmethod
    async def open(cls, dsn: str, *, schema: str = DEFAULT_SCHEMA, min_size: int = 1,
                   max_size: int = 8) -> TreasuryDb:
        """Connect, create ``schema`` if needed and apply pending migrations."""
        if (problem := schema_name_error(schema)) is not None:
            raise TreasuryError(problem, schema=schema)
        try:
            conn = await asyncpg.connect(dsn)
        except (OSError, asyncpg.PostgresError) as exc:
            raise TreasuryError(f"cannot connect to PostgreSQL: {type(exc).__name__}") from None
        try:
            await create_schema(conn, schema)
        finally:
            await conn.close()
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size,
                                         server_settings={"search_path": schema})
        db = cls(pool, schema)
        await db.migrate()
        return db

    async def migrate(self) -> list[int]:
        """Apply the migrations not yet recorded; return the versions applied now."""
        return await apply_migrations(self.pool, package_migrations("mts1b_treasury"),
                                      _LOCK_KEY)

    async def migration_versions(self) -> list[int]:
        return await applied_versions(self.pool)

    async def close(self) -> None:
        await self.pool.close()

    async def drop_schema(self) -> None:
        """Remove every table of this schema (tests)."""
        async with self.pool.acquire() as conn:
            await conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
