"""Fixtures: a PostgreSQL research schema per test (dropped afterwards), or a skip naming why."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from mts1b_research.db import ResearchDb

DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


async def open_db() -> ResearchDb:
    """A registry on a fresh schema (the caller drops it), or a skip without PostgreSQL."""
    try:
        conn = await asyncpg.connect(DSN, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        pytest.skip(f"PostgreSQL not reachable at {DSN} (python3 dev.py test starts one)")
    await conn.close()
    return await ResearchDb.open(DSN, schema=f"rs_t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
async def db() -> AsyncIterator[ResearchDb]:
    d = await open_db()
    try:
        yield d
    finally:
        await d.drop_schema()
        await d.close()


@pytest.fixture
async def paper_env(tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    """The environment of a paper loop run by its commands in ``tmp_path``: its own dev
    folder, registry schema and NATS namespace (``MTS_PAPER_NAMESPACE``), the venv's ``mts``
    first on PATH. Skipped without the libraries the loop runs or without PostgreSQL;
    afterwards the loop is stopped and purged and the schema dropped."""
    from mts1b_research.paper import needed_libraries

    missing = needed_libraries()
    if missing:
        pytest.skip(f"the paper loop needs {missing}")
    try:
        conn = await asyncpg.connect(DSN, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        pytest.skip(f"PostgreSQL not reachable at {DSN}")
    tag = uuid.uuid4().hex[:8]
    env = {**os.environ, "MTS_DEV_DIR": str(tmp_path / "dev"), "MTS_DATABASE_URL": DSN,
           "MTS_RESEARCH_SCHEMA": f"rs_paper_{tag}", "MTS_PAPER_NAMESPACE": f"paper{tag}",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    try:
        yield env
    finally:
        subprocess.run([sys.executable, "-m", "mts1b_platform.cli", "mts1b-research", "paper",
                        "down", "--purge"], env=env, capture_output=True, timeout=120,
                       check=False)
        await conn.execute(f'DROP SCHEMA IF EXISTS "rs_paper_{tag}" CASCADE')
        await conn.close()
