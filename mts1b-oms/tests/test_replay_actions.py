"""Corporate actions in ``serve --replay-clock`` (issue #20), over real NATS and PostgreSQL
with the real paper broker service: a split of the session's ex-date is applied by the OMS at
the latest at the session's tick, before the session is finished, and lands before the
session's fills whichever reached the OMS first - so the OMS's positions are the venue's.
Skips, saying why, without mts1b-brokers."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from decimal import Decimal
from typing import Any

import pytest
from mts1b_foundation import (
    Bar,
    ClockTick,
    CommandReply,
    CorporateAction,
    Equity,
    ExecType,
    ExecutionReport,
    Order,
    OrderType,
    Side,
    SubmitOrder,
)
from mts1b_oms.positions import PositionState
from mts1b_oms.service import ActionDesk, ServeOptions, run_service
from mts1b_oms.store import Store
from mts1b_oms.testing import drop_schema, make_fund, make_registry
from mts1b_platform.bus import Bus
from mts1b_platform.replayclock import ReplayClock, hand_out

D = Decimal
DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
CLOSES = [dt.datetime(2016, 1, d, 21, tzinfo=dt.UTC) for d in (4, 5, 6)]  # session 3: ex-date
PARTICIPANTS = ["broker-paper", "oms"]



@pytest.fixture
async def bus(paper_bus: Bus) -> Bus:
    return paper_bus


def _bar(ts: dt.datetime, open_: str, close: str) -> Bar:
    o, c = D(open_), D(close)
    return Bar(symbol="AAPL", ts=ts, interval="1d", open=o, high=max(o, c), low=min(o, c),
               close=c, volume=D(1_000_000))


async def _session(bus: Bus, n: int, bar: Bar, actions: list[CorporateAction],
                   timeout: float = 30) -> None:
    """Session ``n`` as the lockstep replay runs it: its actions, then its bars (both into the
    datalake stream), then its tick handed to the venue and the OMS in turn."""
    await bus.publish_batch(
        [(f"mts.v1.datalake.actions.{a.symbol}", a, f"action:{a.action_id}") for a in actions]
        + [(f"mts.v1.datalake.bars.{bar.symbol}", bar, f"bar:{bar.symbol}:{bar.ts:%Y-%m-%d}")])
    tick = ClockTick(replay_id="r1", seq=n, session=f"{bar.ts:%Y-%m-%d}", ts=bar.ts, bars=1,
                     actions=len(actions))
    await hand_out(bus, tick, PARTICIPANTS, timeout=timeout)


async def _order(bus: Bus, key: str, side: Side, qty: str) -> None:
    reply = await bus.request("mts.v1.oms.commands.submit", SubmitOrder(order=Order(
        idempotency_key=key, fund_id="f1", strategy_id="s1", instrument=Equity(symbol="AAPL"),
        side=side, quantity=D(qty), order_type=OrderType.MARKET)), timeout=10,
        reply_model=CommandReply)
    assert isinstance(reply, CommandReply) and reply.ok, reply


@pytest.mark.integration
@pytest.mark.parametrize("lost", [False, True], ids=["on-arrival", "action-lost-on-core"])
async def test_a_sessions_split_is_applied_at_its_tick_before_its_fill(
        bus: Bus, monkeypatch: pytest.MonkeyPatch, lost: bool) -> None:
    from mts1b_brokers import PaperClient
    from mts1b_brokers.service import BrokerService

    if lost:  # the OMS never sees the action on core NATS: only its tick can bring it in
        async def dropped(self: ActionDesk, msg: Any) -> None:
            return None

        monkeypatch.setattr(ActionDesk, "on_message", dropped)
    await bus.declare_streams(["datalake", "brokers", "oms"])
    venue_clock = ReplayClock()
    venue = PaperClient(accounts={"acc1": "1000000"}, instruments=[Equity(symbol="AAPL")],
                        clock=venue_clock)
    schema = f"oms_ra_{bus.namespace}"
    stop, ready = asyncio.Event(), asyncio.Event()
    opts = ServeOptions(dsn=DSN, funds=[make_fund()], instruments=make_registry("AAPL"),
                        schema=schema, namespace=bus.namespace, replay_clock=True,
                        broker_wait=5, actions_wait=0.2)
    async with BrokerService(venue, bus, replay_clock=venue_clock):
        task = asyncio.get_running_loop().create_task(run_service(opts, ready=ready,
                                                                  stop=stop))
        store = None
        try:
            await asyncio.wait_for(ready.wait(), 30)
            store = await Store.open(DSN, schema=schema, min_size=1, max_size=2)
            await _session(bus, 1, _bar(CLOSES[0], "99", "100"), [])
            await _order(bus, "buy", Side.BUY, "15")  # fills at session 2's open, 101
            await _session(bus, 2, _bar(CLOSES[1], "101", "104"), [])
            await _order(bus, "sell", Side.SELL, "5")  # fills at session 3's open, new terms
            split = CorporateAction(action_id="split-aapl-2016-01-06", symbol="AAPL",
                                    ex_date="2016-01-06", kind="split", value=D(2))
            await _session(bus, 3, _bar(CLOSES[2], "52", "53"), [split])
            # answered: 15 -> 30 at 50.5 at the open, then 5 sold at 52 - as the venue has it
            want = PositionState(D(25), D("50.5"), D("7.5"))
            held = {(f, s, sym): p for f, s, sym, p in await store.positions()}
            assert held == {("f1", "s1", "AAPL"): want}
            theirs = {p.symbol: p.quantity for p in await venue.positions("acc1")}
            assert theirs == {"AAPL": D(25)}
            # the same tick again (a replay resumed) changes nothing
            await hand_out(bus, ClockTick(replay_id="r1", seq=3, session="2016-01-06",
                                          ts=CLOSES[2], bars=1, actions=1), PARTICIPANTS,
                           timeout=30)
            assert {(f, s, sym): p for f, s, sym, p in await store.positions()} == held
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            if store is not None:
                await store.close()
            await drop_schema(DSN, schema)


@pytest.mark.integration
async def test_the_desk_applies_an_action_on_arrival_and_refuses_a_tick_missing_one(
        nats_bus: Bus) -> None:
    """Outside a replay an action is applied when it arrives; a tick whose actions are not all
    on the bus nor in the datalake stream is refused, naming the session and the counts."""
    from mts1b_oms.memstore import InMemoryStore
    from mts1b_oms.oms import Oms
    from mts1b_oms.service import ServiceError
    from mts1b_oms.testing import RecordingBroker

    b = nats_bus
    oms = Oms(InMemoryStore(), RecordingBroker(), [make_fund()], instruments=make_registry(),
              sweep_poll_seconds=None)
    await oms.start(consume_reports=False)
    try:
        reply = await oms.submit(Order(idempotency_key="k", fund_id="f1", strategy_id="s1",
                                       instrument=Equity(symbol="AAPL"), side=Side.BUY,
                                       quantity=D(10)))
        assert reply.ok and reply.order_id
        await oms.on_execution_report(ExecutionReport(
            broker="paper", account_id="acc1", order_id=reply.order_id, exec_type=ExecType.FILL,
            ts=CLOSES[1], trade_id="t1", symbol="AAPL", side=Side.BUY, last_quantity=D(10),
            last_price=D(90), cumulative_quantity=D(10)))
        desk = ActionDesk(b, oms)
        split = CorporateAction(action_id="s-1", symbol="AAPL", ex_date="2016-01-06",
                                kind="split", value=D(3))
        await desk.take(split)
        assert desk.applied == {"s-1"}
        assert oms.position_states("f1") == {("s1", "AAPL"): PositionState(D(30), D(30), D(0))}
        assert await desk.finish("2016-01-06", 1, wait=0.05, timeout=2) == 1
        with pytest.raises(ServiceError, match="1 of its 2 corporate action"):
            await desk.finish("2016-01-06", 2, wait=0.05, timeout=2)
    finally:
        await oms.stop()
