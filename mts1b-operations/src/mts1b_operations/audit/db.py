"""The audit chain's PostgreSQL schema, and the role that may only append to it.

Why two ways to open: the schema's owner creates it and applies the migrations
(:meth:`AuditDb.open`), while the recorder should run as a role that can insert and select
and nothing else (:meth:`AuditDb.grant_recorder`) - such a role cannot create a schema, so
:meth:`AuditDb.open_existing` opens one the owner prepared and checks its migrations are in.
"""

from __future__ import annotations

import re
from typing import Any, Self

import asyncpg
from mts1b_platform.migrations import SchemaDatabase, package_migrations, schema_name_error

from mts1b_operations.audit.errors import AuditError, AuditInputError

__all__ = ["DEFAULT_SCHEMA", "AuditDb"]

DEFAULT_SCHEMA = "mts_audit"
_ROLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class AuditDb(SchemaDatabase):
    """A connection pool on the audit chain's schema."""

    PACKAGE = "mts1b_operations.audit"
    LOCK_KEY = 0x6D74_6175  # advisory lock id for the audit chain's migrations ("mtau")
    DEFAULT_SCHEMA = DEFAULT_SCHEMA
    pool: asyncpg.Pool

    @classmethod
    def connect_error(cls, message: str, **context: Any) -> Exception:
        return AuditError(message, **context)

    @classmethod
    async def open_existing(cls, dsn: str, *, schema: str | None = None, min_size: int = 1,
                            max_size: int = 8) -> Self:
        """A pool on a schema whose migrations are all applied, creating nothing: what the
        recorder's insert-and-select role can open. AuditError says what is missing."""
        name = schema or cls.DEFAULT_SCHEMA
        if (problem := schema_name_error(name)) is not None:
            raise AuditInputError("schema", name, problem)
        try:
            pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size,
                                             server_settings={"search_path": name})
        except (OSError, asyncpg.PostgresError) as exc:
            raise AuditError(f"cannot connect to PostgreSQL: {type(exc).__name__}") from None
        db = cls(pool, name)
        wanted = {m.version for m in package_migrations(cls.PACKAGE)}
        try:
            done = set(await db.migration_versions())
        except asyncpg.PostgresError:
            done = set()
        if not wanted <= done:
            await pool.close()
            raise AuditError(f"the audit schema {name!r} is missing or not migrated: run "
                             "`mts mts1b-operations audit init` as its owner", schema=name)
        return db

    async def grant_recorder(self, role: str) -> None:
        """Let ``role`` append to and read the chain, and nothing else: INSERT and SELECT on
        the two tables (and reading ``schema_migrations``), UPDATE, DELETE and TRUNCATE
        revoked. The triggers refuse those to every role anyway; the grant makes the
        recorder's own credentials unable to even try."""
        if not _ROLE.match(role):
            raise AuditInputError("role", role, f"must match {_ROLE.pattern}")
        tables = "audit_entries, audit_checkpoints"
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(f"GRANT USAGE ON SCHEMA {self.schema} TO {role}")
            await conn.execute(f"REVOKE ALL ON {tables}, schema_migrations FROM {role}")
            await conn.execute(f"GRANT SELECT, INSERT ON {tables} TO {role}")
            await conn.execute(f"GRANT SELECT ON schema_migrations TO {role}")
