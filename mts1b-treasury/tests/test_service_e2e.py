"""End to end over a real NATS JetStream and PostgreSQL (issue #18): a fund created in the
treasury, an OMS serving it from the treasury's bucket, an order of two sleeves filled, the
fill in the treasury's ledger split as the OMS split it, a signed configuration loosening a
limit (refused for the operations key, applied for the risk key and taken by the running OMS),
and the NAV struck from the ledger, attributed per sleeve, struck again bit for bit.

Skipped, with the reason, without mts1b-oms (install it from its folder, CONTRIBUTING.md) or
without the servers (``python3 dev.py test`` provides them).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from mts1b_foundation import (
    MULTI_SLEEVE_STRATEGY,
    CommandReply,
    ConfigureFund,
    Equity,
    FundConfig,
    Order,
    ReplyCode,
    RiskEnvelope,
    Side,
    SubmitOrder,
)
from mts1b_platform.bus import Bus, BusError
from mts1b_platform.signing import KeyRegistry, SigningKey
from mts1b_treasury.db import TreasuryDb
from mts1b_treasury.funds import FundRegistry
from mts1b_treasury.ledger import Ledger
from mts1b_treasury.publish import BusFundPublisher
from mts1b_treasury.service import ServeOptions, run_service
from mts1b_treasury.strike import strike_fund

from .conftest import DSN, open_db

oms_service = pytest.importorskip("mts1b_oms.service",
                                  reason="the end-to-end test needs mts1b-oms (-e ../mts1b-oms)")
oms_testing = pytest.importorskip("mts1b_oms.testing")

pytestmark = pytest.mark.integration
D = Decimal
FILL = D("100.25")
SESSION = dt.date(2026, 12, 7)  # a Monday: its close lies after every fill of the test


def fund(max_quantity: int) -> FundConfig:
    return FundConfig(fund_id="f1", name="Fund one", target_nav_usd=D(1_000_000),
                      broker="paper", broker_account_id="acc1", strategies=["mom", "val"],
                      risk=RiskEnvelope.unrestricted().model_copy(
                          update={"max_order_quantity": D(max_quantity)}))


def order(key: str, qty: int, shares: dict[str, int]) -> Order:
    return Order(idempotency_key=key, fund_id="f1", strategy_id=MULTI_SLEEVE_STRATEGY,
                 instrument=Equity(symbol="AAPL"), side=Side.BUY, quantity=D(qty),
                 sleeves={k: D(v) for k, v in shares.items()})


@pytest.fixture
async def stack() -> AsyncIterator[tuple[Bus, TreasuryDb, dict[str, SigningKey]]]:
    ns = f"t{uuid.uuid4().hex[:10]}"
    try:
        bus = await Bus.connect(namespace=ns, connect_timeout=2)
    except BusError as exc:
        pytest.skip(f"NATS not reachable: {exc}")
    db = await open_db()
    await bus.declare_streams(["treasury"])
    registry = FundRegistry(db, BusFundPublisher(bus))
    record = await registry.create(fund(100), actor="ops")
    ledger = Ledger(db)
    await ledger.open_fund_accounts("f1", record.config.tax_lot_method)
    await ledger.contribute("f1", D(1_000_000), key="opening:f1", when=record.updated_at)
    keys = {"ops": SigningKey.generate("ops"), "cro": SigningKey.generate("cro")}
    trusted = KeyRegistry([keys["ops"].registered(["operations"]),
                           keys["cro"].registered(["risk"])])
    stop, ready = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    treasury = loop.create_task(run_service(
        ServeOptions(dsn=DSN, schema=db.schema, namespace=ns, keys=trusted),
        ready=ready, stop=stop))
    await asyncio.wait_for(ready.wait(), 20)
    oms_schema = f"oms_e2e_{ns}"
    oms_registry, _ = oms_testing.make_signing_keys()
    oms_stop, oms_ready = asyncio.Event(), asyncio.Event()
    oms = loop.create_task(oms_service.run_service(oms_service.ServeOptions(
        dsn=DSN, funds=[], funds_from_treasury=True, instruments=oms_testing.make_registry(),
        broker="mts1b_oms.testing:RecordingBroker", broker_args={"fill_price": str(FILL)},
        schema=oms_schema, namespace=ns, prices={"AAPL": D(100)}, keys=oms_registry),
        ready=oms_ready, stop=oms_stop))
    await asyncio.wait_for(oms_ready.wait(), 20)
    try:
        yield bus, db, keys
    finally:
        oms_stop.set()
        await asyncio.wait_for(oms, 20)
        if not treasury.done():
            stop.set()
            await asyncio.wait_for(treasury, 20)
        await oms_testing.drop_schema(DSN, oms_schema)
        await bus.delete_streams()
        await bus.drain()
        await db.drop_schema()
        await db.close()


async def _submit(bus: Bus, o: Order) -> CommandReply:
    reply = await bus.request("mts.v1.oms.commands.submit", SubmitOrder(order=o), timeout=10,
                              reply_model=CommandReply)
    assert isinstance(reply, CommandReply)
    return reply


async def _until(check: Any, seconds: float = 15) -> Any:
    for _ in range(int(seconds / 0.05)):
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("not reached in time")


async def test_oms_fills_reach_the_ledger_and_the_nav_attributes_them(stack: Any) -> None:
    bus, db, keys = stack
    ledger = Ledger(db)
    reply = await _submit(bus, order("k1", 100, {"mom": 60, "val": 40}))
    assert reply.ok, reply
    positions = await _until(lambda: _positions(ledger))
    assert positions == {"AAPL": (D(100), D("10025.00"))}
    assert await ledger.sleeve_positions("f1") == {("mom", "AAPL"): D(60),
                                                   ("val", "AAPL"): D(40)}
    balances = await ledger.balances("f1")
    assert balances["cash"] == D(1_000_000) - D("10025")

    # an order over the limit is denied; the operations key may not loosen it, risk may
    assert (await _submit(bus, order("k2", 150, {"mom": 150}))).code is \
        ReplyCode.QUANTITY_EXCEEDS_MAXIMUM
    looser = fund(1000)
    refused = await bus.request("mts.v1.treasury.commands.configure", keys["ops"].sign_command(
        ConfigureFund, {"config": looser, "reason": "room"}), timeout=10,
        reply_model=CommandReply)
    assert isinstance(refused, CommandReply)
    assert (refused.ok, refused.code) == (False, ReplyCode.UNAUTHORIZED)
    assert "loosens max_order_quantity" in (refused.message or "")
    applied = await bus.request("mts.v1.treasury.commands.configure", keys["cro"].sign_command(
        ConfigureFund, {"config": looser, "reason": "approved"}), timeout=10,
        reply_model=CommandReply)
    assert isinstance(applied, CommandReply) and applied.ok, applied
    # both answers are on the record (the audit chain reads it), the refusal too
    from mts1b_foundation import CommandAnswered, parse_message
    from mts1b_platform.follow import history

    stored = await history(bus, "treasury", "mts.v1.treasury.answers.recorded")
    answers = [parse_message(CommandAnswered, data) for _, data in stored]
    assert [(a.ok, a.code, a.request["reason"]) for a in answers] == [
        (False, "UNAUTHORIZED", "room"), (True, None, "approved")]
    reply = await _until(lambda: _ok_submit(bus))
    assert reply.ok
    await _until(lambda: _has_quantity(ledger, D(250)))

    marks = {"AAPL": D(102)}
    first = await strike_fund(db, "f1", SESSION, marks=marks, previous_marks={"AAPL": D(100)})
    nav = first.nav
    assert nav.cash == D(1_000_000) - D("25062.5")
    assert nav.nav == nav.cash + D(250) * D(102)
    assert nav.flows == D(1_000_000)
    assert nav.pnl == D(250) * (D(102) - FILL) == D("437.5")
    assert nav.pnl_by_strategy == {"mom": D(210) * D("1.75"), "val": D(40) * D("1.75")}
    assert nav.unattributed == 0
    again = await strike_fund(db, "f1", SESSION, marks=marks, previous_marks={"AAPL": D(100)})
    assert again.stored.nav_json == first.stored.nav_json


async def _positions(ledger: Ledger) -> dict[str, tuple[Decimal, Decimal]]:
    return await ledger.positions("f1")


async def _has_quantity(ledger: Ledger, quantity: Decimal) -> bool:
    held = await ledger.positions("f1")
    return "AAPL" in held and held["AAPL"][0] == quantity


async def _ok_submit(bus: Bus) -> CommandReply | None:
    reply = await _submit(bus, order(f"k3-{uuid.uuid4().hex[:6]}", 150, {"mom": 150}))
    return reply if reply.ok else None
