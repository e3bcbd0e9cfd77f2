"""Market data on the wire: bars, quotes and trades for one instrument symbol."""

from __future__ import annotations

from decimal import Decimal

from pydantic import model_validator

from mts1b_foundation.symbols import Symbol
from mts1b_foundation.wire import (
    Identifier,
    NonNegativeDecimal,
    PositiveDecimal,
    UtcDatetime,
    WireModel,
)

__all__ = ["Bar", "Quote", "Trade"]


class Bar(WireModel):
    """An OHLCV bar. ``ts`` is the bar's *end* (a daily bar ends at the session close)."""

    SCHEMA_VERSION = 2
    READABLE_VERSIONS = frozenset({1})

    symbol: Symbol
    ts: UtcDatetime
    interval: str = "1d"
    open: PositiveDecimal
    high: PositiveDecimal
    low: PositiveDecimal
    close: PositiveDecimal
    volume: NonNegativeDecimal
    vwap: PositiveDecimal | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Bar:
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        for name in ("open", "close"):
            value: Decimal = getattr(self, name)
            if not self.low <= value <= self.high:
                raise ValueError(
                    f"{name} {value} lies outside the low-high range [{self.low}, {self.high}]"
                )
        return self


class Quote(WireModel):
    """Top of book."""

    SCHEMA_VERSION = 2
    READABLE_VERSIONS = frozenset({1})

    symbol: Symbol
    ts: UtcDatetime
    bid: PositiveDecimal
    ask: PositiveDecimal
    bid_size: NonNegativeDecimal = Decimal(0)
    ask_size: NonNegativeDecimal = Decimal(0)

    @model_validator(mode="after")
    def _not_crossed(self) -> Quote:
        if self.bid > self.ask:
            raise ValueError(f"crossed quote: bid {self.bid} above ask {self.ask}")
        return self

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2


class Trade(WireModel):
    """A print on the tape (not our own fill: see :class:`mts1b_foundation.orders.Fill`)."""

    SCHEMA_VERSION = 2
    READABLE_VERSIONS = frozenset({1})

    symbol: Symbol
    ts: UtcDatetime
    price: PositiveDecimal
    size: PositiveDecimal
    venue: Identifier | None = None
