"""The NATS service against real NATS JetStream and PostgreSQL: commands, fuzzing, kill switch."""

from __future__ import annotations

import asyncio
import json
import os
import random
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from mts1b_foundation import (
    CancelOrder,
    CommandReply,
    Equity,
    FundConfig,
    HaltTrading,
    Order,
    OrderStatus,
    Side,
    SubmitOrder,
    parse_message,
)
from mts1b_oms.cli import app
from mts1b_oms.orderstore import CancelOutcome
from mts1b_oms.service import ServeOptions, run_service
from mts1b_oms.signing import KeyRegistry, SigningKey
from mts1b_oms.store import Store
from mts1b_oms.testing import (
    RecordingBroker,
    drop_schema,
    make_fund,
    make_registry,
    write_signing_keys,
)
from mts1b_platform.bus import Bus, BusError
from typer.testing import CliRunner

pytestmark = pytest.mark.integration
DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def fund() -> FundConfig:
    return make_fund(name="Fund")


def order(key: str) -> Order:
    return Order(idempotency_key=key, fund_id="f1", strategy_id="s1",
                 instrument=Equity(symbol="AAPL"), side=Side.BUY, quantity=Decimal(5))


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[KeyRegistry, dict[str, Path]]:
    """The test signing keys: the registry the services load, and each private key file."""
    registry, files = write_signing_keys(tmp_path_factory.mktemp("keys"))
    return KeyRegistry.load(registry), files


@pytest.fixture
async def service(keys: tuple[KeyRegistry, dict[str, Path]]
                  ) -> AsyncIterator[tuple[Bus, str, str]]:
    ns = f"t{uuid.uuid4().hex[:10]}"
    schema = f"oms_s_{ns}"
    try:
        bus = await Bus.connect(namespace=ns, connect_timeout=2)
    except BusError as exc:
        pytest.skip(f"NATS not reachable: {exc}")
    stop, ready = asyncio.Event(), asyncio.Event()
    opts = ServeOptions(dsn=DSN, funds=[fund()], instruments=make_registry(),
                        broker="mts1b_oms.testing:RecordingBroker",
                        schema=schema, namespace=ns, prices={"AAPL": Decimal(100)},
                        keys=keys[0])
    task = asyncio.get_running_loop().create_task(run_service(opts, ready=ready, stop=stop))
    await asyncio.wait_for(ready.wait(), 20)
    try:
        yield bus, ns, schema
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await drop_schema(DSN, schema)
        await bus.delete_streams()
        await bus.drain()


async def _submit(bus: Bus, o: Order) -> CommandReply:
    r = await bus.request("mts.v1.oms.commands.submit", SubmitOrder(order=o), timeout=5,
                          reply_model=CommandReply)
    assert isinstance(r, CommandReply)
    return r


async def test_submit_cancel_over_nats_and_events_published(
        service: tuple[Bus, str, str]) -> None:
    bus, _ns, _schema = service
    got: list[str] = []

    async def handler(d: Any) -> None:
        got.append(d.subject)

    await bus.consume("mts.v1.oms.orders.>", handler, durable="t_events", fetch_timeout=0.2)
    r1 = await _submit(bus, order("a"))
    r2 = await _submit(bus, order("a"))
    assert r1.ok and r1.status is OrderStatus.ACCEPTED
    assert r2.duplicate and r2.order_id == r1.order_id
    c = await bus.request("mts.v1.oms.commands.cancel", CancelOrder(order_id=r1.order_id or ""),
                          timeout=5, reply_model=CommandReply)
    assert isinstance(c, CommandReply) and c.status is OrderStatus.CANCELED
    for _ in range(50):
        if len(got) >= 4:
            break
        await asyncio.sleep(0.1)
    assert sorted(got) == sorted(["mts.v1.oms.orders.submitted", "mts.v1.oms.orders.accepted",
                                  "mts.v1.oms.orders.cancel_requested",
                                  "mts.v1.oms.orders.canceled"])


async def test_fuzzed_commands_answered_or_dead_lettered(service: tuple[Bus, str, str]) -> None:
    bus, _ns, _schema = service
    rng = random.Random(7)
    good = json.loads(SubmitOrder(order=order("fz")).to_json())
    payloads: list[bytes] = [b"", b"\xff\xfe", b"null", b"[]", b"{}", b"{" * 5000,
                             json.dumps({"order": None}).encode(),
                             json.dumps({**good, "extra": 1}).encode(),
                             json.dumps({"order": {**good["order"], "quantity": "-5"}}).encode(),
                             json.dumps({"order": {**good["order"], "quantity": "NaN"}}).encode(),
                             json.dumps({"order": {**good["order"], "fund_id": "x" * 500}}
                                        ).encode()]
    payloads += [bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200)))
                 for _ in range(20)]
    for subject in ("mts.v1.oms.commands.submit", "mts.v1.oms.commands.cancel",
                    "mts.v1.oms.commands.replace", "mts.v1.oms.commands.rebalance",
                    "mts.v1.oms.commands.state",
                    "mts.v1.oms.commands.halt", "mts.v1.oms.commands.reduce",
                    "mts.v1.oms.commands.resume"):
        for p in payloads:
            msg = await bus.nc.request(bus.wire_subject(subject), p, timeout=5)
            if msg.headers and "Mts-Error" in msg.headers:
                continue
            reply = parse_message(CommandReply, msg.data)
            assert not reply.ok and reply.code
    # still alive and well
    assert (await _submit(bus, order("after-fuzz"))).ok
    dlq = await bus.js.stream_info(bus.stream_for("dlq"))
    assert dlq.state.messages >= 4 * 20


async def test_unknown_fund_is_answered(service: tuple[Bus, str, str]) -> None:
    bus, _ns, _schema = service
    o = order("uf").model_copy(update={"fund_id": "nope"})
    r = await _submit(bus, o)
    assert not r.ok and r.code == "FUND_NOT_FOUND"


async def test_cli_halt_fans_out_and_cancels_working_orders(
        service: tuple[Bus, str, str], keys: tuple[KeyRegistry, dict[str, Path]]) -> None:
    bus, ns, schema = service
    r = await _submit(bus, order("h1"))
    runner = CliRunner()
    env = {"MTS_DATABASE_URL": DSN, "MTS_OMS_KEY_FILE": str(keys[1]["desk-test"])}
    args = ["--schema", schema, "--namespace", ns]
    res = await asyncio.to_thread(runner.invoke, app, ["halt", "--fund", "f1", *args], env=env)
    assert res.exit_code == 0, res.output
    store = await Store.open(DSN, schema=schema, min_size=1, max_size=1)
    try:
        for _ in range(50):
            st = await store.load_order(r.order_id or "")
            if st is not None and st.status is OrderStatus.CANCELED:
                break
            await asyncio.sleep(0.1)
        assert st is not None and st.status is OrderStatus.CANCELED
        denied = await _submit(bus, order("h2"))
        assert denied.code == "TRADING_HALTED"
        res = await asyncio.to_thread(runner.invoke, app, ["halt", "--all", *args], env=env)
        assert res.exit_code == 0, res.output
        res = await asyncio.to_thread(runner.invoke, app, ["resume", "--fund", "f1", *args],
                                      env=env)
        res = await asyncio.to_thread(runner.invoke, app, ["resume", "--all", *args], env=env)
        assert res.exit_code == 0, res.output
        for _ in range(50):
            ok = await _submit(bus, order(f"h3-{_}"))
            if ok.ok:
                break
            await asyncio.sleep(0.1)
        assert ok.ok
    finally:
        await store.close()


def test_cli_needs_exactly_one_scope() -> None:
    res = CliRunner().invoke(app, ["halt"])
    assert res.exit_code != 0



async def test_a_service_stopped_mid_sweep_leaves_it_to_the_next_one(
        tmp_path: Path, keys: tuple[KeyRegistry, dict[str, Path]]) -> None:
    """Reproduced: a SIGTERM mid-sweep left the rest of the halt's orders working at the
    broker, and the instance started next did not finish the job. Here the service stops
    (the SIGTERM path, given no time to finish the sweep) while its venue - slow to cancel,
    file-backed so it outlives the service - has cancels outstanding; the next service on the
    same schema resumes the stored sweep and every order ends canceled, once, at the venue."""
    ns = f"t{uuid.uuid4().hex[:10]}"
    schema = f"oms_s_{ns}"
    try:
        bus = await Bus.connect(namespace=ns, connect_timeout=2)
    except BusError as exc:
        pytest.skip(f"NATS not reachable: {exc}")
    venue = tmp_path / "venue.jsonl"
    opts = ServeOptions(dsn=DSN, funds=[fund()], instruments=make_registry(),
                        broker="mts1b_oms.testing:RecordingBroker",
                        broker_args={"path": str(venue), "cancel_seconds": "0.5"},
                        schema=schema, namespace=ns, prices={"AAPL": Decimal(100)},
                        cancel_rate=2.0, sweep_drain_seconds=0, keys=keys[0])

    async def serving() -> tuple[asyncio.Event, asyncio.Task[None]]:
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.get_running_loop().create_task(run_service(opts, ready=ready,
                                                                  stop=stop))
        await asyncio.wait_for(ready.wait(), 20)
        return stop, task

    store = await Store.open(DSN, schema=schema, min_size=1, max_size=2)
    try:
        stop, task = await serving()
        ids = [(await _submit(bus, order(f"w{i}"))).order_id for i in range(6)]
        ops = SigningKey.load(keys[1]["ops-test"])
        halt = await bus.request("mts.v1.oms.commands.halt", ops.sign(
            HaltTrading, "fund", "f1", "stop test"), timeout=10, reply_model=CommandReply)
        assert isinstance(halt, CommandReply) and halt.ok and halt.context["outstanding"] == 6
        # 6 cancels at 2/s, each taking 0.5 s at the venue, cannot all have ended (at least
        # 3 s): the sweep is cut short, even when a loaded machine delays this line
        stop.set()
        await asyncio.wait_for(task, 30)
        sweep = await store.sweep(str(halt.context["sweep_id"]))
        assert sweep is not None and not sweep.finished and sweep.outstanding > 0
        stop, task = await serving()  # the next instance resumes the sweep at start
        try:
            for _ in range(300):
                sweep = await store.sweep(str(halt.context["sweep_id"]))
                if sweep is not None and sweep.finished:
                    break
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
        assert sweep is not None and sweep.finished
        assert {o.outcome for o in sweep.orders} == {CancelOutcome.CANCELED}
        for oid in ids:
            st = await store.load_order(oid or "")
            assert st is not None and st.status is OrderStatus.CANCELED
        at_venue = RecordingBroker(path=venue)  # what the venue has on disk
        assert sorted(at_venue.canceled) == sorted(ids)  # each canceled once
    finally:
        await store.drop_schema()
        await store.close()
        await bus.delete_streams()
        await bus.drain()
