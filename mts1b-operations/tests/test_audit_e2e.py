"""The FAQ's trace, end to end: the OMS takes an order and its cancel over NATS while the
recorder runs; ``mts mts1b-operations audit show --subject-id <order id>`` then lists every
event about the order, in order, verified. Skipped without mts1b-oms (a test-only companion:
operations never imports it)."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace as Kit

import pytest
from mts1b_foundation import (
    CancelOrder,
    CommandReply,
    Equity,
    Order,
    OrderStatus,
    Side,
    SubmitOrder,
)
from mts1b_operations.audit.chain import AuditChain
from mts1b_operations.audit.db import AuditDb
from mts1b_operations.audit.recorder import RecorderOptions, run_recorder
from mts1b_operations.cli import app
from mts1b_platform.bus import Bus, BusError
from typer.testing import CliRunner

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_audit_show_traces_an_order_through_the_oms(audit_db: AuditDb, kit: Kit,
                                                          tmp_path: Path) -> None:
    pytest.importorskip("mts1b_oms.service", reason="mts1b-oms is not installed")
    from mts1b_oms.service import ServeOptions, run_service
    from mts1b_oms.signing import KeyRegistry
    from mts1b_oms.testing import drop_schema, make_fund, make_registry, write_signing_keys

    ns = f"t{uuid.uuid4().hex[:10]}"
    try:
        bus = await Bus.connect(namespace=ns, connect_timeout=2)
    except BusError as exc:
        pytest.skip(f"NATS not reachable: {exc}")
    registry, _ = write_signing_keys(tmp_path)
    oms_schema = f"oms_a_{ns}"
    oms_stop, oms_ready = asyncio.Event(), asyncio.Event()
    oms = asyncio.create_task(run_service(
        ServeOptions(dsn=kit.DSN, funds=[make_fund()], instruments=make_registry(),
                     broker="mts1b_oms.testing:RecordingBroker", schema=oms_schema,
                     namespace=ns, prices={"AAPL": Decimal(100)},
                     keys=KeyRegistry.load(registry)), ready=oms_ready, stop=oms_stop))
    rec_stop, rec_ready = asyncio.Event(), asyncio.Event()
    recorder = asyncio.create_task(run_recorder(
        RecorderOptions(dsn=kit.DSN, schema=audit_db.schema, namespace=ns, skew_threshold=0),
        ready=rec_ready, stop=rec_stop))
    try:
        await asyncio.wait_for(asyncio.gather(oms_ready.wait(), rec_ready.wait()), 30)
        order = Order(idempotency_key="faq-1", fund_id="f1", strategy_id="s1",
                      instrument=Equity(symbol="AAPL"), side=Side.BUY, quantity=Decimal(5))
        submitted = await bus.request("mts.v1.oms.commands.submit", SubmitOrder(order=order),
                                      timeout=5, reply_model=CommandReply)
        assert isinstance(submitted, CommandReply) and submitted.order_id
        order_id = submitted.order_id
        canceled = await bus.request("mts.v1.oms.commands.cancel",
                                     CancelOrder(order_id=order_id), timeout=5,
                                     reply_model=CommandReply)
        assert isinstance(canceled, CommandReply) and canceled.status is OrderStatus.CANCELED
        chain = AuditChain(audit_db)
        for _ in range(200):
            if len({r.subject for r in await chain.mentioning(order_id)}) >= 4:
                break
            await asyncio.sleep(0.05)
        result = await asyncio.to_thread(
            CliRunner().invoke, app, ["audit", "show", "--subject-id", order_id, "--schema",
                                      audit_db.schema], env={"MTS_DATABASE_URL": kit.DSN})
    finally:
        rec_stop.set()
        oms_stop.set()
        await asyncio.wait_for(asyncio.gather(recorder, oms), 30)
        await drop_schema(kit.DSN, oms_schema)
        await bus.delete_streams()
        await bus.drain()
    assert result.exit_code == 0, result.output
    headers = [line for line in result.output.splitlines() if line.startswith("#")]
    subjects = [line.split()[2] for line in headers]
    lifecycle = [s for s in subjects if s.startswith("mts.v1.oms.orders.")]
    assert lifecycle == ["mts.v1.oms.orders.submitted", "mts.v1.oms.orders.accepted",
                         "mts.v1.oms.orders.cancel_requested", "mts.v1.oms.orders.canceled"]
    assert all("[ok, after the last checkpoint (unanchored)]" in line for line in headers)
    # the submitted event's entry: the cancel's recorded answer can be in the chain before
    # it (the relay publishes order events a few milliseconds after their commit)
    lines = result.output.splitlines()
    submitted_at = next(i for i, line in enumerate(lines)
                        if line.startswith("#") and "mts.v1.oms.orders.submitted" in line)
    ids_line = lines[submitted_at + 1]
    assert ids_line.split("ids ", 1)[1].startswith(f"{order_id}, f1")
