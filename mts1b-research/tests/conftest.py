"""Fixtures: a PostgreSQL research schema per test (dropped afterwards), or a skip naming why."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

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
