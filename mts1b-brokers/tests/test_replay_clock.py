"""The paper venue on a lockstep replay's clock (issue #20): an order accepted at a session's
close trades only on the next session's bar; over real NATS the service answers a tick once
every bar of the session traded the venue - also bars the tick overtook, also bars sent before
a (re)started service subscribed (read from the datalake stream) - after the session's
corporate actions, and the reports are on the stream; a session whose bars never come is
refused, naming them."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal as D  # noqa: N817

import pytest
from mts1b_brokers import PaperClient
from mts1b_brokers.service import BrokerService, execution_subject, tick_participant
from mts1b_foundation import (
    Bar,
    ClockTick,
    CorporateAction,
    Equity,
    ExecType,
    Order,
    OrderType,
)
from mts1b_platform.bus import Bus, BusError
from mts1b_platform.replayclock import ReplayClock, ReplayStalled, hand_out

URL = os.environ.get("MTS_NATS_URL", "nats://127.0.0.1:4222")
CLOSE1 = dt.datetime(2016, 1, 4, 21, tzinfo=dt.UTC)
CLOSE2 = dt.datetime(2016, 1, 5, 21, tzinfo=dt.UTC)
CLOSE3 = dt.datetime(2016, 1, 6, 21, tzinfo=dt.UTC)
BROKER = tick_participant("paper")


def _bar(symbol: str, ts: dt.datetime, open_: str, close: str) -> Bar:
    o, c = D(open_), D(close)
    return Bar(symbol=symbol, ts=ts, interval="1d", open=o, high=max(o, c), low=min(o, c),
               close=c, volume=D(1_000_000))


def _tick(seq: int, ts: dt.datetime, bars: int, actions: int = 0) -> ClockTick:
    return ClockTick(replay_id="r1", seq=seq, session=f"{ts:%Y-%m-%d}", ts=ts, bars=bars,
                     actions=actions)


def _buy(key: str, qty: str = "10") -> Order:
    return Order(order_id=f"o-{key}", idempotency_key=key, fund_id="acc1", strategy_id="s1",
                 instrument=Equity(symbol="AAPL"), side="buy", quantity=D(qty),
                 order_type=OrderType.MARKET)


async def test_an_order_accepted_at_a_close_trades_on_the_next_sessions_bar_only() -> None:
    clock = ReplayClock()
    clock.set(_tick(1, CLOSE1, 1))
    venue = PaperClient(accounts={"acc1": "100000"}, clock=clock)
    await venue.connect()
    venue.set_mark("AAPL", D(100))  # a fresh venue: its time is the replay's, not the wall's
    assert venue.now() == CLOSE1
    await venue.submit(_buy("a"))
    assert await venue.on_bar(_bar("AAPL", CLOSE1, "99", "100")) == []  # session 1's own bar
    await venue.submit(_buy("b"))  # market time is now session 1's close as well
    fills = await venue.on_bar(_bar("AAPL", CLOSE2, "101", "103"))
    assert [(r.order_id, r.exec_type, r.last_price) for r in fills] == [
        ("o-a", ExecType.FILL, D(101)), ("o-b", ExecType.FILL, D(101))]


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    try:
        b = await Bus.connect(url=URL, namespace=f"brc{uuid.uuid4().hex[:10]}",
                              connect_timeout=2)
    except BusError as exc:
        pytest.skip(f"no NATS at {URL}: {exc}")
    await b.declare_streams(["datalake", "brokers"])
    try:
        yield b
    finally:
        await b.delete_streams()
        await b.drain()


async def _publish(bus: Bus, bars: list[Bar]) -> None:
    """Bars as the datalake replay sends them: into the datalake stream."""
    await bus.publish_batch([(f"mts.v1.datalake.bars.{b.symbol}", b,
                              f"bar:{b.symbol}:{b.ts:%Y-%m-%d}") for b in bars])


async def _executions(bus: Bus) -> int:
    info = await bus.js.stream_info(
        bus.stream_for("brokers"), subjects_filter=bus.wire_subject(execution_subject("paper")))
    return sum((info.state.subjects or {}).values())


def _service(bus: Bus, **kwargs: float) -> tuple[PaperClient, BrokerService]:
    clock = ReplayClock()
    venue = PaperClient(accounts={"acc1": "100000"}, clock=clock)
    return venue, BrokerService(venue, bus, replay_clock=clock, **kwargs)


@pytest.mark.integration
async def test_a_tick_is_answered_once_its_bars_traded_and_the_fills_are_published(
        bus: Bus) -> None:
    venue, service = _service(bus)
    async with service:
        await _publish(bus, [_bar("AAPL", CLOSE1, "99", "100"), _bar("MSFT", CLOSE1, "49", "50")])
        await hand_out(bus, _tick(1, CLOSE1, 2), [BROKER], timeout=20)
        await venue.submit(_buy("a"))  # during session 1's cycle: at its close
        handing = asyncio.get_running_loop().create_task(
            hand_out(bus, _tick(2, CLOSE2, 2), [BROKER], timeout=20))
        await asyncio.sleep(0.3)  # the tick overtook session 2's bars: it waits for them
        assert not handing.done()
        await _publish(bus, [_bar("AAPL", CLOSE2, "101", "103"),
                             _bar("MSFT", CLOSE2, "51", "52")])
        await handing
        assert await _executions(bus) == 2  # the ack and the fill, on the stream already
        fill = venue.history[-1]
        assert (fill.exec_type, fill.last_price, fill.ts) == (ExecType.FILL, D(101), CLOSE2)
        reports = len(venue.history)
        await hand_out(bus, _tick(2, CLOSE2, 2), [BROKER], timeout=20)  # asked again
        assert len(venue.history) == reports

        # session 3: a 2-for-1 split at its open. Sent after the bar here (the replay sends
        # it before; core NATS orders neither): the venue still applies it first
        await venue.submit(_buy("b"))  # fills on session 3's bar, in post-split shares
        await _publish(bus, [_bar("AAPL", CLOSE3, "52", "53")])
        await bus.publish("mts.v1.datalake.actions.AAPL", CorporateAction(
            action_id="ca-AAPL-split", symbol="AAPL", ex_date="2016-01-06", kind="split",
            value=D(2)), msg_id="ca-AAPL-split")
        await hand_out(bus, _tick(3, CLOSE3, 1, actions=1), [BROKER], timeout=20)
        [held] = await venue.positions("acc1")
        assert (held.quantity, held.avg_cost) == (D(30), (D(20) * D("50.5") + 10 * 52) / 30)


@pytest.mark.integration
async def test_a_restarted_venue_reads_the_sessions_bars_from_the_stream(bus: Bus) -> None:
    await _publish(bus, [_bar("AAPL", CLOSE1, "99", "100"), _bar("MSFT", CLOSE1, "49", "50")])
    await _publish(bus, [_bar("AAPL", CLOSE2, "101", "103")])  # MSFT does not trade on day 2
    venue, service = _service(bus)  # (re)started after the bars were sent
    async with service:
        await hand_out(bus, _tick(2, CLOSE2, 1), [BROKER], timeout=20)
        assert venue.now() == CLOSE2
        ack = await venue.submit(_buy("a"))  # priced by the stored bar: no NO_REFERENCE_PRICE
        assert ack.exec_type is ExecType.ACK


@pytest.mark.integration
async def test_a_session_whose_bars_do_not_come_is_refused_naming_them(bus: Bus) -> None:
    _venue, service = _service(bus, bar_wait=1.0)
    async with service:
        await _publish(bus, [_bar("AAPL", CLOSE1, "99", "100")])
        with pytest.raises(ReplayStalled, match=r"1 of its 2 bar\(s\) and 0 of its 0 "
                                                r"corporate action\(s\) reached the venue"):
            await hand_out(bus, _tick(1, CLOSE1, 2), [BROKER], timeout=20)


@pytest.mark.integration
async def test_a_delisting_closes_the_position_and_its_orders_are_cancelled_on_the_stream(
        bus: Bus) -> None:
    """Session 3 is the first without AAPL: its delisting (value: session 2's close) pays the
    position out at its open, before MSFT's bar trades, and the order waiting for an AAPL bar
    ends CANCELED - published, so the OMS hears; a repeated tick changes nothing."""
    venue, service = _service(bus)
    async with service:
        await _publish(bus, [_bar("AAPL", CLOSE1, "99", "100")])
        await hand_out(bus, _tick(1, CLOSE1, 1), [BROKER], timeout=20)
        await venue.submit(_buy("a"))
        await _publish(bus, [_bar("AAPL", CLOSE2, "101", "103")])
        await hand_out(bus, _tick(2, CLOSE2, 1), [BROKER], timeout=20)
        cash = (await venue.account("acc1")).cash
        await venue.submit(_buy("b"))  # waits for an AAPL bar that never comes
        await _publish(bus, [_bar("MSFT", CLOSE3, "51", "52")])
        await bus.publish("mts.v1.datalake.actions.AAPL", CorporateAction(
            action_id="ca-AAPL-delisting", symbol="AAPL", ex_date="2016-01-06",
            kind="delisting", value=D(103)), msg_id="ca-AAPL-delisting")
        executions = await _executions(bus)
        await hand_out(bus, _tick(3, CLOSE3, 1, actions=1), [BROKER], timeout=20)
        account = await venue.account("acc1")
        assert account.positions == {} and account.cash == cash + 10 * D(103)
        assert await _executions(bus) == executions + 1
        last = venue.history[-1]
        assert (last.order_id, last.exec_type) == ("o-b", ExecType.CANCELED)
        await hand_out(bus, _tick(3, CLOSE3, 1, actions=1), [BROKER], timeout=20)
        assert (await venue.account("acc1")).cash == account.cash
