"""The backtester's cost conventions, in Decimal, for the paper loop (issue #20).

Why a module of its own: these are the rules both paths must share for their trades to agree
(:mod:`mts1b_research.paperloop` applies them; ``mts1b_GPUbacktester.sim`` is their float
original): the commission proportional to notional, the post-trade NAV a rebalance sizes with,
and the size below which an order is float residue.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal

__all__ = ["DUST", "WIRE_QUANTUM", "ProportionalCommission", "post_trade_nav"]

ZERO = Decimal(0)
ONE = Decimal(1)
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


def post_trade_nav(v_pre: Decimal, weights: Sequence[Decimal], held: Sequence[Decimal],
                   tradable: Sequence[bool], rate: Decimal) -> Decimal:
    """The NAV after a rebalance to ``weights`` of the post-trade NAV, its commissions paid.

    Solves ``V = V_pre - sum_i rate x |w_i V - held_i|`` over the tradable assets (``held``:
    the value held of each at the sizing price), as the backtester does: for a guess of which
    assets are bought the equation is linear and solved exactly; the guess is refined until
    it is stable (at most six rounds, the backtester's bound).
    """
    v = v_pre
    buying: tuple[bool, ...] | None = None
    for _ in range(6):
        now = tuple(ok and w * v - h > 0 for w, h, ok in zip(weights, held, tradable,
                                                              strict=True))
        if now == buying:
            return v
        buying = now
        rates = [(rate if b else -rate) if ok else ZERO for b, ok in zip(now, tradable,
                                                                          strict=True)]
        v = ((v_pre + sum((r * h for r, h in zip(rates, held, strict=True)), ZERO))
             / (ONE + sum((r * w for r, w in zip(rates, weights, strict=True)), ZERO)))
    return v
