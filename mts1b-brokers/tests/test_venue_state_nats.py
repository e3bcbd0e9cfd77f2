"""Over real NATS: the paper service on a replay's clock (``python -m mts1b_brokers.cli serve
paper --replay-clock``, a subprocess) SIGKILLed between sessions, with orders accepted and not
yet filled, and restarted: the next tick fills the orders accepted before the kill (and applies
a split sent while it was down, read back from the datalake stream), a command repeated after
the restart is answered as a repeat, no fill is reported twice, and positions, cash and the
reports equal those of a run never killed. A stored state that cannot be read stops the start,
naming the bucket and key."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal as D  # noqa: N817
from typing import Any
from urllib.parse import urlparse

import pytest
from mts1b_brokers.service import command_subject, execution_subject, tick_participant
from mts1b_brokers.venuestate import VenueStateUnreadable, VenueStore, state_bucket
from mts1b_foundation import (
    AccountSnapshot,
    Bar,
    BrokerQuery,
    ClockTick,
    CommandReply,
    CorporateAction,
    Equity,
    ExecType,
    ExecutionReport,
    Order,
    OrderStatusQuery,
    OrderType,
    SubmitOrder,
    parse_message,
)
from mts1b_platform.bus import Bus, BusError
from mts1b_platform.follow import follow
from mts1b_platform.replayclock import hand_out

URL = os.environ.get("MTS_NATS_URL", "nats://127.0.0.1:4222")
CLOSES = [dt.datetime(2016, 1, d, 21, tzinfo=dt.UTC) for d in (4, 5, 6, 7)]
BROKER = tick_participant("paper")


def _reachable() -> bool:
    parsed = urlparse(URL.split(",")[0])
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 4222), 1):
            return True
    except OSError:
        return False


pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not _reachable(), reason=f"no NATS at {URL}")]


@pytest.fixture
async def namespace() -> AsyncIterator[str]:
    ns = "bvs" + uuid.uuid4().hex[:10]
    yield ns
    try:
        bus = await Bus.connect(url=URL, namespace=ns, connect_timeout=2)
    except BusError:
        return
    await bus.delete_streams()
    await bus.drain()


def _serve(namespace: str, *, replay_clock: bool = True) -> subprocess.Popen[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MTS_LOG_")}
    return subprocess.Popen(
        [sys.executable, "-m", "mts1b_brokers.cli", "serve", "paper",
         *(["--replay-clock"] if replay_clock else []), "--account", "FUND=100000",
         "--leverage", "2", "--seed", "3",
         "--slippage-bps", "7", "--commission-bps", "5", "--participation-rate", "0.001",
         "--nats-url", URL, "--namespace", namespace],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=base)


def _bar(symbol: str, day: int, open_: str, close: str) -> Bar:
    o, c = D(open_), D(close)
    return Bar(symbol=symbol, ts=CLOSES[day], interval="1d", open=o, high=max(o, c) + 1,
               low=min(o, c) - 1, close=c, volume=D(100_000))


def _tick(day: int, bars: int, actions: int = 0) -> ClockTick:
    return ClockTick(replay_id="r1", seq=day + 1, session=f"{CLOSES[day]:%Y-%m-%d}",
                     ts=CLOSES[day], bars=bars, actions=actions)


def _order(key: str, symbol: str, side: str, qty: str, limit: str | None = None) -> Order:
    return Order(order_id=f"o-{key}", idempotency_key=key, fund_id="FUND", strategy_id="s1",
                 instrument=Equity(symbol=symbol), side=side, quantity=D(qty),
                 order_type=OrderType.LIMIT if limit else OrderType.MARKET,
                 limit_price=None if limit is None else D(limit), time_in_force="GTC",
                 created_at=CLOSES[0])


async def _submit(bus: Bus, order: Order) -> CommandReply:
    reply = await bus.request(command_subject("paper", "submit"), SubmitOrder(order=order),
                              timeout=10, reply_model=CommandReply)
    assert isinstance(reply, CommandReply)
    return reply


async def _up(bus: Bus) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            reply = await bus.request(command_subject("paper", "query"),
                                      BrokerQuery(kind="connection"), timeout=1,
                                      reply_model=CommandReply)
            if isinstance(reply, CommandReply) and reply.ok:
                return
        except BusError:
            pass
        assert time.monotonic() < deadline, "the paper service did not come up"
        await asyncio.sleep(0.1)


async def _account(bus: Bus) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("account", "open_orders"):  # (positions: avg_cost may exceed 12 places)
        reply = await bus.request(command_subject("paper", "query"),
                                  BrokerQuery(kind=kind, account_id="FUND"), timeout=10,
                                  reply_model=CommandReply)
        assert isinstance(reply, CommandReply) and reply.ok and reply.payload is not None
        out[kind] = reply.payload
    return out


async def _reports(bus: Bus) -> list[ExecutionReport]:
    seen: list[ExecutionReport] = []

    async def on_message(_: str, data: bytes) -> None:
        seen.append(parse_message(ExecutionReport, data))

    follower = await follow(bus, "brokers", execution_subject("paper"), on_message)
    try:
        assert await follower.caught_up(10)
    finally:
        await follower.stop()
    return seen


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def _run(namespace: str, *, kill: bool) -> tuple[dict[str, Any], list[ExecutionReport],
                                                       list[CommandReply]]:
    """Four sessions; with ``kill`` the service is SIGKILLed with orders working (after
    session 2's orders are accepted) and right after session 3's tick, and restarted."""
    bus = await Bus.connect(url=URL, namespace=namespace)
    await bus.declare_streams(["datalake", "brokers"])
    repeats: list[CommandReply] = []
    proc = _serve(namespace)
    try:
        await _up(bus)
        await bus.publish_batch([(f"mts.v1.datalake.bars.{b.symbol}", b,
                                  f"bar:{b.symbol}:{b.ts:%Y-%m-%d}") for b in (
            _bar("AAPL", 0, "100", "101"), _bar("MSFT", 0, "50", "51"))])
        await hand_out(bus, _tick(0, 2), [BROKER], timeout=30)
        for order in (_order("a1", "AAPL", "buy", "150"), _order("m1", "MSFT", "buy", "300"),
                      _order("m2", "MSFT", "buy", "40", limit="45.00")):
            assert (await _submit(bus, order)).ok
        await bus.publish_batch([(f"mts.v1.datalake.bars.{b.symbol}", b,
                                  f"bar:{b.symbol}:{b.ts:%Y-%m-%d}") for b in (
            _bar("AAPL", 1, "102", "103"), _bar("MSFT", 1, "52", "50"))])
        await hand_out(bus, _tick(1, 2), [BROKER], timeout=30)  # a1 and m1 fill in part
        sell = _order("a2", "AAPL", "sell", "60")
        assert (await _submit(bus, sell)).ok
        if kill:  # orders working (a1 and m1 in part, m2, a2 untouched): SIGKILL
            _kill(proc)
        # session 3: a 2-for-1 split of MSFT at its open - sent while the venue may be down
        await bus.publish("mts.v1.datalake.actions.MSFT", CorporateAction(
            action_id="ca-MSFT-split", symbol="MSFT", ex_date=f"{CLOSES[2]:%Y-%m-%d}",
            kind="split", value=D(2)), msg_id="ca-MSFT-split")
        await bus.publish_batch([(f"mts.v1.datalake.bars.{b.symbol}", b,
                                  f"bar:{b.symbol}:{b.ts:%Y-%m-%d}") for b in (
            _bar("AAPL", 2, "104", "102"), _bar("MSFT", 2, "24", "22"))])
        if kill:
            proc = _serve(namespace)
            await _up(bus)
            repeats.append(await _submit(bus, sell))  # an answer the OMS may have lost
            repeats.append(await _submit(bus, _order("m1", "MSFT", "buy", "300")))
        await hand_out(bus, _tick(2, 2, actions=1), [BROKER], timeout=30)
        if kill:  # again, right after a tick (its fills published): nothing may repeat
            _kill(proc)
            proc = _serve(namespace)
            await _up(bus)
            await hand_out(bus, _tick(2, 2, actions=1), [BROKER], timeout=30)  # re-sent
            # a1 filled before this kill: an ended order, read back from its own key
            repeats.append(await _submit(bus, _order("a1", "AAPL", "buy", "150")))
            status = await bus.request(command_subject("paper", "order_status"),
                                       OrderStatusQuery(order_id="o-a1"), timeout=10,
                                       reply_model=CommandReply)
            assert isinstance(status, CommandReply)
            repeats.append(status)
        await bus.publish_batch([(f"mts.v1.datalake.bars.{b.symbol}", b,
                                  f"bar:{b.symbol}:{b.ts:%Y-%m-%d}") for b in (
            _bar("AAPL", 3, "101", "100"), _bar("MSFT", 3, "21", "20"))])
        await hand_out(bus, _tick(3, 2), [BROKER], timeout=30)
        return await _account(bus), await _reports(bus), repeats
    finally:
        _stop(proc)
        await bus.drain()


async def test_a_venue_sigkilled_with_orders_working_ends_as_one_never_killed(
        namespace: str) -> None:
    clean, clean_reports, _ = await _run(namespace + "c", kill=False)
    try:
        killed, killed_reports, repeats = await _run(namespace, kill=True)
    finally:
        bus = await Bus.connect(url=URL, namespace=namespace + "c")
        await bus.delete_streams()
        await bus.drain()
    assert killed == clean  # cash, buying power, equity, positions, working orders
    assert [r.model_dump(exclude={"ts"}) for r in killed_reports] == [
        r.model_dump(exclude={"ts"}) for r in clean_reports]  # no fill reported twice
    fills = [r for r in killed_reports if r.trade_id is not None]
    assert len({r.trade_id for r in fills}) == len(fills) >= 6
    assert {(r.order_id, r.exec_type) for r in fills} >= {  # orders working at the kill
        ("o-a1", ExecType.FILL), ("o-a2", ExecType.PARTIAL_FILL), ("o-a2", ExecType.FILL),
        ("o-m1", ExecType.FILL)}
    assert '"MSFT":"400"' in killed["account"]  # 100 bought, split 2-for-1, 200 bought
    assert [(r.ok, r.duplicate, r.status) for r in repeats] == [  # the original acks, then
        (True, True, "accepted"), (True, True, "accepted"), (True, True, "accepted"),
        (True, False, "filled")]  # a1's last report


async def test_without_a_replay_clock_an_order_accepted_before_a_sigkill_fills_after(
        namespace: str) -> None:
    bus = await Bus.connect(url=URL, namespace=namespace)
    await bus.declare_streams(["datalake", "brokers"])
    proc = _serve(namespace, replay_clock=False)
    try:
        await _up(bus)
        await bus.publish("mts.v1.datalake.bars.AAPL", _bar("AAPL", 0, "100", "101"))
        buy = _order("a1", "AAPL", "buy", "50")
        deadline = time.monotonic() + 10
        while not (reply := await _submit(bus, buy)).ok:  # until the bar priced AAPL
            assert reply.venue_code == "NO_REFERENCE_PRICE", reply
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        _kill(proc)
        proc = _serve(namespace, replay_clock=False)
        await _up(bus)
        await bus.publish("mts.v1.datalake.bars.AAPL", _bar("AAPL", 1, "102", "103"))
        deadline = time.monotonic() + 10
        while not [r for r in await _reports(bus) if r.trade_id is not None]:
            assert time.monotonic() < deadline, "the order accepted before the kill never filled"
            await asyncio.sleep(0.1)
        [ack, fill] = await _reports(bus)
        assert (ack.exec_type, fill.exec_type, fill.last_quantity) == (
            ExecType.ACK, ExecType.FILL, D(50))
        account = parse_message(AccountSnapshot, (await _account(bus))["account"])
        assert account.positions == {"AAPL": D(50)}
        assert fill.last_price is not None and fill.commission is not None
        assert account.cash == D(100_000) - 50 * fill.last_price - fill.commission
    finally:
        _stop(proc)
        await bus.drain()


async def test_a_stored_state_that_cannot_be_read_stops_the_start_naming_it(
        namespace: str) -> None:
    bus = await Bus.connect(url=URL, namespace=namespace)
    kv = await bus.kv(state_bucket("paper"))
    await kv.put("head", b"{not json")
    await bus.drain()
    proc = _serve(namespace)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "bucket 'broker-state-paper', key 'head'" in err
    assert "serve --reset-state" in err


async def test_the_store_splits_a_large_state_and_names_a_missing_part(namespace: str) -> None:
    bus = await Bus.connect(url=URL, namespace=namespace)
    try:
        store = await VenueStore.open(bus, "big")
        big = {"blob": os.urandom(700_000).hex()}  # compresses to about 0.8 MB: two parts
        assert await store.save({"n": 1}, [])
        assert await store.save(big, [{"order_id": "o/1 x", "rejected": None}])
        assert not await store.save(big, [])  # unchanged: nothing written
        again = await VenueStore.open(bus, "big")
        assert await again.load() == big
        assert await again.ended("o/1 x") == {"order_id": "o/1 x", "rejected": None}
        assert await again.ended("o-2") is None
        kv = await bus.kv(state_bucket("big"))
        await kv.delete(f"part.{again.generation % 2}.1")
        missing = r"bucket 'broker-state-big', key 'part\.0\.1'\) cannot be read: the part"
        with pytest.raises(VenueStateUnreadable, match=missing):
            await (await VenueStore.open(bus, "big")).load()
    finally:
        await bus.drain()
