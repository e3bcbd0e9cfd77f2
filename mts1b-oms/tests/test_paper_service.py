"""``mts mts1b-oms serve --broker paper`` (issue #20): the OMS trades through the paper broker
*service* over NATS, starts one when none answers, and that service - a process of its own -
keeps its orders through a SIGKILL of the OMS. Over real NATS and PostgreSQL, each test in a
namespace and schema of its own; the paper tests skip, saying why, without mts1b-brokers."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from mts1b_foundation import (
    Bar,
    CommandReply,
    Equity,
    ExecType,
    Order,
    OrderStatus,
    ReplyCode,
    Side,
    SubmitOrder,
)
from mts1b_oms.service import ServeOptions, ServiceError, paper_command, run_service
from mts1b_oms.store import Store
from mts1b_oms.testing import drop_schema, make_fund, make_registry, write_signing_keys
from mts1b_platform.bus import Bus, BusError

DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
T0 = dt.datetime(2026, 12, 1, 21, 0, tzinfo=dt.UTC)  # daily bars, as a datalake replay sends


def bar(day: int, price: str) -> Bar:
    p = Decimal(price)
    return Bar(symbol="AAPL", ts=T0 + dt.timedelta(days=day), interval="1d", open=p, high=p,
               low=p, close=p, volume=Decimal(1_000_000))


def order(key: str) -> Order:
    return Order(idempotency_key=key, fund_id="f1", strategy_id="s1",
                 instrument=Equity(symbol="AAPL"), side=Side.BUY, quantity=Decimal(10))


# --- the command line of the service the OMS starts (no server needed) ----------------------


def test_paper_args_pass_through_and_accounts_default_to_the_funds() -> None:
    funds = [make_fund("f1", broker_account_id="acc1", nav=250_000)]
    cmd = paper_command({}, funds, namespace="ns1", nats_url=None)
    assert cmd[1:5] == ["-m", "mts1b_brokers.cli", "serve", "paper"]
    assert cmd[5:] == ["--account", "acc1=250000", "--namespace", "ns1"]
    cmd = paper_command({"cash": "5000", "account": "a=1,b=2.5", "seed": "7",
                         "participation_rate": "0.5", "commission_bps": "0", "timeout": "9"},
                        funds, namespace=None, nats_url="nats://h:4222")
    assert cmd[5:] == ["--default-cash", "5000", "--account", "a=1", "--account", "b=2.5",
                       "--seed", "7", "--participation-rate", "0.5", "--commission-bps", "0",
                       "--nats-url", "nats://h:4222"]


@pytest.mark.parametrize(("args", "field"), [
    ({"name": "other"}, "broker_arg.name"),
    ({"cash": "lots"}, "broker_arg.cash"),
    ({"cash": "-5"}, "broker_arg.cash"),
    ({"account": "acc1"}, "broker_arg.account"),
    ({"account": "acc1=NaN"}, "broker_arg.account"),
    ({"seed": "1.5"}, "broker_arg.seed"),
    ({"participation_rate": "0"}, "broker_arg.participation_rate"),
])
def test_bad_paper_args_are_refused_naming_the_field_and_value(args: dict[str, str],
                                                               field: str) -> None:
    with pytest.raises(ServiceError) as info:
        paper_command(args, [make_fund()], namespace=None, nats_url=None)
    assert info.value.context["field"] == field
    assert str(next(iter(args.values()))) in info.value.message


@pytest.mark.parametrize(("args", "field"), [({"timeout": "abc"}, "broker_arg.timeout"),
                                           ({"seed": "x"}, "broker_arg.seed")])
async def test_serve_refuses_a_bad_paper_arg_before_it_connects_or_creates_anything(
        args: dict[str, str], field: str) -> None:
    opts = ServeOptions(dsn="postgresql://nobody@127.0.0.1:1/none", funds=[make_fund()],
                        instruments=make_registry(), broker_args=args,
                        nats_url="nats://127.0.0.1:1")  # neither is ever reached
    with pytest.raises(ServiceError) as info:
        await run_service(opts)
    assert info.value.context["field"] == field


# --- over NATS and PostgreSQL -----------------------------------------------------------------



@pytest.fixture
async def bus(paper_bus: Bus) -> Bus:
    return paper_bus


async def publish_bar(bus: Bus, b: Bar) -> None:
    """A bar as the datalake replay sends it (core NATS reaches both the OMS and the venue)."""
    await bus.nc.publish(bus.wire_subject("mts.v1.datalake.bars.AAPL"), b.to_json())
    await bus.nc.flush()


async def submit(bus: Bus, key: str, *, timeout: float = 10) -> CommandReply:
    r = await bus.request("mts.v1.oms.commands.submit", SubmitOrder(order=order(key)),
                          timeout=timeout, reply_model=CommandReply)
    assert isinstance(r, CommandReply)
    return r


async def submit_once_priced(bus: Bus, key: str, day: int) -> CommandReply:
    """Publish the day's bar and submit until the venue has it as its reference price: until
    then the venue rejects NO_REFERENCE_PRICE, and the same key makes a new (linked) attempt."""
    for _ in range(100):
        await publish_bar(bus, bar(day, "100"))
        reply = await submit(bus, key)
        if reply.code is not ReplyCode.NO_REFERENCE_PRICE:
            return reply
        assert reply.context["broker_code"] == "NO_REFERENCE_PRICE"
        await asyncio.sleep(0.1)
    raise AssertionError("the paper venue never took the bar")


async def wait_status(store: Store, order_id: str, status: OrderStatus) -> None:
    for _ in range(200):
        st = await store.load_order(order_id)
        if st is not None and st.status is status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"order {order_id} is {st.status if st else None}, not {status}")


@pytest.mark.integration
async def test_a_running_paper_service_is_used_and_none_is_started(bus: Bus) -> None:
    from mts1b_brokers import PaperClient
    from mts1b_brokers.service import BrokerService

    venue = PaperClient(accounts={"acc1": "1000000"})
    schema = f"oms_p_{bus.namespace}"
    started: list[int] = []
    stop, ready = asyncio.Event(), asyncio.Event()
    opts = ServeOptions(dsn=DSN, funds=[make_fund()], instruments=make_registry(),
                        schema=schema, namespace=bus.namespace, prices={"AAPL": Decimal(100)},
                        broker_args={"cash": "5"})  # only for a venue the OMS starts
    async with BrokerService(venue, bus):
        task = asyncio.get_running_loop().create_task(
            run_service(opts, ready=ready, stop=stop, started=started))
        try:
            await asyncio.wait_for(ready.wait(), 30)
            assert started == []
            # no bar yet: the OMS has a price, the remote venue none - the reply over NATS
            # says so in its code and context, not a bare "rejected by the broker"
            refused = await submit(bus, "k1")
            assert refused.code is ReplyCode.NO_REFERENCE_PRICE, refused
            assert refused.context["broker_code"] == "NO_REFERENCE_PRICE"
            assert "no price seen for 'AAPL'" in str(refused.context["broker_reason"])
            reply = await submit_once_priced(bus, "k1", 0)  # fixed: a new attempt, linked
            assert reply.ok and reply.status is OrderStatus.ACCEPTED, reply
            assert not reply.duplicate and reply.context["previous_order_id"]
            assert [r.order_id for r in venue.history if r.exec_type is ExecType.ACK] == [
                reply.order_id]
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            await drop_schema(DSN, schema)


def spawn_oms(tmp: Path, ns: str, schema: str, name: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MTS_DATABASE_URL": DSN, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "mts1b_oms.cli", "serve", "--funds", str(tmp / "funds.json"),
           "--instruments", str(tmp / "instruments.json"), "--keys", str(tmp / "keys.json"),
           "--prices", str(tmp / "prices.json"), "--broker", "paper", "--broker-wait", "0.5",
           "--schema", schema, "--namespace", ns]
    log = (tmp / name).open("ab")
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=log)


def started_pids(tmp: Path, name: str) -> list[int]:
    text = (tmp / name).read_text(errors="replace") if (tmp / name).exists() else ""
    return [int(p) for p in re.findall(r"paper broker service \(.*?\) as pid (\d+)", text)]


async def wait_until(check: Any, what: str, seconds: float = 30) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.integration
async def test_serve_paper_starts_the_service_fills_on_bars_and_survives_an_oms_sigkill(
        bus: Bus, tmp_path: Path) -> None:
    """The issue's loop as a new user runs it: ``serve --broker paper``, bars on the datalake
    subject, a market order filled by the bar after it - then a SIGKILL of the OMS, after
    which the service it started still holds and fills the working order, and the next OMS
    start uses that service instead of starting another and takes in that fill."""
    from mts1b_brokers import RemoteBroker

    ns = bus.namespace or ""
    schema = f"oms_p_{ns}"
    (tmp_path / "funds.json").write_text(json.dumps([make_fund().model_dump(mode="json")]))
    (tmp_path / "instruments.json").write_text(make_registry("AAPL").to_json())
    (tmp_path / "prices.json").write_text(json.dumps({"AAPL": "100"}))
    write_signing_keys(tmp_path)
    oms = spawn_oms(tmp_path, ns, schema, "oms1.log")
    store = await Store.open(DSN, schema=schema, min_size=1, max_size=2)
    pids: list[int] = []
    try:
        async def serving() -> bool:
            try:
                await submit(bus, "probe-none", timeout=1)
            except BusError:
                return False
            return True

        async def announced() -> bool:
            return len(started_pids(tmp_path, "oms1.log")) == 1

        await wait_until(serving, "the OMS to serve", 60)
        await wait_until(announced, "the OMS to name the paper service it started", 10)
        pids = started_pids(tmp_path, "oms1.log")
        first = await submit_once_priced(bus, "k1", 0)
        assert first.ok and first.status is OrderStatus.ACCEPTED, first
        await publish_bar(bus, bar(1, "101"))  # the replayed bar after the submission
        await wait_status(store, first.order_id or "", OrderStatus.FILLED)

        working = await submit(bus, "k2")
        assert working.ok and working.status is OrderStatus.ACCEPTED, working
        oms.send_signal(signal.SIGKILL)
        await asyncio.to_thread(oms.wait, 20)
        assert alive(pids[0])  # the paper service outlived the OMS ...
        async with RemoteBroker("paper", namespace=ns) as venue:
            assert [o.order_id for o in await venue.open_orders("acc1")] == [working.order_id]
            await publish_bar(bus, bar(2, "102"))  # ... and still trades its order on bars

            async def filled() -> bool:
                report = await venue.order_status(working.order_id or "")
                return report is not None and report.exec_type is ExecType.FILL

            await wait_until(filled, "the working order to fill at the venue")
            positions = {p.symbol: p.quantity for p in await venue.positions("acc1")}
            assert positions == {"AAPL": Decimal(20)}

        oms = spawn_oms(tmp_path, ns, schema, "oms2.log")
        await wait_until(serving, "the restarted OMS to serve", 60)
        assert started_pids(tmp_path, "oms2.log") == []  # it found the running service
        # the fill made while no OMS listened is taken in at start (Oms.catch_up)
        await wait_status(store, working.order_id or "", OrderStatus.FILLED)
        oms.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(oms.wait, 30) == 0
    finally:
        if oms.poll() is None:
            oms.kill()
            await asyncio.to_thread(oms.wait, 20)
        for pid in pids + started_pids(tmp_path, "oms2.log"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            await _reaped(pid)
        await store.close()
        await drop_schema(DSN, schema)


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie nobody reaped yet does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[-1].split()[0] not in {"Z", "X"}


async def _reaped(pid: int, seconds: float = 20) -> None:
    """Wait for a process that is not our child (the OMS started it) to be gone."""
    for _ in range(int(seconds / 0.1)):
        if not alive(pid):
            return
        await asyncio.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
