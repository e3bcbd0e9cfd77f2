"""Fixtures: the OMS's store - in memory, and PostgreSQL (a fresh schema per test, dropped
afterwards) - and OMS instances around it.

``store`` is parametrized: every test that takes it runs against the in-memory store (no server,
every run) and against PostgreSQL (marked ``integration``), so the lifecycle tests are also the
conformance suite of both :class:`~mts1b_oms.orderstore.OrderStore` implementations. Tests of
what only PostgreSQL does (migrations, query plans, several processes on one database) take
``pg_store``.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any, Protocol

import asyncpg
import pytest
from mts1b_foundation import BrokerProtocol, FundConfig
from mts1b_oms.memstore import InMemoryStore
from mts1b_oms.oms import Oms
from mts1b_oms.orderstore import OrderStore
from mts1b_oms.store import Store
from mts1b_oms.testing import RecordingBroker, make_fund, make_registry

DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _reachable() -> bool:
    try:
        conn = await asyncpg.connect(DSN, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


async def open_pg_store() -> Store:
    """A store on a fresh schema (the caller drops it), or a skip without PostgreSQL."""
    if not await _reachable():
        pytest.skip(f"PostgreSQL not reachable at {DSN} (python3 dev.py test starts one)")
    return await Store.open(DSN, schema=f"oms_t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
async def pg_store() -> AsyncIterator[Store]:
    s = await open_pg_store()
    try:
        yield s
    finally:
        await s.drop_schema()
        await s.close()


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.integration)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[OrderStore]:
    if request.param == "memory":
        yield InMemoryStore()
        return
    s = await open_pg_store()
    try:
        yield s
    finally:
        await s.drop_schema()
        await s.close()


@pytest.fixture
def broker() -> RecordingBroker:
    return RecordingBroker()


class MakeOms(Protocol):
    async def __call__(self, broker: BrokerProtocol, *funds: FundConfig,
                       store: OrderStore | None = None, **kw: Any) -> Oms: ...


@contextlib.asynccontextmanager
async def _maker(default: OrderStore) -> AsyncIterator[MakeOms]:
    made: list[Oms] = []

    async def make(broker: BrokerProtocol, *funds: FundConfig,
                   store: OrderStore | None = None, **kw: Any) -> Oms:
        kw.setdefault("sweep_poll_seconds", None)
        kw.setdefault("sweep_retry_seconds", 0.01)
        kw.setdefault("cancel_rate", 1000.0)
        kw.setdefault("instruments", make_registry())
        o = Oms(store or default, broker, list(funds) or [make_fund()], **kw)
        o.set_price("AAPL", Decimal(100))
        made.append(o)
        await o.start(consume_reports=False)
        return o

    try:
        yield make
    finally:
        for o in made:
            await o.stop()


@pytest.fixture
async def make(store: OrderStore) -> AsyncIterator[MakeOms]:
    """Build and start OMS instances (on the test's store unless another is given), with the
    test instrument registry (``make_registry``: AAPL, MSFT, IBM, GME), a reference price for
    AAPL, not consuming the broker's report stream and without the kill
    switch's background poll (tests call ``killswitch.poll_once`` where they mean it); sweeps
    send up to 1,000 cancels a second and retry after 10 ms. Every instance built is stopped
    at the end of the test, even when the test fails."""
    async with _maker(store) as m:
        yield m


@pytest.fixture
async def pg_make(pg_store: Store) -> AsyncIterator[MakeOms]:
    """:func:`make` on ``pg_store``."""
    async with _maker(pg_store) as m:
        yield m


@pytest.fixture
async def oms(store: OrderStore, broker: RecordingBroker) -> AsyncIterator[Oms]:
    o = Oms(store, broker, [make_fund()], instruments=make_registry(), sweep_poll_seconds=None)
    o.set_price("AAPL", Decimal(100))
    await o.start()
    try:
        yield o
    finally:
        await o.stop()


@pytest.fixture
async def nats_bus() -> AsyncIterator[Any]:
    """A bus on a fresh NATS namespace (skipped, with the reason, without NATS); its streams
    are deleted afterwards."""
    from mts1b_platform.bus import Bus, BusError

    try:
        b = await Bus.connect(namespace=f"t{uuid.uuid4().hex[:10]}", connect_timeout=2)
    except BusError as exc:
        pytest.skip(f"NATS not reachable: {exc}")
    try:
        yield b
    finally:
        await b.delete_streams()
        await b.drain()


@pytest.fixture
async def paper_bus(nats_bus: Any) -> Any:
    """:func:`nats_bus` for the tests that run the paper broker service (skipped without
    mts1b-brokers)."""
    pytest.importorskip("mts1b_brokers", reason="the paper broker service is mts1b-brokers'")
    return nats_bus
