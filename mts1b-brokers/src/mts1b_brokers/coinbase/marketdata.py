"""Coinbase live market data: ``ticker`` -> :class:`Quote`, ``candles`` -> :class:`Bar`.

Why two channels: the ``ticker`` channel carries the top of book (best bid and ask with their
sizes) and the last price, but only a rolling 24-hour volume, so bars built from it would have
no honest volume. The ``candles`` channel carries Coinbase's own 5-minute OHLCV candle, sent
again (grown) about every second; a candle is complete when one with a later ``start`` arrives,
and is then sent as a ``Bar`` (``interval="5m"``, ``ts`` = its end). A candle whose updates
were interrupted by a reconnect and not refreshed afterwards is dropped rather than sent short.

The connection is public (no key needed), subscribed to ``heartbeats`` too (Coinbase closes a
channel that is quiet for 60-90 s), watched for silence (``heartbeat_timeout``) and reconnected
with exponential backoff. It is a foundation ``StreamingMarketDataProtocol``;
:func:`mts1b_brokers.marketdata.publish_market_data` puts each item on its per-symbol subject.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from mts1b_foundation import Bar, Quote
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

__all__ = ["CANDLE_SECONDS", "CandleBars", "CoinbaseMarketData"]

log = logging.getLogger("mts1b_brokers.coinbase")

CANDLE_SECONDS = 300
"""Coinbase's ``candles`` channel sends 5-minute candles."""
MARKET_WS = "wss://advanced-trade-ws.coinbase.com"


def _d(value: Any) -> Decimal | None:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


@dataclass
class _Candle:
    start: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    stale: bool = False


class CandleBars:
    """Turns one product's stream of ``candles`` updates into finished 5-minute bars."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self._current: _Candle | None = None

    def interrupted(self) -> None:
        """The connection dropped: the current candle may miss updates until refreshed."""
        if self._current is not None:
            self._current.stale = True

    def update(self, candle: dict[str, Any]) -> list[Bar]:
        """Take one candle update; return the bar it finished, if any."""
        start = candle.get("start")
        values = [_d(candle.get(k)) for k in ("open", "high", "low", "close", "volume")]
        if not str(start).isdigit() or any(v is None for v in values):
            return []
        o, h, low, c, v = (x for x in values if x is not None)
        new = _Candle(int(str(start)), o, h, low, c, v)
        cur = self._current
        if cur is not None and new.start < cur.start:
            return []  # a late update of a candle already sent
        if cur is not None and new.start == cur.start:
            self._current = new
            return []
        self._current = new
        if cur is None or cur.stale or min(cur.open, cur.low) <= 0:
            return []
        try:
            return [Bar(symbol=self.symbol, interval="5m", open=cur.open, high=cur.high,
                        low=cur.low, close=cur.close, volume=cur.volume,
                        ts=dt.datetime.fromtimestamp(cur.start + CANDLE_SECONDS, dt.UTC))]
        except ValueError as exc:
            log.warning("coinbase candle of %s refused: %s", self.symbol, exc)
            return []


def ticker_quote(ticker: dict[str, Any], ts: dt.datetime) -> Quote | None:
    """The ``Quote`` of one ticker entry, or ``None`` when it has no two-sided book (an empty
    side, a crossed book for an instant)."""
    bid, ask = _d(ticker.get("best_bid")), _d(ticker.get("best_ask"))
    bid_size = _d(ticker.get("best_bid_quantity")) or Decimal(0)
    ask_size = _d(ticker.get("best_ask_quantity")) or Decimal(0)
    if bid is None or ask is None or bid <= 0 or ask <= 0 or bid > ask:
        return None
    try:
        return Quote(symbol=str(ticker.get("product_id")), ts=ts, bid=bid, ask=ask,
                     bid_size=max(bid_size, Decimal(0)), ask_size=max(ask_size, Decimal(0)))
    except ValueError:
        return None


class CoinbaseMarketData:
    """Quotes and 5-minute bars of ``product_ids`` from Coinbase's public market channels."""

    def __init__(self, product_ids: list[str], *, ws_url: str = MARKET_WS,
                 ca_file: str | None = None, heartbeat_timeout: float = 5.0,
                 backoff: float = 0.25, max_backoff: float = 10.0,
                 candles: bool = True) -> None:
        if not product_ids:
            raise ValueError("product_ids must name at least one product, got []")
        self.product_ids = list(product_ids)
        self._url = ws_url
        self._ssl = (ssl.create_default_context(cafile=ca_file) if ws_url.startswith("wss://")
                     else None)
        self._timeout = heartbeat_timeout
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._channels = ["heartbeats", "ticker"] + (["candles"] if candles else [])
        self._bars = {p: CandleBars(p) for p in self.product_ids}
        self.reconnects = 0

    async def stream(self) -> AsyncIterator[Quote | Bar]:
        """Quotes and bars as they come, across reconnects, until the consumer stops."""
        attempt = 0
        while True:
            try:
                async with connect(self._url, ssl=self._ssl, open_timeout=self._timeout,
                                   ping_interval=None, compression=None,
                                   max_size=10 * 1024 * 1024) as ws:
                    for channel in self._channels:
                        await ws.send(json.dumps({"type": "subscribe", "channel": channel,
                                                  "product_ids": self.product_ids}))
                    attempt = 0
                    while True:
                        async with asyncio.timeout(self._timeout):  # not wait_for (3.11)
                            raw = await ws.recv()
                        for item in self._items(json.loads(raw)):
                            yield item
            except (OSError, WebSocketException, TimeoutError, ValueError) as exc:
                log.warning("coinbase market data lost (%s); reconnecting", type(exc).__name__)
            for bars in self._bars.values():
                bars.interrupted()
            self.reconnects += 1
            await asyncio.sleep(min(self._backoff * 2 ** attempt, self._max_backoff))
            attempt += 1

    def _items(self, msg: Any) -> list[Quote | Bar]:
        if not isinstance(msg, dict):
            return []
        channel = msg.get("channel")
        try:
            ts = dt.datetime.fromisoformat(str(msg.get("timestamp")).replace("Z", "+00:00"))
        except ValueError:
            ts = dt.datetime.now(dt.UTC)
        out: list[Quote | Bar] = []
        for event in msg.get("events") or []:
            if not isinstance(event, dict):
                continue
            if channel == "ticker":
                for ticker in event.get("tickers") or []:
                    quote = ticker_quote(ticker, ts) if isinstance(ticker, dict) else None
                    if quote is not None:
                        out.append(quote)
            elif channel == "candles":
                for candle in event.get("candles") or []:
                    bars = self._bars.get(str(candle.get("product_id")))
                    if bars is not None:
                        out.extend(bars.update(candle))
        return out
