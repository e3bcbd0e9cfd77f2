"""The OMS and the paper broker service on a lockstep replay's clock (issue #20), over real
NATS and PostgreSQL: a session's tick handed to ``broker-paper`` then ``oms``; an order the
composer sends at session 1's close fills at session 2's open, and the OMS answers tick 2 only
once the fill and position events are on the bus. Skips, saying why, without mts1b-brokers."""

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

import pytest
from mts1b_foundation import (
    Bar,
    ClockTick,
    CommandReply,
    Equity,
    Order,
    OrderStatus,
    OrderType,
    Side,
    SubmitOrder,
)
from mts1b_oms.service import ServeOptions, paper_command, run_service
from mts1b_oms.store import Store
from mts1b_oms.testing import drop_schema, make_fund, make_registry, write_signing_keys
from mts1b_platform.bus import Bus
from mts1b_platform.replayclock import ReplayClock, hand_out

DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
CLOSE1 = dt.datetime(2016, 1, 4, 21, tzinfo=dt.UTC)  # session closes: each bar's ts
CLOSE2 = dt.datetime(2016, 1, 5, 21, tzinfo=dt.UTC)
PARTICIPANTS = ["broker-paper", "oms"]


def test_the_paper_service_the_oms_starts_gets_the_replay_clock() -> None:
    cmd = paper_command({}, [make_fund()], namespace="ns", nats_url=None, replay_clock=True)
    assert cmd[-1] == "--replay-clock"
    assert "--replay-clock" not in paper_command({}, [make_fund()], namespace="ns",
                                                 nats_url=None)


def _bar(symbol: str, ts: dt.datetime, open_: str, close: str) -> Bar:
    o, c = Decimal(open_), Decimal(close)
    return Bar(symbol=symbol, ts=ts, interval="1d", open=o, high=max(o, c), low=min(o, c),
               close=c, volume=Decimal(1_000_000))


def _tick(seq: int, ts: dt.datetime, bars: int) -> ClockTick:
    return ClockTick(replay_id="r1", seq=seq, session=f"{ts:%Y-%m-%d}", ts=ts, bars=bars)



@pytest.fixture
async def bus(paper_bus: Bus) -> Bus:
    return paper_bus


async def _session(bus: Bus, bars: list[Bar]) -> None:
    """A session's bars as the datalake replay sends them (into the datalake stream)."""
    await bus.publish_batch([(f"mts.v1.datalake.bars.{b.symbol}", b,
                              f"bar:{b.symbol}:{b.ts:%Y-%m-%d}") for b in bars])


async def _count(bus: Bus, subject: str) -> int:
    info = await bus.js.stream_info(bus.stream_for("oms"),
                                    subjects_filter=bus.wire_subject(subject))
    return sum((info.state.subjects or {}).values())


@pytest.mark.integration
async def test_an_order_sent_at_a_close_fills_at_the_next_open_before_the_oms_answers(
        bus: Bus) -> None:
    from mts1b_brokers import PaperClient
    from mts1b_brokers.service import BrokerService

    await bus.declare_streams(["datalake", "brokers", "oms"])
    venue_clock = ReplayClock()
    venue = PaperClient(accounts={"acc1": "1000000"}, clock=venue_clock)
    schema = f"oms_rc_{bus.namespace}"
    stop, ready = asyncio.Event(), asyncio.Event()
    opts = ServeOptions(dsn=DSN, funds=[make_fund()], instruments=make_registry("AAPL", "MSFT"),
                        schema=schema, namespace=bus.namespace, replay_clock=True,
                        broker_wait=5)
    async with BrokerService(venue, bus, replay_clock=venue_clock):
        task = asyncio.get_running_loop().create_task(run_service(opts, ready=ready,
                                                                  stop=stop))
        store = None
        try:
            await asyncio.wait_for(ready.wait(), 30)
            store = await Store.open(DSN, schema=schema, min_size=1, max_size=2)
            await _session(bus, [_bar("AAPL", CLOSE1, "99", "100"),
                                 _bar("MSFT", CLOSE1, "49", "50")])
            await hand_out(bus, _tick(1, CLOSE1, 2), PARTICIPANTS, timeout=30)
            assert venue.now() == CLOSE1

            # the composer's order, sent at session 1's close
            sent = await bus.request("mts.v1.oms.commands.submit", SubmitOrder(order=Order(
                idempotency_key="k1", fund_id="f1", strategy_id="s1",
                instrument=Equity(symbol="AAPL"), side=Side.BUY, quantity=Decimal(10),
                order_type=OrderType.MARKET)), timeout=10, reply_model=CommandReply)
            assert isinstance(sent, CommandReply) and sent.ok, sent
            assert sent.status is OrderStatus.ACCEPTED
            order_id = sent.order_id or ""
            state = await store.load_order(order_id)
            assert state is not None and state.status is OrderStatus.ACCEPTED
            assert await _count(bus, "mts.v1.oms.fills.recorded") == 0

            # session 2's bars overtaken by its tick (core NATS gives no order between the
            # two): the venue waits for them, the OMS for the venue
            handing = asyncio.get_running_loop().create_task(
                hand_out(bus, _tick(2, CLOSE2, 2), PARTICIPANTS, timeout=30))
            await asyncio.sleep(0.3)
            assert not handing.done()
            await _session(bus, [_bar("AAPL", CLOSE2, "101", "105"),
                                 _bar("MSFT", CLOSE2, "51", "52")])
            await handing
            # answered: the fill and the position are on the bus already, and in the book
            assert await _count(bus, "mts.v1.oms.fills.recorded") == 1
            assert await _count(bus, "mts.v1.oms.positions.updated") == 1
            state = await store.load_order(order_id)
            assert state is not None and state.status is OrderStatus.FILLED
            assert [(f.price, f.quantity, f.ts) for f in state.fills.values()] == [
                (Decimal(101), Decimal(10), CLOSE2)]  # session 2's open, at its time
            held = {(s, sym): p.quantity for f, s, sym, p in await store.positions()
                    if f == "f1"}
            assert held == {("s1", "AAPL"): Decimal(10)}

            events = await bus.js.stream_info(bus.stream_for("oms"))
            reports = len(venue.history)
            await hand_out(bus, _tick(2, CLOSE2, 2), PARTICIPANTS, timeout=30)  # again
            assert (await bus.js.stream_info(bus.stream_for("oms"))).state.messages == (
                events.state.messages)
            assert len(venue.history) == reports
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            if store is not None:
                await store.close()
            await drop_schema(DSN, schema)


@pytest.mark.integration
async def test_serve_replay_clock_starts_the_paper_service_on_the_replay_clock(
        bus: Bus, tmp_path: Path) -> None:
    """``mts mts1b-oms serve --replay-clock`` with no paper service running: the one it starts
    gets ``--replay-clock`` and takes the ticks as ``broker-paper``, the OMS as ``oms``."""
    ns = bus.namespace or ""
    schema = f"oms_rc_{ns}"
    await bus.declare_streams(["datalake"])
    (tmp_path / "funds.json").write_text(json.dumps([make_fund().model_dump(mode="json")]))
    (tmp_path / "instruments.json").write_text(make_registry("AAPL").to_json())
    write_signing_keys(tmp_path)
    log = tmp_path / "oms.log"
    cmd = [sys.executable, "-m", "mts1b_oms.cli", "serve", "--funds", str(tmp_path / "funds.json"),
           "--instruments", str(tmp_path / "instruments.json"), "--keys",
           str(tmp_path / "keys.json"), "--broker-wait", "0.5", "--schema", schema,
           "--namespace", ns, "--replay-clock"]
    with log.open("ab") as out:
        oms = subprocess.Popen(cmd, env={**os.environ, "MTS_DATABASE_URL": DSN},
                               stdout=out, stderr=out)
    pids: list[int] = []
    try:
        await _session(bus, [_bar("AAPL", CLOSE1, "99", "100")])
        await hand_out(bus, _tick(1, CLOSE1, 1), PARTICIPANTS, timeout=60)  # waits for both
        pids = [int(p) for p in re.findall(r"as pid (\d+)", log.read_text(errors="replace"))]
        assert len(pids) == 1
        assert "--replay-clock" in Path(f"/proc/{pids[0]}/cmdline").read_bytes().decode(
            errors="replace").split("\0")
        oms.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(oms.wait, 30) == 0
    finally:
        if oms.poll() is None:
            oms.kill()
            await asyncio.to_thread(oms.wait, 20)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            for _ in range(200):  # not our child: wait for it to be gone
                try:
                    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
                except OSError:
                    break
                if state in {"Z", "X"}:
                    break
                await asyncio.sleep(0.1)
        await drop_schema(DSN, schema)
