"""End to end over real NATS JetStream and PostgreSQL: three sleeves composed into one fund,
the OMS rebalancing the composed target with sleeve ownership (fills split by sleeve), then a
strategy halted and the fund recomposed without it (issue #17).

Skipped, with the reason, without mts1b-oms (install it from its folder, CONTRIBUTING.md) or
without the servers (``python3 dev.py test`` provides them; ``MTS_DATABASE_URL`` and
``MTS_NATS_URL`` say where).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from mts1b_foundation import (
    CommandReply,
    HaltTrading,
    RebalanceReport,
    ReplyCode,
    SleeveAllocation,
    TargetPortfolio,
    parse_message,
)
from mts1b_portfolio import Composition, Constraints, Sleeve, compose

asyncpg = pytest.importorskip("asyncpg", reason="the end-to-end test needs mts1b-oms")
service_mod = pytest.importorskip("mts1b_oms.service", reason="the end-to-end test needs "
                                                              "mts1b-oms (-e ../mts1b-oms)")
testing = pytest.importorskip("mts1b_oms.testing")
bus_mod = pytest.importorskip("mts1b_platform.bus")

pytestmark = pytest.mark.integration
DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DAY1 = dt.datetime(2026, 12, 4, 21, 0, tzinfo=dt.UTC)
DAY2 = DAY1 + dt.timedelta(days=1)
D = Decimal
NAV = D(1_000_000)
PRICES = {"AAPL": D(100), "MSFT": D(200), "IBM": D(150), "GME": D(20)}
FILL = D("100.25")  # the test broker fills everything at this price
LIMITS = Constraints(max_gross=0.5, max_weight=0.1)


@pytest.fixture
async def service() -> AsyncIterator[tuple[Any, str, Any]]:
    """An OMS service for fund ``f1`` (strategies momentum, value, carry) on a fresh schema and
    NATS namespace, its broker filling at 100.25; the bus, the schema and the signing keys."""
    ns = f"t{uuid.uuid4().hex[:10]}"
    schema = f"oms_p_{ns}"
    try:
        bus = await bus_mod.Bus.connect(namespace=ns, connect_timeout=2)
    except bus_mod.BusError as exc:
        pytest.skip(f"NATS not reachable: {exc}")
    try:
        conn = await asyncpg.connect(DSN, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        await bus.drain()
        pytest.skip(f"PostgreSQL not reachable at {DSN}")
    await conn.close()
    registry, keys = testing.make_signing_keys()
    fund = testing.make_fund(nav=NAV).model_copy(
        update={"strategies": ["momentum", "value", "carry"]})
    stop, ready = asyncio.Event(), asyncio.Event()
    opts = service_mod.ServeOptions(
        dsn=DSN, funds=[fund], instruments=testing.make_registry(),
        broker="mts1b_oms.testing:RecordingBroker", broker_args={"fill_price": str(FILL)},
        schema=schema, namespace=ns, prices=PRICES, keys=registry)
    task = asyncio.get_running_loop().create_task(
        service_mod.run_service(opts, ready=ready, stop=stop))
    await asyncio.wait_for(ready.wait(), 20)
    try:
        yield bus, schema, keys
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await testing.drop_schema(DSN, schema)
        await bus.delete_streams()
        await bus.drain()


def _compose(sleeves: list[Sleeve], current: SleeveAllocation, as_of: dt.datetime,
             **kw: Any) -> Composition:
    instruments = {s: testing.make_registry()[s].instrument for s in PRICES}
    return compose(sleeves, NAV, LIMITS, current, PRICES, instruments, fund_id="f1",
                   as_of=as_of, **kw)


async def _rebalance(bus: Any, target: TargetPortfolio) -> tuple[CommandReply, RebalanceReport]:
    reply = await bus.request("mts.v1.oms.commands.rebalance", target, timeout=15,
                              reply_model=CommandReply)
    assert isinstance(reply, CommandReply)
    return reply, parse_message(RebalanceReport, reply.payload or "")


async def _positions(schema: str) -> dict[str, dict[str, Decimal]]:
    """Each sleeve's shares as PostgreSQL holds them (the OMS's sleeve positions)."""
    conn = await asyncpg.connect(DSN)
    try:
        rows = await conn.fetch(f"SELECT strategy_id, symbol, quantity FROM {schema}.positions "
                                "WHERE fund_id = 'f1' AND quantity <> 0")
    finally:
        await conn.close()
    out: dict[str, dict[str, Decimal]] = {}
    for r in rows:
        out.setdefault(r["strategy_id"], {})[r["symbol"]] = r["quantity"]
    return out


async def _credits(schema: str) -> dict[tuple[str, str], Decimal]:
    conn = await asyncpg.connect(DSN)
    try:
        rows = await conn.fetch(f"SELECT s.strategy_id, f.symbol, s.quantity FROM "
                                f"{schema}.sleeve_fills s JOIN {schema}.fills f USING "
                                "(trade_id)")
    finally:
        await conn.close()
    totals: dict[tuple[str, str], Decimal] = {}
    for r in rows:
        key = (r["strategy_id"], r["symbol"])
        totals[key] = totals.get(key, D(0)) + r["quantity"]
    return totals


def _held(positions: dict[str, dict[str, Decimal]], as_of: dt.datetime) -> SleeveAllocation:
    every = {s: {} for s in ("momentum", "value", "carry")} | positions
    return SleeveAllocation(fund_id="f1", as_of=as_of, sleeves=every)


async def test_three_sleeves_composed_rebalanced_by_the_oms_then_one_halted(
        service: tuple[Any, str, Any]) -> None:
    bus, schema, keys = service
    sleeves = [Sleeve("momentum", {"AAPL": 0.15, "MSFT": 0.10}, D("0.4")),
               Sleeve("value", {"AAPL": -0.05, "IBM": 0.15}, D("0.4")),
               Sleeve("carry", {"GME": 0.20, "MSFT": 0.05}, D("0.2"))]

    # day 1: from nothing; momentum buys 600 AAPL, value sells 200 of them
    first = _compose(sleeves, _held({}, DAY1), DAY1)
    assert first.allocation.sleeves == {
        "carry": {"GME": D(2000), "MSFT": D(50)}, "momentum": {"AAPL": D(600), "MSFT": D(200)},
        "value": {"AAPL": D(-200), "IBM": D(400)}}
    reply, report = await _rebalance(bus, first.target)
    assert reply.ok, reply
    assert sorted(report.orders) == ["AAPL", "GME", "IBM", "MSFT"]
    # the OMS's crossing is the composer's: 200 AAPL crossed, at the reference price
    assert report.crossed == first.report.crossed_shares == {"AAPL": D(200)}
    assert report.crossed_notional == first.report.crossed_notional == D(20_000)
    # every fill split by sleeve: each sleeve holds exactly its allocation, at the fund's price
    assert await _positions(schema) == first.allocation.sleeves
    assert (await _credits(schema))[("value", "AAPL")] == D(-200)

    # carry is halted (a signed command, as operations sends it)
    halt = await bus.request("mts.v1.oms.commands.halt", keys["ops-test"].sign(
        HaltTrading, "strategy", "carry", "model broke"), timeout=10, reply_model=CommandReply)
    assert isinstance(halt, CommandReply) and halt.ok, halt

    # a target that still trades carry is refused for carry's symbol
    held = _held(await _positions(schema), DAY2)
    stale = _compose([*sleeves[:2], Sleeve("carry", {"GME": 0.10, "MSFT": 0.05}, D("0.2"))],
                     held, DAY2)
    reply, report = await _rebalance(bus, stale.target)
    assert not reply.ok and sorted(report.refused) == ["GME"]
    assert report.refused["GME"] is ReplyCode.TRADING_HALTED

    # day 2: recomposed without carry; momentum's signal moved, value's did not
    moved = [Sleeve("momentum", {"AAPL": 0.10, "MSFT": 0.10}, D("0.4")), sleeves[1]]
    second = _compose(moved, held, DAY2 + dt.timedelta(hours=1), exclude=["carry"])
    assert "carry" not in second.allocation.sleeves
    assert second.report.kept_sleeves == ("carry",)
    assert second.allocation.sleeves["value"] == first.allocation.sleeves["value"]
    reply, report = await _rebalance(bus, second.target)
    assert reply.ok, reply
    assert sorted(report.orders) == ["AAPL"]  # momentum sells 200 AAPL; nothing else moves
    after = await _positions(schema)
    assert after == {"momentum": {"AAPL": D(400), "MSFT": D(200)},
                     "value": {"AAPL": D(-200), "IBM": D(400)},
                     "carry": {"GME": D(2000), "MSFT": D(50)}}  # kept, not traded
