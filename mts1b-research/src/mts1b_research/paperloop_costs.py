"""The backtester's cost conventions, in Decimal, for the paper loop (issue #20).

Why a module of its own: these are the rules both paths must share for their trades to agree
(:mod:`mts1b_research.paperloop` applies them; ``mts1b_GPUbacktester.sim`` is their float
original): the commission proportional to notional, the post-trade NAV a rebalance sizes with
(:func:`mts1b_portfolio.costs.post_trade_nav`, shared with the composer service), and the size
below which an order is float residue.
"""

from __future__ import annotations

import dataclasses
from decimal import ROUND_HALF_EVEN, Decimal

from mts1b_portfolio.costs import post_trade_nav

__all__ = ["DUST", "WIRE_QUANTUM", "ProportionalCommission", "post_trade_nav"]

ZERO = Decimal(0)
DUST = Decimal("1e-10")
"""An order worth at most this fraction of the NAV is not sent: the backtester drops such
orders as float residue (``sim.simulate``), so the paper path must not trade them either."""
_BPS = Decimal(10_000)
WIRE_QUANTUM = Decimal("1e-12")
"""The finest decimal the wire models carry (foundation's decimals: at most 12 places)."""


@dataclasses.dataclass(frozen=True)
class ProportionalCommission:
    """``bps`` basis points of notional, not rounded to cents: the backtester's cost model
    (``cost_bps``) as a venue commission model. A real broker rounds to cents; a backtest does
    not, and the parity check compares the two paths under one cost model. The fee is rounded
    half-even to ``1e-12`` (:data:`WIRE_QUANTUM`), the most decimals an execution report
    carries: a difference of at most 5e-13 a fill."""

    bps: Decimal

    def commission(self, quantity: Decimal, price: Decimal) -> Decimal:
        return (quantity * price * self.bps / _BPS).quantize(WIRE_QUANTUM,
                                                             rounding=ROUND_HALF_EVEN)
