"""The post-trade NAV a rebalance sizes with, when commissions come out of it.

Why here: the backtester (``mts1b_GPUbacktester.sim``, in float) sizes a rebalance at the NAV
left after the rebalance's own commissions, and every path that must trade what it trades -
the composer service sizing at the open, research's in-process paper loop - solves the same
equation in ``Decimal``. One home for the rule keeps them equal.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

__all__ = ["post_trade_nav"]

ZERO = Decimal(0)
ONE = Decimal(1)


def post_trade_nav(v_pre: Decimal, weights: Sequence[Decimal], held: Sequence[Decimal],
                   tradable: Sequence[bool], rate: Decimal) -> Decimal:
    """The NAV after a rebalance to ``weights`` of the post-trade NAV, its commissions paid.

    Solves ``V = V_pre - sum_i rate x |w_i V - held_i|`` over the tradable assets (``held``:
    the value held of each at the sizing price; ``rate``: commission per unit of notional), as
    the backtester does: for a guess of which assets are bought the equation is linear and
    solved exactly; the guess is refined until it is stable (at most six rounds, the
    backtester's bound).
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
