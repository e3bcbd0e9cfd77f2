"""The lot engine: a fund's book lots of one symbol, opened and relieved fill by fill.

Why a pure function over immutable lots: the ledger stores lots, the NAV values them and the tax
view replays them; all three must agree to the cent, so the one place that decides which lot a
fill relieves and how much cost leaves with it takes lots in and gives lots back, and never keeps
state of its own. Every amount is an exact :class:`~decimal.Decimal`.

Relief order by the fund's :class:`~mts1b_foundation.TaxLotMethod`:

* ``FIFO`` oldest first and ``LIFO`` newest first, "age" being ``(acquired, sequence)``;
* ``HIFO`` highest unit cost (``cost / quantity``, then opening fees per unit) first, ties oldest
  first; the same order is used for short lots (highest opening price first);
* ``SPECIFIC_ID`` exactly the lots the caller names, in the order named;
* ``AVERAGE_COST`` the position is one merged lot (see :func:`apply_fill`).

Rounding: cost and fees relieved from part of a lot are ``lot.cost * q / lot.quantity``
quantized to 0.01 with ROUND_HALF_EVEN and the lot keeps the rest, so no cent is ever created or
lost; a lot relieved in full gives up exactly what it still holds. A closing commission is spread
over its pieces (disposals, and the new opposite lot when a fill crosses zero) by quantity with
cumulative rounding to 0.01, so the pieces sum exactly to the commission and none is negative.

Out of scope: options and other derivatives (a lot is stock of one symbol), and cash in lieu of
fractional shares on a split (:func:`apply_split` keeps fractional quantities).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal

from mts1b_foundation import TaxLotMethod

from mts1b_treasury.errors import TreasuryInputError

__all__ = [
    "Disposal",
    "FillEffect",
    "OpenLot",
    "allocate",
    "apply_fill",
    "apply_split",
    "quantize_cents",
]

_CENT = Decimal("0.01")
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class OpenLot:
    """An open lot: what is left of one opening fill (``quantity`` > 0 long, < 0 short)."""

    lot_id: str
    symbol: str
    quantity: Decimal
    cost: Decimal
    fees: Decimal
    acquired: date
    sequence: int


@dataclass(frozen=True, slots=True)
class Disposal:
    """One lot (or part of one) closed by one fill; ``realized`` is book PnL, no commissions."""

    trade_id: str
    lot_id: str
    symbol: str
    quantity: Decimal
    cost: Decimal
    fees: Decimal
    proceeds: Decimal
    sale_fees: Decimal
    realized: Decimal
    acquired: date
    disposed: date


@dataclass(frozen=True, slots=True)
class FillEffect:
    """What one fill did to a symbol's lots."""

    lots: tuple[OpenLot, ...]
    disposals: tuple[Disposal, ...]
    opened: OpenLot | None
    realized: Decimal
    cost_relieved: Decimal


def quantize_cents(value: Decimal) -> Decimal:
    """``value`` to 0.01, ROUND_HALF_EVEN (banker's rounding: no drift up over many splits)."""
    return value.quantize(_CENT, rounding=ROUND_HALF_EVEN)


def allocate(total: Decimal, weights: Sequence[Decimal]) -> list[Decimal]:
    """Split ``total`` over ``weights`` pro rata, to the cent, the pieces summing exactly to it.

    Cumulative rounding: piece ``i`` is ``round(total * W_i / W) - round(total * W_(i-1) / W)``
    with ``W_i`` the running sum, and the last piece takes the remainder. Why not round each piece
    on its own: with many small pieces the rounded pieces can overshoot ``total`` and leave the
    last one negative; cumulative rounding keeps every piece the sign of ``total`` and within a
    cent of its exact share.
    """
    whole = sum(weights, _ZERO)
    if not weights:
        return []
    if whole == 0:
        return [_ZERO] * (len(weights) - 1) + [total]
    pieces: list[Decimal] = []
    running = _ZERO
    given = _ZERO
    for weight in weights[:-1]:
        running += weight
        upto = quantize_cents(total * running / whole)
        pieces.append(upto - given)
        given = upto
    pieces.append(total - given)
    return pieces


def _age(lot: OpenLot) -> tuple[date, int]:
    return (lot.acquired, lot.sequence)


def _check_lots(lots: Sequence[OpenLot], symbol: str) -> None:
    """The lots must be one symbol's, all one sign, never empty, with unique ids."""
    seen: set[str] = set()
    signs: set[bool] = set()
    for lot in lots:
        if lot.symbol != symbol:
            raise TreasuryInputError("symbol", symbol, f"lot {lot.lot_id!r} is of {lot.symbol!r}")
        if lot.quantity == 0:
            raise TreasuryInputError("lots", lot.lot_id, "a lot with zero quantity")
        if lot.lot_id in seen:
            raise TreasuryInputError("lots", lot.lot_id, "lot ids must be unique")
        seen.add(lot.lot_id)
        signs.add(lot.quantity > 0)
    if len(signs) > 1:
        raise TreasuryInputError("lots", [lot.lot_id for lot in lots], "long and short mixed")


def _check_fill(
    method: TaxLotMethod,
    signed_quantity: Decimal,
    price: Decimal,
    commission: Decimal,
    lot_ids: Sequence[str] | None,
) -> None:
    if signed_quantity == 0:
        raise TreasuryInputError("signed_quantity", signed_quantity, "must not be zero")
    if price <= 0:
        raise TreasuryInputError("price", price, "must be positive")
    if commission < 0:
        raise TreasuryInputError("commission", commission, "must not be negative")
    if lot_ids is not None and method is not TaxLotMethod.SPECIFIC_ID:
        raise TreasuryInputError("lot_ids", lot_ids, f"only for specific_id, not {method.value}")


def _merge(lots: Sequence[OpenLot]) -> OpenLot:
    """One average-cost lot: summed quantity/cost/fees; the earliest lot's id and date, the
    smallest sequence.

    Why the earliest date: an averaged position has no per-share dates left, and every share in
    it has been held at least since the earliest purchase that is still in the average. (US tax
    law allows average cost only for mutual-fund shares; the method is here for France, UK
    section-104 or Brazil style books, where the averaged position is the unit of account.)
    """
    first = min(lots, key=_age)
    return replace(
        first,
        quantity=sum((lot.quantity for lot in lots), _ZERO),
        cost=sum((lot.cost for lot in lots), _ZERO),
        fees=sum((lot.fees for lot in lots), _ZERO),
        sequence=min(lot.sequence for lot in lots),
    )


def _hifo_key(lot: OpenLot) -> tuple[Decimal, Decimal, date, int]:
    return (-(lot.cost / lot.quantity), -(lot.fees / abs(lot.quantity)), lot.acquired, lot.sequence)


def _specific(lots: Sequence[OpenLot], lot_ids: Sequence[str], needed: Decimal) -> list[OpenLot]:
    """The named lots in the order named, then the others (never reached: the named ones must
    exist, be named once and hold ``needed``)."""
    by_id = {lot.lot_id: lot for lot in lots}
    chosen: list[OpenLot] = []
    for lot_id in lot_ids:
        if lot_id not in by_id:
            raise TreasuryInputError("lot_ids", lot_ids, f"no open lot {lot_id!r}")
        if lot_ids.count(lot_id) > 1:
            raise TreasuryInputError("lot_ids", lot_ids, f"lot {lot_id!r} named twice")
        chosen.append(by_id[lot_id])
    held = sum((abs(lot.quantity) for lot in chosen), _ZERO)
    if held < needed:
        raise TreasuryInputError("lot_ids", lot_ids, f"they hold {held}, the fill closes {needed}")
    named = set(lot_ids)
    return chosen + [lot for lot in lots if lot.lot_id not in named]


def _relief_order(
    method: TaxLotMethod, lots: Sequence[OpenLot], lot_ids: Sequence[str] | None, needed: Decimal
) -> list[OpenLot]:
    if method is TaxLotMethod.FIFO:
        return sorted(lots, key=_age)
    if method is TaxLotMethod.LIFO:
        return sorted(lots, key=_age, reverse=True)
    if method is TaxLotMethod.HIFO:
        return sorted(lots, key=_hifo_key)
    if method is TaxLotMethod.AVERAGE_COST:
        return [_merge(lots)] if lots else []
    return _specific(lots, lot_ids or (), needed)


@dataclass(frozen=True, slots=True)
class _Cut:
    """A lot split in two: the part closed and what stays open (None when closed in full)."""

    closed: OpenLot
    rest: OpenLot | None


def _cut(lot: OpenLot, quantity: Decimal) -> _Cut:
    """Take ``quantity`` (signed like the lot) out of ``lot``, cost and fees pro rata."""
    if quantity == lot.quantity:
        return _Cut(lot, None)
    cost = quantize_cents(lot.cost * quantity / lot.quantity)
    fees = quantize_cents(lot.fees * quantity / lot.quantity)
    closed = replace(lot, quantity=quantity, cost=cost, fees=fees)
    rest = replace(
        lot, quantity=lot.quantity - quantity, cost=lot.cost - cost, fees=lot.fees - fees
    )
    return _Cut(closed, rest)


def _close(ordered: Sequence[OpenLot], closing: Decimal) -> tuple[list[OpenLot], list[OpenLot]]:
    """Close ``closing`` (signed like the lots) from ``ordered``: (closed parts, lots left open)."""
    closed: list[OpenLot] = []
    left: list[OpenLot] = []
    remaining = closing
    for lot in ordered:
        if remaining == 0:
            left.append(lot)
            continue
        take = lot.quantity if abs(lot.quantity) <= abs(remaining) else remaining
        cut = _cut(lot, take)
        closed.append(cut.closed)
        if cut.rest is not None:
            left.append(cut.rest)
        remaining -= take
    return closed, left


def _disposal(part: OpenLot, trade_id: str, price: Decimal, fee: Decimal, when: date) -> Disposal:
    proceeds = part.quantity * price
    return Disposal(
        trade_id=trade_id,
        lot_id=part.lot_id,
        symbol=part.symbol,
        quantity=part.quantity,
        cost=part.cost,
        fees=part.fees,
        proceeds=proceeds,
        sale_fees=fee,
        realized=proceeds - part.cost,
        acquired=part.acquired,
        disposed=when,
    )


def apply_fill(
    method: TaxLotMethod,
    lots: Sequence[OpenLot],
    *,
    trade_id: str,
    symbol: str,
    signed_quantity: Decimal,
    price: Decimal,
    commission: Decimal,
    when: date,
    sequence: int,
    lot_ids: Sequence[str] | None = None,
) -> FillEffect:
    """Apply one fill to a symbol's open ``lots`` (all one sign) under the fund's ``method``.

    A fill of the lots' sign (or on no lots) opens a lot ``trade_id`` whose cost is
    ``signed_quantity * price`` and whose fees are the whole commission. A fill of the other sign
    relieves lots in the method's order; if it is larger than the position it closes everything
    and opens an opposite lot with the rest (``opened``), the commission shared by quantity.

    ``AVERAGE_COST``: the position is kept as one lot (:func:`_merge`): the new lot is merged into
    it on a purchase (``opened`` is still the fill's own lot, before merging, so a ledger can
    post it) and the lots handed in are merged before a relief. Its id, date and sequence are
    the earliest lot's, because the averaged shares' holding period is the earliest lot's.

    Raises :class:`TreasuryInputError` naming the field and value for a zero quantity, a price
    that is not positive, a negative commission, lots of another symbol, mixed signs or repeated
    ids, ``lot_ids`` with a method other than ``SPECIFIC_ID`` (or naming lots on a fill that opens
    one), ``lot_ids`` missing on a ``SPECIFIC_ID`` fill that relieves lots, and named lots that
    are unknown, repeated or too small for the fill. A ``SPECIFIC_ID`` purchase needs no ids.
    """
    _check_fill(method, signed_quantity, price, commission, lot_ids)
    _check_lots(lots, symbol)
    position = sum((lot.quantity for lot in lots), _ZERO)
    if position == 0 or (position > 0) == (signed_quantity > 0):
        if lot_ids:
            raise TreasuryInputError("lot_ids", lot_ids, "a fill that opens a lot relieves none")
        fill_lot = OpenLot(
            trade_id, symbol, signed_quantity, signed_quantity * price, commission, when, sequence
        )
        return _open(method, lots, fill_lot)
    if lot_ids is None and method is TaxLotMethod.SPECIFIC_ID:
        raise TreasuryInputError("lot_ids", lot_ids, "specific_id needs the lots to relieve")
    closing = -signed_quantity if abs(signed_quantity) <= abs(position) else position
    ordered = _relief_order(method, lots, lot_ids, abs(closing))
    closed, left = _close(ordered, closing)
    rest = signed_quantity + closing
    weights = [abs(part.quantity) for part in closed] + ([abs(rest)] if rest != 0 else [])
    fees = allocate(commission, weights)
    disposals = tuple(
        _disposal(part, trade_id, price, fee, when) for part, fee in zip(closed, fees, strict=False)
    )
    opened = None
    if rest != 0:
        opened = OpenLot(trade_id, symbol, rest, rest * price, fees[-1], when, sequence)
        left.append(opened)
    return FillEffect(
        lots=tuple(sorted(left, key=_age)),
        disposals=disposals,
        opened=opened,
        realized=sum((d.realized for d in disposals), _ZERO),
        cost_relieved=sum((d.cost for d in disposals), _ZERO),
    )


def _open(method: TaxLotMethod, lots: Sequence[OpenLot], opened: OpenLot) -> FillEffect:
    """A fill that opens or extends the position with the lot ``opened``."""
    if any(lot.lot_id == opened.lot_id for lot in lots):
        raise TreasuryInputError("trade_id", opened.lot_id, "a lot with this id is already open")
    after = [*lots, opened]
    if method is TaxLotMethod.AVERAGE_COST:
        after = [_merge(after)]
    return FillEffect(tuple(sorted(after, key=_age)), (), opened, _ZERO, _ZERO)


def apply_split(lots: Sequence[OpenLot], *, ratio: Decimal, effective: date) -> tuple[OpenLot, ...]:
    """The lots after a split of ``ratio`` new shares per old one (2: 2-for-1; 0.1: 1-for-10).

    Quantity is multiplied, cost, fees and acquisition date are kept: a split changes neither
    what was paid nor how long it was held. Fractional quantities are kept as they come (cash in
    lieu of fractional shares is out of scope). ``effective`` is the ex-date: a lot acquired on or
    after it was bought at post-split prices already, so handing one in is an error.
    """
    if ratio <= 0:
        raise TreasuryInputError("ratio", ratio, "must be positive")
    for lot in lots:
        if lot.acquired >= effective:
            raise TreasuryInputError(
                "effective",
                effective,
                f"lot {lot.lot_id!r} was acquired {lot.acquired}, on or after it",
            )
    return tuple(replace(lot, quantity=lot.quantity * ratio) for lot in sorted(lots, key=_age))
