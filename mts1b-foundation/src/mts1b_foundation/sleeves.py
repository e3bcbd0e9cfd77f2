"""Sleeve ownership arithmetic: how an order's fills are split across the sleeves it serves.

Why in foundation: the OMS that books a fill, the portfolio library that composes targets and
any downstream reader that splits PnL by strategy must split a fill the same way, to the last
digit. One pure function, used by :meth:`~mts1b_foundation.orders.Order.sleeve_credits`, is the
rule everyone shares.

An order serving sleeves carries ``sleeves = {strategy id: signed share}``: each sleeve's signed
part of the order, the shares summing exactly to the order's signed quantity. Shares may have
opposite signs (an internal cross: sleeve A buys 100, sleeve B sells 60, the order buys 40).

**The split rule.** A fill is split over what each sleeve still has to trade: with ``d_s`` the
signed shares, ``k_s`` what each sleeve was credited by the order's earlier fills, the
remaining shares ``r_s = d_s - k_s`` and the remaining quantity ``R = |sum r_s|``, a fill of
``q`` credits sleeve ``s`` the amount ``r_s x q / R``, computed exactly and rounded half-even to
the order's *unit* (the finest decimal place written in the quantity or any share: whole shares
for ``quantity=40``, ``d={A: 100, B: -60}``) - every sleeve but the *residual sleeve*, the one
with the largest absolute remaining share (ties: the smallest id), which takes the fill's signed
quantity minus the others' credits. The first fill of an order (nothing credited yet) credits
exactly ``d_s x q / quantity``, rounded as said; later fills continue from what was credited,
so rounding never accumulates. Hence:

- the credits of one fill sum exactly to its signed quantity (no unit is created or lost);
- an order filled completely has credited each sleeve exactly its share, whatever pieces it
  filled in (an internal cross fills A +100 and B -60 when the order's 40 fill), and after a
  cancel-replace changed the shares the rule simply continues from what was credited;
- a fill beyond the order's quantity (an overfill the venue reports) goes wholly to the
  residual sleeve of the shares;
- the result depends only on the shares, the quantity and the fills: deterministic.

All of a fill's credits are at the fund's fill price: a sleeve never gets its own price. The
fill's commission is split in proportion to the absolute credits (:func:`split_commission`),
rounded half-even to 12 places, the largest credit (ties: smallest id) taking the remainder.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Final

__all__ = [
    "MAX_SLEEVES",
    "MULTI_SLEEVE_STRATEGY",
    "exact_sum",
    "order_unit",
    "remaining",
    "residual_sleeve",
    "split_commission",
    "split_fill",
]

MAX_SLEEVES: Final = 1000
"""Sleeves one allocation or one order may name: far above any fund's strategy count, small
enough that an order's sleeve map stays a few tens of KiB."""

MULTI_SLEEVE_STRATEGY: Final = "multi-sleeve"
"""The ``strategy_id`` of an order serving several sleeves: no single strategy owns it, so the
order names none of them (who owns what is in its ``sleeves``; every gate checks those)."""

_COMMISSION_UNIT: Final = Decimal("1E-12")
_PRECISION: Final = 96
"""Digits for exact intermediate sums and products: two wire values (27 digits each) multiplied
and divided, and a thousand of them added, stay exact well inside 96 digits."""


def exact_sum(values: Mapping[str, Decimal] | list[Decimal]) -> Decimal:
    """The exact sum of wire decimals (the default 28-digit context could round a long one)."""
    items = list(values.values()) if isinstance(values, Mapping) else values
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return sum(items, Decimal(0))


def order_unit(shares: Mapping[str, Decimal], quantity: Decimal) -> Decimal:
    """The unit sleeve parts are rounded to: ``10**e``, ``e`` the smallest exponent written in
    ``quantity`` or any share (``40`` and ``{A: 100, B: -60}`` give ``1``; ``0.5`` gives
    ``0.1``). Never coarser than ``1``."""
    exponents = [int(quantity.as_tuple().exponent)]
    exponents += [int(d.as_tuple().exponent) for d in shares.values()]
    return Decimal(1).scaleb(min(0, *exponents))


def residual_sleeve(shares: Mapping[str, Decimal]) -> str:
    """The sleeve that absorbs rounding: the largest absolute share, ties to the smallest id."""
    if not shares:
        raise ValueError("an order without sleeves has no residual sleeve")
    return min(shares, key=lambda s: (-abs(shares[s]), s))


def remaining(shares: Mapping[str, Decimal], credited: Mapping[str, Decimal]) -> dict[
        str, Decimal]:
    """Each sleeve's share not yet credited by fills (``d_s - k_s``), exactly."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return {s: d - credited.get(s, Decimal(0)) for s, d in shares.items()}


def split_fill(shares: Mapping[str, Decimal], quantity: Decimal, fill_quantity: Decimal,
               credited: Mapping[str, Decimal] | None = None) -> dict[str, Decimal]:
    """Each sleeve's signed credit from a fill of ``fill_quantity`` (positive) on an order of
    ``quantity`` with signed ``shares``, after earlier fills credited ``credited`` (sleeve ->
    signed amount). The credits sum exactly to the fill's signed quantity; a sleeve whose
    credit is 0 is left out. See the module docstring for the rule."""
    if quantity <= 0:
        raise ValueError(f"quantity must be > 0, got {quantity}")
    if fill_quantity <= 0:
        raise ValueError(f"fill_quantity must be > 0, got {fill_quantity}")
    if not shares:
        raise ValueError("an order without sleeves has nothing to split a fill over")
    sign = Decimal(1) if exact_sum(dict(shares)) > 0 else Decimal(-1)
    open_shares = remaining(shares, credited or {})
    open_quantity = sign * exact_sum(open_shares)
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        signed_fill = sign * fill_quantity
        if open_quantity <= 0:  # overfill: nothing left to split pro rata
            return {residual_sleeve(shares): signed_fill}
        if fill_quantity > open_quantity:  # the part beyond the order goes to the residual
            within = split_fill(shares, quantity, open_quantity, credited)
            extra = residual_sleeve(shares)
            within[extra] = within.get(extra, Decimal(0)) + sign * (fill_quantity - open_quantity)
            return {s: c for s, c in sorted(within.items()) if c != 0}
        unit = order_unit(shares, quantity)
        residual = residual_sleeve(open_shares)
        credits: dict[str, Decimal] = {}
        for sleeve in sorted(open_shares):
            if sleeve != residual:
                credits[sleeve] = (open_shares[sleeve] * fill_quantity / open_quantity).quantize(
                    unit, rounding=ROUND_HALF_EVEN)
        credits[residual] = signed_fill - sum(credits.values(), Decimal(0))
    return {s: c for s, c in sorted(credits.items()) if c != 0}


def split_commission(credits: Mapping[str, Decimal], commission: Decimal) -> dict[str, Decimal]:
    """Each sleeve's part of a fill's ``commission``: pro rata to ``|credit|``, rounded
    half-even to 12 places, the sleeve with the largest ``|credit|`` (ties: smallest id)
    taking the remainder, so the parts sum exactly to ``commission``. Every sleeve of
    ``credits`` gets an entry (0 included)."""
    if not credits:
        raise ValueError("no credits to split a commission over")
    if commission == 0:
        return dict.fromkeys(sorted(credits), Decimal(0))
    largest = residual_sleeve(credits)
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        gross = sum((abs(c) for c in credits.values()), Decimal(0))
        parts = {s: (commission * abs(c) / gross).quantize(_COMMISSION_UNIT,
                                                            rounding=ROUND_HALF_EVEN)
                 for s, c in sorted(credits.items()) if s != largest}
        parts[largest] = commission - sum(parts.values(), Decimal(0))
    return dict(sorted(parts.items()))
