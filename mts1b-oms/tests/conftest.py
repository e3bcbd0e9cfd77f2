"""Fixtures: a fresh PostgreSQL schema per test (dropped afterwards) and an OMS around it."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import asyncpg
import pytest
from mts1b_oms.oms import Oms
from mts1b_oms.store import Store
from mts1b_oms.testing import RecordingBroker, make_fund

DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _reachable() -> bool:
    try:
        conn = await asyncpg.connect(DSN, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    if not await _reachable():
        pytest.skip(f"PostgreSQL not reachable at {DSN} (python3 dev.py test starts one)")
    s = await Store.open(DSN, schema=f"oms_t_{uuid.uuid4().hex[:12]}")
    try:
        yield s
    finally:
        await s.drop_schema()
        await s.close()


@pytest.fixture
def broker() -> RecordingBroker:
    return RecordingBroker()


@pytest.fixture
async def oms(store: Store, broker: RecordingBroker) -> AsyncIterator[Oms]:
    o = Oms(store, broker, [make_fund()])
    o.set_price("AAPL", Decimal(100))
    await o.start()
    try:
        yield o
    finally:
        await o.stop()
