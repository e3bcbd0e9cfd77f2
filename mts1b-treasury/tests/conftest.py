"""Fixtures: a PostgreSQL treasury schema per test (dropped afterwards), or a skip naming why."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from mts1b_treasury.db import TreasuryDb

DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
NATS_URL = os.environ.get("MTS_NATS_URL", "nats://127.0.0.1:4222")


async def _reachable() -> bool:
    try:
        conn = await asyncpg.connect(DSN, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


async def open_db() -> TreasuryDb:
    """A treasury on a fresh schema (the caller drops it), or a skip without PostgreSQL."""
    if not await _reachable():
        pytest.skip(f"PostgreSQL not reachable at {DSN} (python3 dev.py test starts one)")
    return await TreasuryDb.open(DSN, schema=f"tr_t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
async def db() -> AsyncIterator[TreasuryDb]:
    d = await open_db()
    try:
        yield d
    finally:
        await d.drop_schema()
        await d.close()
