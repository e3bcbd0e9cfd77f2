"""The OMS on funds from the treasury's KV bucket (issue #18), over a real NATS JetStream and
PostgreSQL: it serves the funds the bucket holds, applies a changed fund's limits to the next
order, and refuses to start on an empty bucket with an error that says what to do.

The bucket is written here as the treasury writes it (one FundConfig per open fund id): the OMS
may not import the treasury (both are layer 3); the treasury's own end-to-end test drives the
same path through its registry.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from decimal import Decimal

import pytest
from mts1b_foundation import TREASURY_FUNDS_BUCKET, CommandReply, ReplyCode, SubmitOrder
from mts1b_oms.service import ServeOptions, run_service
from mts1b_oms.testing import drop_schema, make_fund, make_order, make_registry, make_signing_keys
from mts1b_oms.treasuryfunds import TreasuryFundsError, load_treasury_funds
from mts1b_platform.bus import Bus

pytestmark = pytest.mark.integration
DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def bus(nats_bus: Bus) -> Bus:
    return nats_bus


async def _submit(bus: Bus, key: str, qty: str) -> CommandReply:
    reply = await bus.request("mts.v1.oms.commands.submit",
                              SubmitOrder(order=make_order(key, qty)), timeout=10,
                              reply_model=CommandReply)
    assert isinstance(reply, CommandReply)
    return reply


async def test_an_empty_bucket_is_refused_with_what_to_do(bus: Bus) -> None:
    with pytest.raises(TreasuryFundsError, match="mts mts1b-treasury fund create"):
        await load_treasury_funds(bus)


async def test_unreadable_values_are_skipped_and_funds_come_sorted(bus: Bus) -> None:
    kv = await bus.kv(TREASURY_FUNDS_BUCKET, history=5)
    await kv.put("f2", make_fund("f2"))
    await kv.put("f1", make_fund("f1"))
    await kv.put("junk", b'{"fund_id": "junk"}')
    assert [f.fund_id for f in await load_treasury_funds(bus)] == ["f1", "f2"]


async def test_the_oms_serves_the_treasurys_funds_and_follows_their_limits(bus: Bus) -> None:
    kv = await bus.kv(TREASURY_FUNDS_BUCKET, history=5)
    await kv.put("f1", make_fund("f1", max_order_quantity=Decimal(100)))
    schema = f"oms_tf_{uuid.uuid4().hex[:10]}"
    registry, _keys = make_signing_keys()
    opts = ServeOptions(dsn=DSN, funds=[], funds_from_treasury=True,
                        instruments=make_registry(), broker="mts1b_oms.testing:RecordingBroker",
                        schema=schema, namespace=bus.namespace, prices={"AAPL": Decimal(100)},
                        keys=registry)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.get_running_loop().create_task(run_service(opts, ready=ready, stop=stop))
    try:
        await asyncio.wait_for(ready.wait(), 20)
        assert [f.fund_id for f in opts.funds] == ["f1"]
        assert (await _submit(bus, "k1", "50")).ok
        denied = await _submit(bus, "k2", "150")
        assert not denied.ok and denied.code is ReplyCode.QUANTITY_EXCEEDS_MAXIMUM
        await kv.put("f1", make_fund("f1", max_order_quantity=Decimal(1000)))
        for _ in range(100):  # the watcher applies the change within moments
            reply = await _submit(bus, f"k3-{_}", "150")
            if reply.ok:
                break
            await asyncio.sleep(0.05)
        assert reply.ok, reply
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await drop_schema(DSN, schema)
