"""Live market data onto the bus: every adapter's quotes and bars on their per-symbol subjects.

Why one function for every venue: a live source (foundation's
:class:`~mts1b_foundation.StreamingMarketDataProtocol`: IB's folded real-time bars, Coinbase's
ticker and candles) yields quotes and bars; where they go is the stack's rule, not the venue's -
``mts.v1.datalake.quotes.<token>`` and ``mts.v1.datalake.bars.<token>``, the subjects the
replay and the datalake publish on, so a strategy reads live and replayed data alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from mts1b_foundation import Bar, PublisherProtocol, Quote, symbol_subject

__all__ = ["publish_market_data"]


async def publish_market_data(publisher: PublisherProtocol,
                              items: AsyncIterator[Quote | Bar]) -> int:
    """Publish every quote and bar on its symbol's subject until the stream ends; returns how
    many were published."""
    count = 0
    async for item in items:
        entity = "quotes" if isinstance(item, Quote) else "bars"
        await publisher.publish(symbol_subject(entity, item.symbol), item)
        count += 1
    return count
