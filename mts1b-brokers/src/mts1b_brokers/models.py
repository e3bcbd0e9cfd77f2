"""Pluggable latency, slippage and commission models for the paper broker.

Why small classes with one method: a backtest must state its cost assumptions explicitly and a
test must be able to pin them. Every model is a pure function of its inputs and of the
``random.Random`` the broker passes in (seeded once per :class:`~mts1b_brokers.paper.PaperClient`),
so the same seed and the same inputs give the same fills.

All money is ``Decimal``; prices that a model moves are put back on the instrument's tick grid.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Protocol, runtime_checkable

from mts1b_foundation import Side

from mts1b_brokers.errors import config_error

__all__ = [
    "BpsCommission",
    "BpsSlippage",
    "CommissionModel",
    "FixedLatency",
    "LatencyModel",
    "NoCommission",
    "NoSlippage",
    "PerShareCommission",
    "RandomLatency",
    "RandomTickSlippage",
    "SlippageModel",
    "on_tick_against",
]

_CENT = Decimal("0.01")
_BPS = Decimal(10_000)


@runtime_checkable
class LatencyModel(Protocol):
    """Delay between an order reaching the paper venue and the order being able to trade."""

    def delay(self, rng: random.Random) -> dt.timedelta: ...


@runtime_checkable
class SlippageModel(Protocol):
    """Price actually paid for a marketable fill whose reference price is ``price``.

    Only market-like executions (market orders, triggered stops, the market leg of a stop) are
    slipped; limit prices are never crossed (the broker clamps to the limit afterwards).
    """

    def adjust(self, price: Decimal, side: Side, tick: Decimal, rng: random.Random) -> Decimal: ...


@runtime_checkable
class CommissionModel(Protocol):
    """Commission charged on one fill (a non-negative Decimal, in the account currency)."""

    def commission(self, quantity: Decimal, price: Decimal) -> Decimal: ...


def on_tick_against(price: Decimal, side: Side, tick: Decimal) -> Decimal:
    """Round ``price`` to the tick grid in the direction that is worse for the trader.

    A buyer pays the next tick up, a seller receives the next tick down: slippage never rounds in
    the trader's favour.
    """
    ticks = price / tick
    rounding = ROUND_CEILING if side is Side.BUY else ROUND_FLOOR
    return ticks.to_integral_value(rounding=rounding) * tick


def _non_negative(**fields: Decimal | int) -> None:
    """Raise ``BrokerConfigError`` naming the first of ``fields`` that is negative or not finite
    (a NaN Decimal cannot even be compared, so finiteness is checked first)."""
    for name, value in fields.items():
        if (isinstance(value, Decimal) and not value.is_finite()) or value < 0:
            raise config_error(name, value, "be a finite number >= 0")


@dataclass(frozen=True, slots=True)
class FixedLatency:
    """Every order waits ``delay_`` before it can trade (default: none)."""

    delay_: dt.timedelta = dt.timedelta(0)

    def delay(self, rng: random.Random) -> dt.timedelta:
        return self.delay_


@dataclass(frozen=True, slots=True)
class RandomLatency:
    """Uniform latency in ``[low, high]`` (microsecond steps) from the seeded generator."""

    low: dt.timedelta
    high: dt.timedelta

    def __post_init__(self) -> None:
        if self.low < dt.timedelta(0):
            raise config_error("low", self.low, "be >= 0")
        if self.high < self.low:
            raise config_error("high", self.high, f"be >= low ({self.low})")

    def delay(self, rng: random.Random) -> dt.timedelta:
        lo = int(self.low / dt.timedelta(microseconds=1))
        hi = int(self.high / dt.timedelta(microseconds=1))
        return dt.timedelta(microseconds=rng.randint(lo, hi))


@dataclass(frozen=True, slots=True)
class NoSlippage:
    """Fill exactly at the reference price."""

    def adjust(self, price: Decimal, side: Side, tick: Decimal, rng: random.Random) -> Decimal:
        return price


@dataclass(frozen=True, slots=True)
class BpsSlippage:
    """Pay ``bps`` basis points worse than the reference price, rounded against the trader."""

    bps: Decimal

    def __post_init__(self) -> None:
        _non_negative(bps=self.bps)

    def adjust(self, price: Decimal, side: Side, tick: Decimal, rng: random.Random) -> Decimal:
        factor = Decimal(1) + self.bps / _BPS if side is Side.BUY else Decimal(1) - self.bps / _BPS
        moved = on_tick_against(price * factor, side, tick)
        return moved if moved > 0 else tick


@dataclass(frozen=True, slots=True)
class RandomTickSlippage:
    """Pay between 0 and ``max_ticks`` ticks worse, drawn from the seeded generator."""

    max_ticks: int

    def __post_init__(self) -> None:
        _non_negative(max_ticks=self.max_ticks)

    def adjust(self, price: Decimal, side: Side, tick: Decimal, rng: random.Random) -> Decimal:
        n = rng.randint(0, self.max_ticks)
        moved = price + n * tick if side is Side.BUY else price - n * tick
        return moved if moved > 0 else tick


@dataclass(frozen=True, slots=True)
class NoCommission:
    def commission(self, quantity: Decimal, price: Decimal) -> Decimal:
        return Decimal(0)


@dataclass(frozen=True, slots=True)
class PerShareCommission:
    """``per_share`` per unit, at least ``minimum`` per fill, rounded half-up to cents."""

    per_share: Decimal
    minimum: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        _non_negative(per_share=self.per_share, minimum=self.minimum)

    def commission(self, quantity: Decimal, price: Decimal) -> Decimal:
        fee = max(quantity * self.per_share, self.minimum)
        return fee.quantize(_CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class BpsCommission:
    """``bps`` basis points of notional, at least ``minimum``, rounded half-up to ``quantum``
    (cents by default, as a broker bills).

    backtrader's ``setcommission(commission=0.001)`` is ``BpsCommission(Decimal(10))``. A
    backtest does not round its costs: ``quantum=Decimal("1e-12")`` (the finest the wire
    carries) is the backtester's ``cost_bps``, for a paper run that must trade as it does.
    """

    bps: Decimal
    minimum: Decimal = Decimal(0)
    quantum: Decimal = _CENT

    def __post_init__(self) -> None:
        _non_negative(bps=self.bps, minimum=self.minimum)
        if not self.quantum.is_finite() or self.quantum < Decimal("1e-12"):
            raise config_error("quantum", self.quantum, "be a finite number >= 1e-12")

    def commission(self, quantity: Decimal, price: Decimal) -> Decimal:
        fee = max(quantity * price * self.bps / _BPS, self.minimum)
        return fee.quantize(self.quantum, rounding=ROUND_HALF_UP)
