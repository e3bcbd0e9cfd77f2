"""A cancel-replace the venue refuses, over NATS through the service (issue #15): the OMS
service trades through a running paper broker service; a replace the venue refuses for want of
buying power is answered ``ok=False`` with the venue's code and text - in ``code``,
``venue_code`` / ``venue_message`` and ``context`` (``broker_code``, ``broker_reason``), as a
refused submit is - and the order stays working on its old terms, in the OMS's store and at the
venue. Over real NATS and PostgreSQL, in a namespace and schema of its own; skipped, saying why,
without mts1b-brokers or the servers."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from decimal import Decimal

import pytest
from mts1b_foundation import (
    Bar,
    CommandReply,
    Equity,
    Order,
    OrderStatus,
    OrderType,
    ReplaceOrder,
    ReplaceRequest,
    ReplyCode,
    Side,
    SubmitOrder,
)
from mts1b_oms.service import ServeOptions, run_service
from mts1b_oms.store import Store
from mts1b_oms.testing import drop_schema, make_fund, make_registry
from mts1b_platform.bus import Bus

DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
T0 = dt.datetime(2026, 12, 1, 21, 0, tzinfo=dt.UTC)


async def publish_bar(bus: Bus, price: str) -> None:
    """A daily bar as the datalake replay sends it (core NATS reaches the OMS and the venue);
    its low stays above the limit price, so the order keeps working."""
    p = Decimal(price)
    b = Bar(symbol="AAPL", ts=T0, interval="1d", open=p, high=p, low=p, close=p,
            volume=Decimal(1_000_000))
    await bus.nc.publish(bus.wire_subject("mts.v1.datalake.bars.AAPL"), b.to_json())
    await bus.nc.flush()


def limit_buy(key: str) -> Order:
    return Order(idempotency_key=key, fund_id="f1", strategy_id="s1",
                 instrument=Equity(symbol="AAPL"), side=Side.BUY, quantity=Decimal(10),
                 order_type=OrderType.LIMIT, limit_price=Decimal(99))


async def request(bus: Bus, subject: str, message: SubmitOrder | ReplaceOrder) -> CommandReply:
    reply = await bus.request(subject, message, timeout=10, reply_model=CommandReply)
    assert isinstance(reply, CommandReply)
    return reply


@pytest.mark.integration
async def test_a_replace_the_venue_refuses_is_a_coded_refusal_over_nats(
        paper_bus: Bus) -> None:
    from mts1b_brokers import PaperClient
    from mts1b_brokers.service import BrokerService

    bus = paper_bus
    venue = PaperClient(accounts={"acc1": "2000"})  # 10 x 99 fits; 30 x 99 does not
    schema = f"oms_r_{bus.namespace}"
    stop, ready = asyncio.Event(), asyncio.Event()
    opts = ServeOptions(dsn=DSN, funds=[make_fund()], instruments=make_registry(),
                        schema=schema, namespace=bus.namespace, prices={"AAPL": Decimal(100)})
    async with BrokerService(venue, bus):
        task = asyncio.get_running_loop().create_task(run_service(opts, ready=ready, stop=stop))
        store = None
        try:
            await asyncio.wait_for(ready.wait(), 30)
            store = await Store.open(DSN, schema=schema, min_size=1, max_size=1)
            for _ in range(100):  # until the venue has the bar as its reference price
                await publish_bar(bus, "100")
                placed = await request(bus, "mts.v1.oms.commands.submit",
                                       SubmitOrder(order=limit_buy("k1")))
                if placed.code is not ReplyCode.NO_REFERENCE_PRICE:
                    break
                await asyncio.sleep(0.1)
            assert placed.ok and placed.status is OrderStatus.ACCEPTED, placed
            oid = placed.order_id or ""

            refused = await request(bus, "mts.v1.oms.commands.replace", ReplaceOrder(
                replace=ReplaceRequest(order_id=oid, quantity=Decimal(30))))
            assert not refused.ok, refused
            assert refused.code is ReplyCode.INSUFFICIENT_BUYING_POWER, refused
            assert refused.status is OrderStatus.ACCEPTED and refused.order_id == oid
            assert refused.context["broker_code"] == "INSUFFICIENT_BUYING_POWER"
            assert "buying power" in str(refused.context["broker_reason"])
            assert (refused.message or "").startswith("replace refused by the broker: ")

            # nothing half-written: the order works on its old terms, here and at the venue
            state = await store.load_order(oid)
            assert state is not None and state.status is OrderStatus.ACCEPTED
            assert (state.quantity, state.pending_replace) == (Decimal(10), None)
            events = [e["event_type"] for e in await store.events(oid)]
            assert events[-2:] == ["replace_requested", "replace_rejected"], events
            assert [(o.order_id, o.quantity) for o in await venue.open_orders("acc1")] == [
                (oid, Decimal(10))]
            # and it can still be replaced within the account's means
            smaller = await request(bus, "mts.v1.oms.commands.replace", ReplaceOrder(
                replace=ReplaceRequest(order_id=oid, quantity=Decimal(15))))
            assert smaller.ok and smaller.status is OrderStatus.ACCEPTED, smaller
            assert [o.quantity for o in await venue.open_orders("acc1")] == [Decimal(15)]
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            if store is not None:
                await store.close()
            await drop_schema(DSN, schema)
