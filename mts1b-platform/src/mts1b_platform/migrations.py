"""SQL migrations shipped inside a library's package, applied once each, in order.

Why one runner: every service with a PostgreSQL schema (the OMS, the treasury) needs the same
three guarantees - files ``NNNN_name.sql`` in a package folder applied in version order, each
exactly once (recorded in ``schema_migrations``), and two processes starting together never
both applying one (a transaction-scoped advisory lock). The runner takes the pool as a duck
type so the platform itself does not depend on asyncpg.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol, Self

from mts1b_platform.dsn import connecting, dsn_message

__all__ = [
    "Migration",
    "MigrationPool",
    "applied_versions",
    "apply_migrations",
    "package_migrations",
    "schema_name_error",
]

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file: its version (the 4-digit prefix), name and SQL text."""

    version: int
    name: str
    sql: str


class MigrationPool(Protocol):
    """What the runner needs of an ``asyncpg.Pool``."""

    def acquire(self) -> Any: ...

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...


def schema_name_error(schema: str) -> str | None:
    """Why ``schema`` cannot be used as a PostgreSQL schema name here, or ``None``.

    Schema names are interpolated into SQL (``CREATE SCHEMA``, ``search_path``), so only plain
    lower-case identifiers are accepted.
    """
    if _SCHEMA.match(schema):
        return None
    return f"schema name must match {_SCHEMA.pattern}"


class _Executes(Protocol):
    async def execute(self, query: str, *args: Any) -> str: ...


async def create_schema(conn: _Executes, schema: str) -> None:
    """``CREATE SCHEMA IF NOT EXISTS``, safe when several processes start at once.

    Two sessions running it together for a new name can both pass the "if not exists" check,
    and the second then fails on the catalogue's unique index (SQLSTATE 23505) although the
    schema it wanted now exists: that failure is the schema existing, and is taken as such.
    """
    if (problem := schema_name_error(schema)) is not None:
        raise ValueError(problem)
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    except Exception as exc:
        if getattr(exc, "sqlstate", None) != "23505":
            raise


def package_migrations(package: str, folder: str = "migrations") -> list[Migration]:
    """The ``NNNN_name.sql`` files in ``package``'s ``folder``, sorted by version.

    Two files with one version are an error: which of them ran would depend on the order the
    file system lists them in.
    """
    found: dict[int, Migration] = {}
    for entry in resources.files(package).joinpath(folder).iterdir():
        match = _FILE.match(entry.name)
        if not match:
            continue
        version = int(match.group(1))
        if version in found:
            raise ValueError(f"{package}/{folder}: two migrations have version {version:04d} "
                             f"({found[version].name!r} and {match.group(2)!r})")
        found[version] = Migration(version, match.group(2), entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


async def apply_migrations(pool: MigrationPool, migrations: list[Migration],
                           lock_key: int) -> list[int]:
    """Apply the migrations not yet recorded in ``schema_migrations`` (in the connection's
    ``search_path`` schema), all in one transaction under advisory lock ``lock_key``; return
    the versions applied now."""
    applied_now: list[int] = []
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
            "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for migration in migrations:
            if migration.version in done:
                continue
            await conn.execute(migration.sql)
            await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                               migration.version, migration.name)
            applied_now.append(migration.version)
    return applied_now


async def applied_versions(pool: MigrationPool) -> list[int]:
    """The versions recorded in ``schema_migrations``, ascending."""
    rows = await pool.fetch("SELECT version FROM schema_migrations ORDER BY version")
    return [int(r["version"]) for r in rows]


class SchemaDatabase:
    """A connection pool on one PostgreSQL schema whose migrations ship in a package.

    Why here: every library with tables of its own (the treasury, the research registry) opens
    the same way - create the schema if needed (:func:`create_schema`), a pool whose
    ``search_path`` is that schema, the package's migrations applied once. Subclasses name the
    package and the advisory lock key; ``asyncpg`` is imported only when a database is opened,
    so the platform's core install does not need it.
    """

    PACKAGE: str = ""
    LOCK_KEY: int = 0
    DEFAULT_SCHEMA: str = ""

    def __init__(self, pool: Any, schema: str) -> None:
        self.pool = pool
        self.schema = schema

    @classmethod
    def connect_error(cls, message: str, **context: Any) -> Exception:
        """The error raised when the database cannot be used (a subclass names its own)."""
        return ConnectionError(message)

    @classmethod
    def dsn_error(cls, dsn: str, problem: str) -> Exception:
        """The error raised for a DSN no driver can read (``problem`` quotes none of it); a
        subclass names the option it came from."""
        return cls.connect_error(dsn_message(dsn, problem))

    @classmethod
    @contextlib.contextmanager
    def connecting(cls, dsn: str) -> Iterator[str]:
        """:func:`mts1b_platform.dsn.connecting` with this class's errors."""
        with connecting(dsn, cls.connect_error, cls.dsn_error) as target:
            yield target

    @classmethod
    async def open(cls, dsn: str, *, schema: str | None = None, min_size: int = 1,
                   max_size: int = 8) -> Self:
        """Connect (:meth:`connecting`), create the schema if needed and apply pending
        migrations."""
        import asyncpg

        name = schema or cls.DEFAULT_SCHEMA
        if (problem := schema_name_error(name)) is not None:
            raise cls.connect_error(problem, schema=name)
        with cls.connecting(dsn):
            conn = await asyncpg.connect(dsn)
        try:
            await create_schema(conn, name)
        finally:
            await conn.close()
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size,
                                         server_settings={"search_path": name})
        db = cls(pool, name)
        await db.migrate()
        return db

    async def migrate(self) -> list[int]:
        """Apply the package's migrations not yet recorded; return the versions applied now."""
        return await apply_migrations(self.pool, package_migrations(self.PACKAGE),
                                      self.LOCK_KEY)

    async def migration_versions(self) -> list[int]:
        return await applied_versions(self.pool)

    async def close(self) -> None:
        await self.pool.close()

    async def drop_schema(self) -> None:
        """Remove every table of this schema (tests)."""
        async with self.pool.acquire() as conn:
            await conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
