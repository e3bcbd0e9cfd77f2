"""publish_market_data, the one way every live source reaches the bus: quotes and bars on
their per-symbol subjects over the real NATS (a symbol with a dot, BRK.B, included)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal as D  # noqa: N817

import pytest
from mts1b_brokers.marketdata import publish_market_data
from mts1b_brokers.testing.over_nats import nats_reachable
from mts1b_foundation import Bar, Quote, parse_message, symbol_subject
from mts1b_platform.bus import Bus

NATS_URL = os.environ.get("MTS_NATS_URL", "nats://127.0.0.1:4222")
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not nats_reachable(NATS_URL), reason=f"no NATS at {NATS_URL}")]

TS = dt.datetime(2024, 1, 2, 15, 30, tzinfo=dt.UTC)


async def test_quotes_and_bars_published_on_the_per_symbol_subjects() -> None:
    bus = await Bus.connect(url=NATS_URL, namespace="mkd" + uuid.uuid4().hex[:10])
    try:
        await bus.declare_streams(["datalake"])
        got: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()

        async def on_msg(msg: object) -> None:
            await got.put((msg.subject, msg.data))  # type: ignore[attr-defined]

        for entity, symbol in (("quotes", "BTC-USD"), ("bars", "BTC-USD"), ("bars", "BRK.B")):
            await bus.nc.subscribe(bus.wire_subject(symbol_subject(entity, symbol)), cb=on_msg)
        quote = Quote(symbol="BTC-USD", ts=TS, bid=D(1), ask=D(2))
        bar = Bar(symbol="BTC-USD", ts=TS, interval="5m", open=D(1), high=D(2), low=D(1),
                  close=D(2), volume=D(3))
        dotted = Bar(symbol="BRK.B", ts=TS, interval="1m", open=D(1), high=D(2), low=D(1),
                     close=D(2), volume=D(3))

        async def items() -> AsyncIterator[Quote | Bar]:
            for item in (quote, bar, dotted):
                yield item

        assert await publish_market_data(bus, items()) == 3
        first, second, third = [await asyncio.wait_for(got.get(), 3) for _ in range(3)]
        assert first[0].endswith(symbol_subject("quotes", "BTC-USD"))
        assert parse_message(Quote, first[1]) == quote
        assert second[0].endswith(symbol_subject("bars", "BTC-USD"))
        assert parse_message(Bar, second[1]) == bar
        assert third[0].endswith(symbol_subject("bars", "BRK.B"))
        assert parse_message(Bar, third[1]) == dotted
    finally:
        await bus.delete_streams()
        await bus.drain()
