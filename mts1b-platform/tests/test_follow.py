"""``follow``: a subject's stored history handed over in order, then its live messages;
``caught_up`` once the history is in - also when nothing under the filter is stored while the
stream holds other subjects (real NATS JetStream)."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import pytest

pytest.importorskip("nats", reason="nats-py (the bus extra of mts1b-platform) is not installed")

from mts1b_foundation import Allocation, Bar, FundConfig, parse_message, symbol_subject
from mts1b_platform.bus import Bus, BusError
from mts1b_platform.follow import follow, history

pytestmark = pytest.mark.integration
T0 = dt.datetime(2026, 12, 4, 21, tzinfo=dt.UTC)


@pytest.fixture
async def bus(fresh_bus: Bus) -> Bus:
    await fresh_bus.declare_streams(["treasury", "datalake"])
    return fresh_bus


def _allocation(amount: int) -> Allocation:
    return Allocation(fund_id="f1", strategy_id="s", as_of=T0, amount_usd=Decimal(amount))


def _fund() -> FundConfig:
    return FundConfig(fund_id="f1", name="Fund one", target_nav_usd=Decimal(1000),
                      broker="paper", broker_account_id="a1")


def _bar(symbol: str, close: int) -> Bar:
    px = Decimal(close)
    return Bar(symbol=symbol, ts=T0, open=px, high=px, low=px, close=px, volume=Decimal(1))


async def test_history_then_live_in_order(bus: Bus) -> None:
    # the stream holds other subjects only: nothing of ours is stored, caught up at once
    await bus.publish_acked("mts.v1.treasury.funds.updated", _fund())
    got: list[Decimal] = []

    async def on(subject: str, data: bytes) -> None:
        assert subject == "mts.v1.treasury.allocations.published"
        got.append(parse_message(Allocation, data).amount_usd)

    empty = await follow(bus, "treasury", "mts.v1.treasury.allocations.published", on)
    assert await empty.caught_up(0.1)
    await empty.stop()
    for amount in (1, 2, 3):
        await bus.publish_acked("mts.v1.treasury.allocations.published", _allocation(amount))
    follower = await follow(bus, "treasury", "mts.v1.treasury.allocations.published", on)
    assert await follower.caught_up(5)
    assert got == [1, 2, 3]
    await bus.publish_acked("mts.v1.treasury.allocations.published", _allocation(4))
    for _ in range(50):
        if len(got) == 4:
            break
        await asyncio.sleep(0.05)
    assert got == [1, 2, 3, 4]
    await follower.stop()


async def test_last_per_subject_gives_each_symbols_last_message(bus: Bus) -> None:
    for symbol, close in (("AAPL", 1), ("MSFT", 2), ("AAPL", 3)):
        await bus.publish_acked(symbol_subject("bars", symbol), _bar(symbol, close))
    closes: dict[str, Decimal] = {}
    seen: list[str] = []

    async def on(subject: str, data: bytes) -> None:
        bar = parse_message(Bar, data)
        closes[bar.symbol] = bar.close
        seen.append(bar.symbol)

    follower = await follow(bus, "datalake", "mts.v1.datalake.bars.*", on,
                            last_per_subject=True)
    assert await follower.caught_up(5)
    assert closes == {"AAPL": 3, "MSFT": 2} and sorted(seen) == ["AAPL", "MSFT"]
    await follower.stop()


async def test_sync_waits_until_what_is_stored_now_is_handed_over(bus: Bus) -> None:
    got: list[Decimal] = []

    async def slow(subject: str, data: bytes) -> None:
        await asyncio.sleep(0.05)  # a consumer that lags behind the publisher
        got.append(parse_message(Allocation, data).amount_usd)

    follower = await follow(bus, "treasury", "mts.v1.treasury.allocations.published", slow)
    assert await follower.sync(1)  # nothing stored yet
    for amount in range(1, 6):
        await bus.publish_acked("mts.v1.treasury.allocations.published", _allocation(amount))
    assert await follower.sync(10)
    assert got == [1, 2, 3, 4, 5]
    await bus.publish_acked("mts.v1.treasury.allocations.published", _allocation(6))
    assert not await follower.sync(0.01)  # not yet handed over: said so, not waited for
    await follower.stop()


async def test_a_stream_that_does_not_exist_is_a_bus_error(bus: Bus) -> None:
    from mts1b_platform.replayclock import stored_actions

    async def on(subject: str, data: bytes) -> None:
        return None

    with pytest.raises(BusError, match="does not exist"):
        await follow(bus, "oms", "mts.v1.oms.positions.updated", on)  # never declared here
    assert await stored_actions(bus, "2016-01-04", timeout=1) == []  # datalake is declared


async def test_stored_actions_are_the_sessions_every_one(bus: Bus) -> None:
    from mts1b_foundation import CorporateAction
    from mts1b_platform.replayclock import stored_actions

    for action_id, symbol, day, kind in (("a1", "AAPL", "2016-01-04", "split"),
                                         ("a2", "AAPL", "2016-01-04", "dividend"),
                                         ("a3", "MSFT", "2016-01-05", "dividend")):
        await bus.publish_acked(symbol_subject("actions", symbol), CorporateAction(
            action_id=action_id, symbol=symbol, ex_date=day, kind=kind, value=Decimal(2)))
    found = await stored_actions(bus, "2016-01-04", timeout=5)
    assert sorted(a.action_id for a in found) == ["a1", "a2"]


async def test_history_is_what_is_stored_now_in_order(bus: Bus) -> None:
    await bus.publish_acked("mts.v1.treasury.funds.updated", _fund())  # another subject
    assert await history(bus, "treasury", "mts.v1.treasury.allocations.published") == []
    for amount in (7, 8, 9):
        await bus.publish_acked("mts.v1.treasury.allocations.published", _allocation(amount))
    stored = await history(bus, "treasury", "mts.v1.treasury.allocations.published")
    assert [s for s, _ in stored] == ["mts.v1.treasury.allocations.published"] * 3
    assert [parse_message(Allocation, d).amount_usd for _, d in stored] == [7, 8, 9]
    with pytest.raises(BusError, match="does not exist"):
        await history(bus, "oms", "mts.v1.oms.positions.updated")  # never declared here
