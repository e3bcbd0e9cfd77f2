"""A disable reaches trading (issue #19): a signed strategy halt sent to a real OMS service over
NATS JetStream and PostgreSQL cancels that strategy's working orders and refuses its next
order, and the OMS's reply comes back within a second; a key the OMS does not know is refused.

Skipped, with the reason, without mts1b-oms (install it from its folder) or the servers.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from mts1b_foundation import CommandReply, Equity, Order, ReplyCode, Side, SubmitOrder
from mts1b_platform.bus import Bus, BusError
from mts1b_platform.signing import SigningKey
from mts1b_research.errors import ResearchError
from mts1b_research.halt import halt_strategy

oms_service = pytest.importorskip("mts1b_oms.service", reason="needs mts1b-oms (-e ../mts1b-oms)")
oms_testing = pytest.importorskip("mts1b_oms.testing")

pytestmark = pytest.mark.integration
DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
async def oms() -> AsyncIterator[tuple[Bus, dict[str, Any]]]:
    ns = f"t{uuid.uuid4().hex[:10]}"
    try:
        bus = await Bus.connect(namespace=ns, connect_timeout=2)
    except BusError as exc:
        pytest.skip(f"NATS not reachable: {exc}")
    registry, keys = oms_testing.make_signing_keys()
    fund = oms_testing.make_fund(nav=Decimal(1_000_000)).model_copy(
        update={"strategies": ["mom", "val"]})
    schema = f"oms_rh_{ns}"
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.get_running_loop().create_task(oms_service.run_service(
        oms_service.ServeOptions(dsn=DSN, funds=[fund], instruments=oms_testing.make_registry(),
                                 broker="mts1b_oms.testing:RecordingBroker", schema=schema,
                                 namespace=ns, prices={"AAPL": Decimal(100)}, keys=registry),
        ready=ready, stop=stop))
    await asyncio.wait_for(ready.wait(), 20)
    try:
        yield bus, keys
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await oms_testing.drop_schema(DSN, schema)
        await bus.delete_streams()
        await bus.drain()


async def _submit(bus: Bus, key: str, strategy: str) -> CommandReply:
    order = Order(idempotency_key=key, fund_id="f1", strategy_id=strategy,
                  instrument=Equity(symbol="AAPL"), side=Side.BUY, quantity=Decimal(5),
                  order_type="limit", limit_price=Decimal("99.5"))
    reply = await bus.request("mts.v1.oms.commands.submit", SubmitOrder(order=order),
                              timeout=10, reply_model=CommandReply)
    assert isinstance(reply, CommandReply)
    return reply


async def test_a_disable_cancels_the_strategys_orders_and_is_acknowledged(
        oms: tuple[Bus, dict[str, Any]]) -> None:
    bus, keys = oms
    for i in range(3):
        assert (await _submit(bus, f"m{i}", "mom")).ok
    assert (await _submit(bus, "v0", "val")).ok
    operator = keys["ops-test"]  # the operations role is enough to halt
    ack = await halt_strategy(bus, operator, "mom", "disabled in the registry")
    assert ack.reply.ok and ack.seconds < 1.0
    assert ack.cancels_outstanding == 3  # the three working orders of mom, not val's
    refused = await _submit(bus, "m9", "mom")
    assert (refused.ok, refused.code) == (False, ReplyCode.TRADING_HALTED)
    assert (await _submit(bus, "v1", "val")).ok


async def test_a_key_the_oms_does_not_know_is_refused(oms: tuple[Bus, dict[str, Any]]) -> None:
    bus, _keys = oms
    with pytest.raises(ResearchError, match="UNAUTHORIZED"):
        await halt_strategy(bus, SigningKey.generate("stranger"), "mom", "x")


async def test_the_disable_command_halts_at_the_oms_then_records_the_key_as_actor(
        oms: tuple[Bus, dict[str, Any]], tmp_path: Any) -> None:
    """``strategies disable --key-file``: the OMS acknowledges first, then the registry records
    the transition with the key's registered name."""
    from mts1b_foundation import StrategySpec
    from mts1b_research.cli import app
    from mts1b_research.registry import StrategyRegistry
    from typer.testing import CliRunner

    bus, keys = oms
    assert (await _submit(bus, "m0", "mom")).ok
    schema = f"rs_h_{uuid.uuid4().hex[:10]}"
    registry = await StrategyRegistry.open(DSN, schema=schema)
    try:
        await registry.register(StrategySpec(name="mom", factor="f_momentum_12_1",
                                             universe="us-large-cap"), actor="alice")
        await registry.shadow("mom", actor="alice", reason="watch")
        key_file = tmp_path / "ops.key"
        keys["ops-test"].save(key_file)
        result = await asyncio.to_thread(CliRunner().invoke, app, [
            "strategies", "disable", "mom", "--reason", "drawdown", "--key-file", str(key_file),
            "--namespace", bus.namespace or "", "--json"],
            env={"MTS_DATABASE_URL": DSN, "MTS_RESEARCH_SCHEMA": schema})
        assert result.exit_code == 0, result.output
        assert "OMS halted strategy mom" in result.stderr
        [*_, last] = await registry.history("mom")
        assert (last.to_state.value, last.actor) == ("disabled", "ops-test")
        refused = await _submit(bus, "m1", "mom")
        assert refused.code is ReplyCode.TRADING_HALTED
    finally:
        await registry.db.drop_schema()
        await registry.close()
