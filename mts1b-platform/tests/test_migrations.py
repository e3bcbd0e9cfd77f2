"""The one migration runner: files found in version order, each applied once, concurrent
starts safe (a real PostgreSQL for the database parts)."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from mts1b_platform.migrations import (
    SchemaDatabase,
    applied_versions,
    apply_migrations,
    create_schema,
    package_migrations,
    schema_name_error,
)

DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def package(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    name = f"migpkg_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / name / "migrations"
    folder.mkdir(parents=True)
    (tmp_path / name / "__init__.py").write_text("")
    (folder / "0002_second.sql").write_text("CREATE TABLE b (x int);")
    (folder / "0001_first.sql").write_text("CREATE TABLE a (x int);")
    (folder / "README.txt").write_text("not a migration")
    (folder / "3_bad_name.sql").write_text("not one either")
    sys.path.insert(0, str(tmp_path))
    try:
        yield name, folder
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)


def test_files_come_in_version_order_and_others_are_ignored(package: tuple[str, Path]) -> None:
    name, _ = package
    assert [(m.version, m.name) for m in package_migrations(name)] == [(1, "first"),
                                                                       (2, "second")]


def test_two_files_with_one_version_are_refused(package: tuple[str, Path]) -> None:
    name, folder = package
    (folder / "0002_other.sql").write_text("SELECT 1;")
    with pytest.raises(ValueError, match="two migrations have version 0002"):
        package_migrations(name)


@pytest.mark.parametrize("bad", ["Bad", "a-b", "x;drop", "", "1abc"])
def test_schema_names_are_plain_identifiers(bad: str) -> None:
    assert schema_name_error(bad) is not None
    assert schema_name_error("mts_oms_2") is None


@pytest.mark.integration
async def test_each_migration_applies_once_and_concurrent_starts_are_safe(
        package: tuple[str, Path]) -> None:
    asyncpg = pytest.importorskip("asyncpg")
    try:
        probe = await asyncpg.connect(DSN, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        pytest.skip(f"PostgreSQL not reachable at {DSN}")
    await probe.close()
    name, _ = package
    schema = f"mig_t_{uuid.uuid4().hex[:10]}"
    conns = [await asyncpg.connect(DSN) for _ in range(4)]
    try:
        await asyncio.gather(*(create_schema(c, schema) for c in conns))
    finally:
        for c in conns:
            await c.close()
    pool = await asyncpg.create_pool(DSN, min_size=1, max_size=4,
                                     server_settings={"search_path": schema})
    try:
        runs = await asyncio.gather(*(apply_migrations(pool, package_migrations(name), 4242)
                                      for _ in range(3)))
        assert sorted(runs) == [[], [], [1, 2]]
        assert await applied_versions(pool) == [1, 2]
        assert await apply_migrations(pool, package_migrations(name), 4242) == []
    finally:
        await pool.execute(f"DROP SCHEMA {schema} CASCADE")
        await pool.close()


class _Db(SchemaDatabase):
    PACKAGE = "unused_here"  # open fails before any migration is read
    DEFAULT_SCHEMA = "unused_here"


async def test_open_names_the_server_it_cannot_reach_never_the_password() -> None:
    """Every library's database opens through here: a refused connection says where it went
    (host:port/database and user), a DSN no driver can read is refused as a DSN, and neither
    quotes the password (both were asyncpg's exception type alone, or its ValueError)."""
    pytest.importorskip("asyncpg", reason="the database extra (asyncpg) is not installed")
    with pytest.raises(ConnectionError) as refused:
        await _Db.open("postgresql://ops:s3cret-pw@127.0.0.1:1/books")
    assert str(refused.value) == ("cannot connect to PostgreSQL at 127.0.0.1:1/books (user ops): "
                                  "ConnectionRefusedError")
    with pytest.raises(ConnectionError) as malformed:
        await _Db.open("postgresql://ops:s3cret-pw@127.0.0.1:notaport/books")
    assert str(malformed.value) == (
        "the DSN 'postgresql://ops:***@127.0.0.1:notaport/books' cannot be used: its port is "
        "not a number from 1 to 65535; write postgresql://USER@HOST:PORT/DATABASE")
