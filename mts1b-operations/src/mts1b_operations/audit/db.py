"""The audit chain's PostgreSQL schema, and the role that may only append to it.

Why two ways to open: the schema's owner creates it and applies the migrations
(:meth:`AuditDb.open`), while the recorder should run as a role that can insert and select
and nothing else (:meth:`AuditDb.grant_recorder`) - such a role cannot create a schema, so
:meth:`AuditDb.open_existing` opens one the owner prepared and checks its migrations are in.

Every connection goes through :meth:`SchemaDatabase.connecting`: a malformed DSN is one line
naming ``--dsn`` (:meth:`AuditDb.dsn_error`) and a refused connection names the server, never
the password.
"""

from __future__ import annotations

import re
from typing import Any, Self

import asyncpg
from mts1b_platform.dsn import DSN_FORM, shown_dsn
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
    def dsn_error(cls, dsn: str, problem: str) -> Exception:
        """A DSN no driver can read, named as the option (or variable) it came from, with its
        credentials masked."""
        return AuditInputError("--dsn", shown_dsn(dsn),
                               f"{problem}; write {DSN_FORM} (--dsn or $MTS_DATABASE_URL)")

    @classmethod
    async def open_existing(cls, dsn: str, *, schema: str | None = None, min_size: int = 1,
                            max_size: int = 8) -> Self:
        """A pool on a schema whose migrations are all applied, creating nothing: what the
        recorder's insert-and-select role can open. AuditError says what is missing."""
        name = schema or cls.DEFAULT_SCHEMA
        if (problem := schema_name_error(name)) is not None:
            raise AuditInputError("schema", name, problem)
        with cls.connecting(dsn):
            pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size,
                                             server_settings={"search_path": name})
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

    @classmethod
    async def check_role(cls, dsn: str, role: str) -> None:
        """Refuse ``role`` (``audit init --grant``) unless it is a plain name of a role the
        server has. Called before :meth:`open`, so that a mistyped role, or one not created
        yet, leaves nothing half done: no schema without its grant."""
        if not _ROLE.match(role):
            raise AuditInputError("--grant", role, f"must match {_ROLE.pattern}")
        with cls.connecting(dsn):
            conn = await asyncpg.connect(dsn)
        try:
            found = await conn.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", role)
        finally:
            await conn.close()
        if not found:
            raise AuditInputError("--grant", role, f"{_missing_role(role)}; nothing was created")

    async def grant_recorder(self, role: str) -> None:
        """Let ``role`` append to and read the chain, and nothing else: INSERT and SELECT on
        the two tables (and reading ``schema_migrations``), UPDATE, DELETE and TRUNCATE
        revoked. The triggers refuse those to every role anyway; the grant makes the
        recorder's own credentials unable to even try."""
        if not _ROLE.match(role):
            raise AuditInputError("role", role, f"must match {_ROLE.pattern}")
        tables = "audit_entries, audit_checkpoints"
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute(f"GRANT USAGE ON SCHEMA {self.schema} TO {role}")
                await conn.execute(f"REVOKE ALL ON {tables}, schema_migrations FROM {role}")
                await conn.execute(f"GRANT SELECT, INSERT ON {tables} TO {role}")
                await conn.execute(f"GRANT SELECT ON schema_migrations TO {role}")
        except asyncpg.UndefinedObjectError:  # dropped since check_role, or never checked
            raise AuditInputError("role", role, _missing_role(role)) from None
        except asyncpg.PostgresError as exc:  # e.g. not the schema's owner
            raise AuditError(f"cannot grant {role} its rights on the audit schema "
                             f"{self.schema!r}: {type(exc).__name__}", role=role,
                             schema=self.schema) from None


def _missing_role(role: str) -> str:
    return (f"no such role in the database: create it first (CREATE ROLE {role} LOGIN, with "
            "a password or another way to log in), then run `audit init --grant` again")
