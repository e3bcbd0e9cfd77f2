"""A composed target rebalanced end to end over real NATS and PostgreSQL (issue #17): the
command, the orders serving several sleeves, the fills split into per-sleeve positions stored
in the same transaction, and the refusals a caller gets."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import asyncpg
import pytest
from mts1b_foundation import (
    CommandReply,
    RebalanceReport,
    ReplyCode,
    SleeveAllocation,
    TargetPortfolio,
    parse_message,
)
from mts1b_oms.service import ServeOptions, run_service
from mts1b_oms.testing import drop_schema, make_fund, make_registry
from mts1b_platform.bus import Bus, BusError

pytestmark = pytest.mark.integration
DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
AS_OF = dt.datetime(2026, 12, 4, 21, 0, tzinfo=dt.UTC)
D = Decimal


@pytest.fixture
async def service() -> AsyncIterator[tuple[Bus, str]]:
    ns = f"t{uuid.uuid4().hex[:10]}"
    schema = f"oms_s_{ns}"
    try:
        bus = await Bus.connect(namespace=ns, connect_timeout=2)
    except BusError as exc:
        pytest.skip(f"NATS not reachable: {exc}")
    fund = make_fund().model_copy(update={"strategies": ["A", "B", "C"]})
    stop, ready = asyncio.Event(), asyncio.Event()
    opts = ServeOptions(dsn=DSN, funds=[fund], instruments=make_registry(),
                        broker="mts1b_oms.testing:RecordingBroker",
                        broker_args={"fill_price": "100.25"}, schema=schema, namespace=ns,
                        prices={"AAPL": D(100), "MSFT": D(200)})
    task = asyncio.get_running_loop().create_task(run_service(opts, ready=ready, stop=stop))
    await asyncio.wait_for(ready.wait(), 20)
    try:
        yield bus, schema
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await drop_schema(DSN, schema)
        await bus.delete_streams()
        await bus.drain()


async def rebalance(bus: Bus, sleeves: dict[str, dict[str, str]]) -> CommandReply:
    alloc = SleeveAllocation(fund_id="f1", as_of=AS_OF, sleeves={
        s: {k: D(v) for k, v in t.items()} for s, t in sleeves.items()})
    reply = await bus.request("mts.v1.oms.commands.rebalance",
                              TargetPortfolio(fund_id="f1", as_of=AS_OF, weights={},
                                              allocation=alloc),
                              timeout=10, reply_model=CommandReply)
    assert isinstance(reply, CommandReply)
    return reply


async def test_a_composed_target_is_rebalanced_with_sleeve_ownership_over_nats_and_postgres(
        service: tuple[Bus, str]) -> None:
    bus, schema = service
    reply = await rebalance(bus, {"A": {"AAPL": "100", "MSFT": "7"}, "B": {"AAPL": "-60"},
                                  "C": {"MSFT": "3"}})
    assert reply.ok, reply
    report = parse_message(RebalanceReport, reply.payload or "")
    assert sorted(report.orders) == ["AAPL", "MSFT"]
    assert (report.crossed, report.crossed_notional) == ({"AAPL": D(60)}, D(6000))
    conn = await asyncpg.connect(DSN)
    try:
        positions = {(r["strategy_id"], r["symbol"]): (r["quantity"], r["avg_cost"])
                     for r in await conn.fetch(
                         f"SELECT * FROM {schema}.positions WHERE fund_id = 'f1'")}
        credits = {(r["strategy_id"], r["symbol"]): r["quantity"] for r in await conn.fetch(
            f"SELECT s.* FROM {schema}.sleeve_fills s JOIN {schema}.fills f USING (trade_id)")}
    finally:
        await conn.close()
    # the fund bought 40 AAPL at 100.25: A is credited +100 and B -60 at that price
    assert positions == {("A", "AAPL"): (D(100), D("100.25")),
                         ("B", "AAPL"): (D(-60), D("100.25")),
                         ("A", "MSFT"): (D(7), D("100.25")), ("C", "MSFT"): (D(3), D("100.25"))}
    assert credits == {("A", "AAPL"): D(100), ("B", "AAPL"): D(-60), ("A", "MSFT"): D(7),
                       ("C", "MSFT"): D(3)}


async def test_refusals_over_nats_are_coded(service: tuple[Bus, str]) -> None:
    bus, _schema = service
    denied = await rebalance(bus, {"A": {"AAPL": "1"}, "Z": {"AAPL": "1"}})
    assert denied.code is ReplyCode.STRATEGY_NOT_ALLOWED and denied.context["strategy_id"] == "Z"
    good = json.loads(TargetPortfolio(fund_id="f1", as_of=AS_OF, weights={}).to_json())
    for payload in (b"{", b"[]", json.dumps({**good, "allocation": {"sleeves": {}}}).encode(),
                    json.dumps({**good, "allocation": {"fund_id": "f2", "as_of": good["as_of"],
                                                       "sleeves": {"A": {"AAPL": "1"}}}}
                               ).encode()):
        msg = await bus.nc.request(bus.wire_subject("mts.v1.oms.commands.rebalance"), payload,
                                   timeout=5)
        if msg.headers and "Mts-Error" in msg.headers:
            assert msg.headers["Mts-Error"] == "FOUNDATION.VALIDATION"
            continue
        reply = parse_message(CommandReply, msg.data)  # pragma: no cover - not reached
        assert not reply.ok and reply.code is not ReplyCode.INTERNAL_ERROR
    assert (await rebalance(bus, {"A": {"IBM": "2"}})).ok  # still serving
