"""The treasury service attacked (issue #18), over a real NATS JetStream and PostgreSQL.

Order events are published on the OMS's subjects directly, as a careless or hostile client
could: garbage bytes, a fill of an order never announced, a fill of an unknown fund, a trade id
reused with other terms, the same fill twice. Each bad one is dead-lettered (and, when it
decoded, raised as an alert); the good ones behind it are booked once. Then the service process
is SIGKILLed at random points while fills stream in, restarted each time, and the ledger must
hold every fill exactly once and balance.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from mts1b_foundation import (
    Equity,
    Fill,
    FundConfig,
    Order,
    OrderEvent,
    OrderEventType,
    OrderStatus,
    Side,
)
from mts1b_platform.alerts import ALERT_SUBJECT
from mts1b_platform.bus import Bus, BusError
from mts1b_treasury.db import TreasuryDb
from mts1b_treasury.funds import FundRegistry
from mts1b_treasury.ledger import Ledger
from mts1b_treasury.service import ServeOptions, run_service

from .conftest import DSN, open_db

pytestmark = pytest.mark.integration
D = Decimal
T0 = dt.datetime(2026, 12, 4, 15, 0, tzinfo=dt.UTC)


def submitted(order_id: str, qty: int, fund_id: str = "f1") -> OrderEvent:
    order = Order(idempotency_key=f"k-{order_id}", order_id=order_id, fund_id=fund_id,
                  strategy_id="mom", instrument=Equity(symbol="AAPL"), side=Side.BUY,
                  quantity=D(qty), created_at=T0)
    return OrderEvent(event_id=f"e-s-{order_id}", order_id=order_id, fund_id=fund_id,
                      event_type=OrderEventType.SUBMITTED, status=OrderStatus.PENDING, ts=T0,
                      order=order)


def filled(order_id: str, trade_id: str, qty: int, price: str = "100",
           fund_id: str = "f1") -> OrderEvent:
    fill = Fill(trade_id=trade_id, order_id=order_id, fund_id=fund_id, symbol="AAPL",
                side=Side.BUY, quantity=D(qty), price=D(price), ts=T0)
    return OrderEvent(event_id=f"e-f-{trade_id}-{price}", order_id=order_id, fund_id=fund_id,
                      event_type=OrderEventType.FILLED, status=OrderStatus.FILLED, ts=T0,
                      fill=fill)


async def _bus() -> Bus:
    try:
        return await Bus.connect(namespace=f"t{uuid.uuid4().hex[:10]}", connect_timeout=2)
    except BusError as exc:
        pytest.skip(f"NATS not reachable: {exc}")


async def _fund(db: TreasuryDb) -> None:
    config = FundConfig(fund_id="f1", name="F", target_nav_usd=D(1_000_000), broker="paper",
                        broker_account_id="a1", strategies=["mom"])
    await FundRegistry(db).create(config, actor="test", now=T0 - dt.timedelta(days=1))


@pytest.fixture
async def running() -> AsyncIterator[tuple[Bus, TreasuryDb, Any]]:
    bus = await _bus()
    db = await open_db()
    await _fund(db)
    await bus.declare_streams(["oms", "treasury", "dlq", "operations"])
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.get_running_loop().create_task(run_service(
        ServeOptions(dsn=DSN, schema=db.schema, namespace=bus.namespace,
                     heartbeat_interval=0.2), ready=ready,  # beats land beside the alerts
        stop=stop))
    await asyncio.wait_for(ready.wait(), 20)
    try:
        yield bus, db, task
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await bus.delete_streams()
        await bus.drain()
        await db.drop_schema()
        await db.close()


async def _publish(bus: Bus, event: OrderEvent) -> None:
    await bus.publish_acked(f"mts.v1.oms.orders.{event.event_type.value}", event)


async def _until(check: Any, seconds: float = 20) -> None:
    for _ in range(int(seconds / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not reached in time")


async def _dead_letters(bus: Bus) -> int:
    info = await bus.js.stream_info(bus.stream_for("dlq"))
    return int(info.state.messages)


async def test_hostile_events_are_dead_lettered_and_good_ones_booked_once(
        running: tuple[Bus, TreasuryDb, Any]) -> None:
    bus, db, _task = running
    ledger = Ledger(db)
    await bus.publish_bytes("mts.v1.oms.orders.filled", b"\x00not json")
    await bus.publish_bytes("mts.v1.oms.orders.filled", b'{"schema_version": 3}')
    await _publish(bus, filled("o-ghost", "t-ghost", 5))              # never announced
    await _publish(bus, submitted("o-x", 5, fund_id="nofund"))        # unknown fund
    await _publish(bus, submitted("o1", 10))
    await _publish(bus, filled("o1", "t1", 10))
    await _publish(bus, filled("o1", "t1", 10))                       # the same fill again
    await _publish(bus, filled("o1", "t1", 10, price="101"))          # other terms
    await _publish(bus, submitted("o2", 7))
    await _publish(bus, filled("o2", "t2", 7))

    async def booked() -> bool:
        return (await ledger.positions("f1")).get("AAPL", (D(0), D(0)))[0] == D(17)

    await _until(booked)
    await _until(lambda: _at_least(bus, 5))
    assert await ledger.positions("f1") == {"AAPL": (D(17), D(1700))}
    assert [f.posting.fill.trade_id for f in await ledger.fills("f1")] == ["t1", "t2"]
    assert (await ledger.trial_balance()) == {"f1": D(0)}
    # the three that decoded: ghost order, fund, terms (the stream also holds the heartbeats)
    subject = bus.wire_subject(ALERT_SUBJECT)
    alerts = await bus.js.stream_info(bus.stream_for("operations"), subjects_filter=subject)
    assert (alerts.state.subjects or {}).get(subject) == 3


async def _at_least(bus: Bus, n: int) -> bool:
    return await _dead_letters(bus) >= n


async def _booked_more_than(ledger: Ledger, count: int) -> bool:
    return len(await ledger.fills("f1")) > count


def _spawn(ns: str, schema: str, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "mts1b_treasury.cli", "serve", "--schema", schema,
           "--namespace", ns, "--ack-wait", "1"]
    env = {**os.environ, "MTS_DATABASE_URL": DSN}
    return subprocess.Popen(cmd, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


@pytest.mark.slow
async def test_sigkill_at_random_points_books_every_fill_exactly_once(tmp_path: Path) -> None:
    bus = await _bus()
    db = await open_db()
    await _fund(db)
    await bus.declare_streams(["oms", "treasury", "dlq", "operations"])
    rng = random.Random(18)
    n_orders, kills = 60, 3
    proc = _spawn(bus.namespace or "", db.schema, tmp_path / "treasury.log")
    ledger = Ledger(db)
    try:
        published, mid_batch = 0, 0
        for kill in range(kills + 1):
            batch = n_orders // (kills + 1)
            before = len(await ledger.fills("f1"))
            for i in range(published, published + batch):
                await _publish(bus, submitted(f"o{i}", 1 + i % 5))
                await _publish(bus, filled(f"o{i}", f"t{i}", 1 + i % 5))
            published += batch
            if kill < kills:
                # kill while it books this batch: once it has started on it, at a random moment
                await _until(lambda n=before: _booked_more_than(ledger, n))
                await asyncio.sleep(rng.uniform(0, 0.05))
                proc.send_signal(signal.SIGKILL)
                mid_batch += len(await ledger.fills("f1")) < published
                proc.wait(10)
                proc = _spawn(bus.namespace or "", db.schema, tmp_path / "treasury.log")
        expected = sum(1 + i % 5 for i in range(published))

        async def all_booked() -> bool:
            return (await ledger.positions("f1")).get("AAPL", (D(0), D(0)))[0] == expected

        await _until(all_booked, 60)
        fills = await ledger.fills("f1")
        assert len(fills) == published == len({f.posting.fill.trade_id for f in fills})
        assert await ledger.trial_balance() == {"f1": D(0)}
        assert await _dead_letters(bus) == 0
        assert mid_batch >= 1, "no kill landed while fills were still being booked"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        await bus.delete_streams()
        await bus.drain()
        await db.drop_schema()
        await db.close()


async def test_marks_from_the_bus_strike_every_fund_and_publish_it() -> None:
    """What the scheduler runs after each close: bars from the bus become the session's marks;
    a fund holding a symbol without a mark is not struck and an alert says so."""
    from mts1b_foundation import Bar, FundNav, parse_message
    from mts1b_treasury.service import TreasuryService

    bus = await _bus()
    db = await open_db()
    try:
        await _fund(db)
        other = FundConfig(fund_id="f2", name="F2", target_nav_usd=D(1000), broker="paper",
                           broker_account_id="a2", strategies=["mom"])
        await FundRegistry(db).create(other, actor="test", now=T0 - dt.timedelta(days=1))
        await bus.declare_streams(["treasury", "operations", "datalake"])
        service = TreasuryService(bus, db, keys=None)
        await service.open_accounts()
        ledger = Ledger(db)
        await ledger.contribute("f1", D(10_000), key="c1", when=T0)
        for fund, symbol in (("f1", "AAPL"), ("f2", "MSFT")):
            await ledger.post_fills([_posting(fund, symbol)])
        session = dt.date(2026, 12, 4)
        close = service.calendar.close_of(session)
        sub = await bus.nc.subscribe(bus.wire_subject("mts.v1.datalake.bars.*"),
                                     cb=service.on_bar)
        struck: list[FundNav] = []

        async def on_nav(msg: Any) -> None:
            struck.append(parse_message(FundNav, msg.data))

        navs = await bus.nc.subscribe(bus.wire_subject("mts.v1.treasury.nav.struck"),
                                      cb=on_nav)
        for ts, price in ((close - dt.timedelta(hours=1), "101"), (close, "102"),
                          (close + dt.timedelta(hours=1), "999")):  # after the close: no mark
            bar = Bar(symbol="AAPL", ts=ts, open=D(price), high=D(price), low=D(price),
                      close=D(price), volume=D(1))
            await bus.publish_bytes("mts.v1.datalake.bars.AAPL", bar.to_json())
        await bus.publish_bytes("mts.v1.datalake.bars.AAPL", b"not a bar")
        await _until(lambda: _has_mark(service, session, D(102)))
        [nav] = await service.strike_session(session)
        assert (nav.fund_id, nav.nav) == ("f1", D(10_000) - D(1000) + D(10) * D(102))
        await _until(lambda: _count(struck, 1))
        assert struck[0].outputs_sha256 == nav.outputs_sha256
        alerts = await bus.js.stream_info(bus.stream_for("operations"))
        assert alerts.state.messages == 1  # f2 holds MSFT, which has no mark
        await sub.unsubscribe()
        await navs.unsubscribe()
    finally:
        await bus.delete_streams()
        await bus.drain()
        await db.drop_schema()
        await db.close()


def _posting(fund: str, symbol: str) -> Any:
    from mts1b_treasury.ledger import FillPosting

    return FillPosting(Fill(trade_id=f"t-{fund}", order_id=f"o-{fund}", fund_id=fund,
                            symbol=symbol, side=Side.BUY, quantity=D(10), price=D(100), ts=T0),
                       sleeves={"mom": D(10)})


async def _has_mark(service: Any, session: dt.date, price: Decimal) -> bool:
    return bool(service.marks.marks(session).get("AAPL") == price)


async def _count(items: list[Any], n: int) -> bool:
    return len(items) >= n


async def test_publishing_at_start_adds_nothing_the_bucket_already_shows() -> None:
    """The service publishes every fund at start: a fund the bucket holds right adds no event;
    a change publishes one event and updates the bucket; a closed fund leaves the bucket."""
    from mts1b_foundation import TREASURY_FUNDS_BUCKET
    from mts1b_treasury.publish import BusFundPublisher

    bus = await _bus()
    db = await open_db()
    try:
        await bus.declare_streams(["treasury"])
        registry = FundRegistry(db, BusFundPublisher(bus))
        config = FundConfig(fund_id="f1", name="F", target_nav_usd=D(1000), broker="paper",
                            broker_account_id="a1")
        await registry.create(config, actor="test")

        async def events() -> int:
            info = await bus.js.stream_info(bus.stream_for("treasury"))
            return int(info.state.messages)

        assert await events() == 1
        await registry.publish_all()
        await registry.publish_all()
        assert await events() == 1
        await registry.close("f1", actor="test", reason="done")
        assert await events() == 2
        kv = await bus.kv(TREASURY_FUNDS_BUCKET, history=5)
        assert await kv.get("f1") is None
    finally:
        await bus.delete_streams()
        await bus.drain()
        await db.drop_schema()
        await db.close()
