"""Who owns the fund's trade: each symbol's trade split across the sleeves, in whole lots.

Why a split of the *trade* and not of the position: the OMS moves each listed sleeve from what
it holds to its allocated shares. The fund trades only the net of the sleeves' moves; an order's
fill is split across its sleeves by their signed parts (:mod:`mts1b_foundation.sleeves`), and a
symbol whose sleeve moves net to zero is booked as an internal transfer. So any split whose
parts sum to the fund's trade can be carried out, and one sleeve's buy met by another's sell
costs no turnover.

**The rule**, per symbol, with ``delta_s`` the trade sleeve ``s`` asks for (its desired shares
less its holding), ``B`` the sleeves' buys and ``S`` their sells (both >= 0) and ``A`` the
fund's trade:

1. **Crossing first.** The side against the fund's trade is carried out in full: when the fund
   buys (``A >= 0``) every seller sells all it asked, and the buyers share ``S + A`` - each
   gets the fraction ``(S + A) / B`` of its own buy (at most all of it); when the fund sells,
   the other way round. A cut trade therefore cuts only the sleeves on the fund's side, each by
   the same fraction - what a partial fill would give them - and whatever the sleeves can do
   among themselves is done (including when the fund does not trade at all).
2. What is left (the fund trading more than the sleeves' net asks, or against it) is shared in
   proportion to ``|delta_s|``; when no sleeve asks to trade, in proportion to
   ``|holding_s|``; when none holds it either, to the capital shares (equally if those are 0).
3. **Rounding**, exact and deterministic: each sleeve's trade in lots is floored, and the lots
   left over (``A`` in lots less the floors' sum) go one each to the sleeves with the largest
   fractional remainders, ties to the smallest strategy id (Hamilton's largest-remainder
   method). If ``A`` is not a whole number of lots (a holding off the lot grid and no
   ownership known), the part below one lot goes to the sleeve ranked first. The sleeves'
   trades therefore sum exactly to ``A``, as Decimals.

Float arithmetic is used for the proportions (a float's 1e-16 error cannot move a whole-lot
floor except at an exact tie, which the remainder step absorbs); the results are Decimals.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["split_trades"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def _weights(delta: FloatArray, held: FloatArray, shares: FloatArray) -> FloatArray:
    """Step 2's proportions per column (each column sums to 1)."""
    size = np.abs(delta)
    total = size.sum(axis=0)
    by_holding = np.abs(held)
    holding_total = by_holding.sum(axis=0)
    capital = shares if shares.sum() > 0 else np.ones_like(shares)
    capital = capital / capital.sum()
    out = np.where(total > 0, size / np.where(total > 0, total, 1.0),
                   np.where(holding_total > 0,
                            by_holding / np.where(holding_total > 0, holding_total, 1.0),
                            capital[:, None]))
    return np.asarray(out, dtype=np.float64)


def split_trades(delta: FloatArray, held: FloatArray, shares: FloatArray,
                 amount_lots: IntArray, amount: FloatArray, lot: FloatArray
                 ) -> tuple[IntArray, IntArray]:
    """Each sleeve's trade in whole lots, per symbol, and the sleeve that takes the sub-lot
    remainder.

    Shapes: ``delta`` and ``held`` ``(S, n)`` in shares (sleeves in strategy-id order);
    ``shares`` ``(S,)`` capital shares; ``amount`` ``(n,)`` the fund's trade to split in
    shares (float), ``amount_lots`` the same floored to whole lots (exact, int64); ``lot``
    ``(n,)``. Returns ``(lots, first)``: ``lots`` ``(S, n)`` int64 with each column summing
    exactly to ``amount_lots``, and ``first`` ``(n,)`` the row ranked first per column (who
    takes the exact remainder below one lot, which the caller adds).
    """
    n_sleeves, n = delta.shape
    buys = np.maximum(delta, 0.0)
    sells = np.maximum(-delta, 0.0)
    bought, sold = buys.sum(axis=0), sells.sum(axis=0)
    buying = amount >= 0
    # the fund's side gets what the other side and the fund's trade give it, at most all
    side_total = np.where(buying, bought, sold)
    side_gets = np.where(buying, sold + amount, bought - amount)
    short = side_gets < side_total  # only there is the fraction below 1 (and never overflows)
    fraction = np.divide(side_gets, side_total, out=np.ones_like(side_total), where=short)
    trade = np.where(buying, buys * fraction - sells, buys - sells * fraction)
    rest = amount - trade.sum(axis=0)
    trade = trade + _weights(delta, held, shares) * rest
    units = trade / lot
    base = np.floor(units)
    frac = units - base
    lots = base.astype(np.int64)
    left = amount_lots - lots.sum(axis=0)
    rows = np.broadcast_to(np.arange(n_sleeves)[:, None], (n_sleeves, n))
    order = np.lexsort((rows, -frac), axis=0)  # per column: largest remainder, then id
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(n_sleeves)[:, None],
                                                   (n_sleeves, n)), axis=0)
    whole, part = np.divmod(left, n_sleeves)  # |left| < n_sleeves but for float edge cases
    lots += whole[None, :] + (rank < part[None, :]).astype(np.int64)
    first = order[0].astype(np.int64)
    return lots, first
