"""Coinbase live market data against the stand-in: ticker -> Quote, candles -> 5-minute Bar,
published on the per-symbol subjects of the real NATS."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

pytest.importorskip("coinbase", reason="needs the coinbase extra (coinbase-advanced-py)")

from mts1b_brokers.coinbase.marketdata import CandleBars, CoinbaseMarketData, ticker_quote
from mts1b_brokers.testing.coinbase_server import CoinbaseServer
from mts1b_brokers.testing.coinbase_tls import new_api_key
from mts1b_foundation import Bar, Quote, StreamingMarketDataProtocol

D = Decimal
T = 1_700_000_100  # a 5-minute boundary


async def _next(items: AsyncIterator[Quote | Bar], kind: type, timeout: float = 3.0
                ) -> Quote | Bar:
    async def first() -> Quote | Bar:
        async for item in items:
            if isinstance(item, kind):
                return item
        raise AssertionError("stream ended")

    return await asyncio.wait_for(first(), timeout)


async def test_ticker_quotes_and_candle_bars_across_a_reconnect() -> None:
    async with CoinbaseServer(new_api_key("EdDSA"), heartbeat_interval=0.1) as server:
        md = CoinbaseMarketData(["BTC-USD"], ws_url=server.ws_url, ca_file=str(server.ca_file),
                                heartbeat_timeout=1.0, backoff=0.05)
        assert isinstance(md, StreamingMarketDataProtocol)
        items = md.stream()
        snap = await _next(items, Quote)
        assert isinstance(snap, Quote)
        assert (snap.symbol, snap.bid, snap.ask) == ("BTC-USD", D(100), D(100))
        while server.connections == 0 or "candles" not in next(iter(
                server._conns)).channels:
            await asyncio.sleep(0.01)
        server.quote("BTC-USD", D("99.5"), D("100.5"), D(2), D(3))
        quote = await _next(items, Quote)
        assert isinstance(quote, Quote)
        assert (quote.bid, quote.ask, quote.bid_size, quote.ask_size) == (
            D("99.5"), D("100.5"), D(2), D(3))
        server.candle("BTC-USD", T, D(100), D(101), D(99), D(100), D(1))
        server.candle("BTC-USD", T, D(100), D(102), D(98), D(101), D("2.5"))  # it grew
        server.candle("BTC-USD", T + 300, D(101), D(101), D(101), D(101), D("0.1"))
        bar = await _next(items, Bar)
        assert bar == Bar(symbol="BTC-USD", interval="5m", open=D(100), high=D(102),
                          low=D(98), close=D(101), volume=D("2.5"),
                          ts=dt.datetime.fromtimestamp(T + 300, dt.UTC))
        await server.drop_connection()  # the T+300 candle misses its updates
        await _next(items, Quote)  # reconnected: the ticker snapshot again
        while server.connections == 0 or "candles" not in next(iter(
                server._conns)).channels:
            await asyncio.sleep(0.01)
        server.candle("BTC-USD", T + 600, D(103), D(103), D(103), D(103), D(1))
        server.candle("BTC-USD", T + 900, D(104), D(104), D(104), D(104), D(1))
        bar = await _next(items, Bar)
        assert bar.ts == dt.datetime.fromtimestamp(T + 900, dt.UTC)  # T+300 was dropped
        assert md.reconnects == 1
        await items.aclose()  # type: ignore[attr-defined]


def test_quotes_need_a_two_sided_book_and_candles_come_in_order() -> None:
    ts = dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
    base = {"product_id": "BTC-USD", "best_bid_quantity": "1", "best_ask_quantity": "1"}
    assert ticker_quote({**base, "best_bid": "101", "best_ask": "100"}, ts) is None  # crossed
    assert ticker_quote({**base, "best_bid": "0", "best_ask": "100"}, ts) is None
    assert ticker_quote({**base, "best_bid": "x", "best_ask": "100"}, ts) is None
    bars = CandleBars("BTC-USD")
    candle = {"open": "1", "high": "2", "low": "1", "close": "2", "volume": "5"}
    assert bars.update({**candle, "start": str(T)}) == []
    assert bars.update({**candle, "start": str(T - 300)}) == []  # late: ignored
    assert [b.close for b in bars.update({**candle, "start": str(T + 300)})] == [D(2)]
