"""IB live bars: FakeTws's 5-second real-time bars (decoded by ib_async) folded into bars of
the stack's interval by IbkrBroker.stream_bars and renewed after a reconnect (publishing
them: test_marketdata.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import pytest
from mts1b_brokers.ibkr import IbkrBroker
from mts1b_brokers.ibkr.bars import BarAggregator, IbkrMarketData, interval_seconds
from mts1b_brokers.testing.tws import FakeTws
from mts1b_foundation import Bar, ConnectionState, StreamingMarketDataProtocol

T0 = dt.datetime(2024, 1, 2, 15, 30, tzinfo=dt.UTC)
E0 = int(T0.timestamp())
D = Decimal


def test_five_second_bars_fold_into_the_interval() -> None:
    agg = BarAggregator("AAPL", "1m")
    out: list[Bar] = []
    for i in range(12):
        price = D(100) + i
        out += agg.add(E0 + 5 * i, price, price + 1, price - 1, price, D(10), price)
    (bar,) = out
    assert (bar.ts, bar.interval, bar.open, bar.high, bar.low, bar.close, bar.volume) == (
        T0 + dt.timedelta(minutes=1), "1m", D(100), D(112), D(99), D(111), D(120))
    assert bar.vwap == D("105.5000")
    # a missing last 5-second bar: the next bucket's first bar closes the bucket
    out = agg.add(E0 + 60, D(50), D(51), D(49), D(50), D(1), D(50))
    out += agg.add(E0 + 120, D(60), D(61), D(59), D(60), D(1), D(60))
    assert [(b.ts, b.close) for b in out] == [(T0 + dt.timedelta(minutes=2), D(50))]
    # joining in the middle of a bucket drops that bucket (its open is unknown)
    late = BarAggregator("AAPL", "30s")
    assert late.add(E0 + 25, D(1), D(1), D(1), D(1), D(1), D(1)) == []
    assert [b.ts for b in late.add(E0 + 55, D(2), D(2), D(2), D(2), D(1), D(2))] == []
    assert interval_seconds("5m") == 300
    for bad in ("7s", "0m", "1d", "m", "25h"):
        with pytest.raises(ValueError, match="interval must be"):
            interval_seconds(bad)


async def _push_minute(tws: FakeTws, start: int, price: Decimal) -> None:
    for i in range(6):
        when = dt.datetime.fromtimestamp(start + 5 * i, dt.UTC)
        await tws.push_bar("AAPL", when, price, price + 1, price - 1, price, D(100))


async def test_stream_bars_through_ib_async_and_a_reconnect() -> None:
    async with FakeTws(prices={"AAPL": D(100)}) as tws:
        broker = IbkrBroker(port=tws.port, client_id=5, reconnect_initial=0.05)
        await broker.connect()
        live = IbkrMarketData(broker, ["AAPL"], "30s")
        assert isinstance(live, StreamingMarketDataProtocol)
        with pytest.raises(ValueError, match="interval must be"):
            IbkrMarketData(broker, ["AAPL"], "7s")
        stream = live.stream()
        first = asyncio.ensure_future(anext(stream))
        for _ in range(50):
            if tws.bar_subscribers("AAPL"):
                break
            await asyncio.sleep(0.02)
        await _push_minute(tws, E0, D(100))
        bar = await asyncio.wait_for(first, 3)
        assert isinstance(bar, Bar)  # IB's live source streams bars only
        assert (bar.symbol, bar.ts, bar.open, bar.high, bar.low, bar.volume) == (
            "AAPL", T0 + dt.timedelta(seconds=30), D(100), D(101), D(99), D(600))
        tws.drop_connections()
        await asyncio.sleep(0.05)
        for _ in range(100):
            if broker.connection_state is ConnectionState.CONNECTED and \
                    tws.bar_subscribers("AAPL"):
                break
            await asyncio.sleep(0.02)
        assert tws.bar_subscribers("AAPL") == 1  # renewed after the reconnect
        nxt = asyncio.ensure_future(anext(stream))
        await _push_minute(tws, E0 + 60, D(102))
        later = await asyncio.wait_for(nxt, 3)
        assert isinstance(later, Bar) and later.close == D(102)
        await stream.aclose()  # type: ignore[attr-defined]
        for _ in range(100):
            if not tws.bar_subscribers("AAPL"):
                break
            await asyncio.sleep(0.02)
        assert tws.bar_subscribers("AAPL") == 0  # cancelRealTimeBars sent
        await broker.close()

