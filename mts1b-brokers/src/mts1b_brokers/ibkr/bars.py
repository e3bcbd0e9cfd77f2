"""IB live market data: 5-second real-time bars folded into bars of the stack's interval.

Why fold: IB's ``reqRealTimeBars`` only gives 5-second bars; the strategies and the datalake
work in bars of ``1m``, ``5m``, ``1h``... A bucket is ``[k*N, (k+1)*N)`` seconds of UTC epoch
time; its ``Bar`` ends (``ts``) at the bucket's end, opens at its first 5-second bar's open,
closes at its last one's close, and its volume and VWAP sum the 5-second bars'. A bucket is
sent when its last 5-second bar arrives, or when a later bucket's bar shows it is over (a
5-second bar that never came). A bucket whose first 5-second bar did not come (a
subscription that began inside it, a reconnect) is dropped: its open would be wrong.

:class:`IbkrMarketData` offers them as a foundation ``StreamingMarketDataProtocol``, which
:func:`mts1b_brokers.marketdata.publish_market_data` puts on ``mts.v1.datalake.bars.<token>``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from mts1b_foundation import Bar, Instrument, Quote

if TYPE_CHECKING:
    from mts1b_brokers.ibkr.broker import IbkrBroker

__all__ = ["BarAggregator", "IbkrMarketData", "interval_seconds"]

IB_BAR_SECONDS = 5
_UNITS = {"s": 1, "m": 60, "h": 3600}


def interval_seconds(interval: str) -> int:
    """``"30s"`` -> 30, ``"1m"`` -> 60, ``"1h"`` -> 3600; a multiple of 5 s, at most a day."""
    m = re.fullmatch(r"([1-9][0-9]*)([smh])", interval)
    seconds = int(m.group(1)) * _UNITS[m.group(2)] if m else 0
    if not seconds or seconds % IB_BAR_SECONDS or seconds > 86_400:
        raise ValueError(f"interval must be like '30s', '1m', '5m' or '1h' (a multiple of "
                         f"{IB_BAR_SECONDS}s, at most 24h), got {interval!r}")
    return seconds


@dataclass
class _Bucket:
    start: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    notional: Decimal


class BarAggregator:
    """Folds one symbol's 5-second bars into bars of ``interval`` (see the module)."""

    def __init__(self, symbol: str, interval: str) -> None:
        self.symbol = symbol
        self.interval = interval
        self.seconds = interval_seconds(interval)
        self._bucket: _Bucket | None = None

    def add(self, start: int, open_: Decimal, high: Decimal, low: Decimal, close: Decimal,
            volume: Decimal, wap: Decimal) -> list[Bar]:
        """Take a 5-second bar starting at ``start`` (epoch seconds); return the bars done."""
        done: list[Bar] = []
        begin = start - start % self.seconds
        b = self._bucket
        if b is not None and begin != b.start:
            done += self._close(b)
            b = None
        if b is None:
            if start != begin:
                return done  # its first 5-second bar is missing: the open is unknown
            b = self._bucket = _Bucket(begin, open_, high, low, close, Decimal(0), Decimal(0))
        b.high, b.low, b.close = max(b.high, high), min(b.low, low), close
        b.volume += volume
        b.notional += wap * volume
        if start + IB_BAR_SECONDS >= begin + self.seconds:
            done += self._close(b)
            self._bucket = None
        return done

    def _close(self, b: _Bucket) -> list[Bar]:
        if b.open <= 0 or b.low <= 0:
            return []  # IB sends -1 / 0 prices when there was nothing to show
        vwap = (b.notional / b.volume).quantize(Decimal("0.0001")) if b.volume else None
        if vwap is not None and not b.low <= vwap <= b.high:
            vwap = None
        ts = dt.datetime.fromtimestamp(b.start + self.seconds, dt.UTC)
        return [Bar(symbol=self.symbol, ts=ts, interval=self.interval, open=b.open,
                    high=b.high, low=b.low, close=b.close, volume=b.volume, vwap=vwap)]


class IbkrMarketData:
    """Live bars of ``symbols`` from a connected :class:`IbkrBroker`, as a foundation
    ``StreamingMarketDataProtocol`` (:func:`mts1b_brokers.marketdata.publish_market_data` puts
    them on the bus): :meth:`IbkrBroker.stream_bars` behind the common interface."""

    def __init__(self, broker: IbkrBroker, symbols: Sequence[str | Instrument],
                 interval: str = "1m") -> None:
        interval_seconds(interval)  # a bad interval is refused here, naming it
        self.broker, self.symbols, self.interval = broker, list(symbols), interval

    async def stream(self) -> AsyncIterator[Quote | Bar]:
        async for bar in self.broker.stream_bars(self.symbols, self.interval):
            yield bar
