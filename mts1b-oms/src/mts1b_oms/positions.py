"""Positions with average cost and realized / unrealized PnL, and reconciliation with a broker.

Average-cost accounting: buying into a long (or selling into a short) moves the average cost to
the quantity-weighted mean; trading against the position realizes ``closed x (price - avg)``
(sign-adjusted) and keeps the average; crossing through zero opens the remainder at the fill
price. Commissions reduce realized PnL. A bust or a correction replays the remaining fills, so
the numbers are always those of the fills that stand.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from mts1b_foundation import Fill, Position, fit_to_domain

__all__ = ["Mismatch", "PositionState", "SplitStep", "apply_fill", "apply_split",
           "lieu_quantities", "reconcile", "replay"]

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class PositionState:
    quantity: Decimal = ZERO
    avg_cost: Decimal = ZERO
    realized_pnl: Decimal = ZERO

    def unrealized(self, mark: Decimal | None) -> Decimal:
        """``quantity x (mark - avg_cost)``; 0 without a mark."""
        if mark is None or self.quantity == 0:
            return ZERO
        return self.quantity * (mark - self.avg_cost)

    def to_position(self, fund_id: str, strategy_id: str | None, symbol: str, as_of: dt.datetime,
                    mark: Decimal | None = None) -> Position:
        # the state keeps full precision; the wire gets the domain's 12 places (100/3 as
        # an average cost has 28 digits)
        return Position(fund_id=fund_id, strategy_id=strategy_id, symbol=symbol,
                        quantity=self.quantity, avg_cost=fit_to_domain(self.avg_cost),
                        realized_pnl=fit_to_domain(self.realized_pnl),
                        unrealized_pnl=fit_to_domain(self.unrealized(mark)), as_of=as_of)


def apply_fill(pos: PositionState, signed_qty: Decimal, price: Decimal,
               commission: Decimal = ZERO) -> PositionState:
    """The position after one execution of ``signed_qty`` (positive buys) at ``price``."""
    q, avg, realized = pos.quantity, pos.avg_cost, pos.realized_pnl - commission
    if q == 0 or (q > 0) == (signed_qty > 0):
        new_q = q + signed_qty
        new_avg = (abs(q) * avg + abs(signed_qty) * price) / abs(new_q)
        return PositionState(new_q, new_avg, realized)
    closed = min(abs(signed_qty), abs(q))
    direction = Decimal(1) if q > 0 else Decimal(-1)
    realized += closed * (price - avg) * direction
    new_q = q + signed_qty
    if new_q == 0:
        return PositionState(ZERO, ZERO, realized)
    if (new_q > 0) == (q > 0):
        return PositionState(new_q, avg, realized)
    return PositionState(new_q, price, realized)  # crossed through zero


@dataclass(frozen=True, slots=True)
class SplitStep:
    """A split as one sleeve's position history holds it: ``ratio`` new shares per old one,
    effective at ``effective_at`` (the ex-date's open: fills stamped from then on are in the
    new terms), and ``in_lieu`` - the signed quantity (new terms) the sleeve gave up as cash in
    lieu because the fund's position was no longer a whole number of lots - sold at ``price``
    (the adjusted reference price; ``None``: at its average cost, no PnL). Why recorded and not
    recomputed: which sleeve gave up the fraction depends on every sleeve's position at the
    split, and a rebuild of one sleeve must land where the split left it.

    ``close_price``: a delisting (a split of ratio 1 that closes the position): whatever the
    sleeve holds at ``effective_at`` is closed at that price, no commission. Not a recorded
    quantity: a fill from before it rebuilt later is closed too."""

    action_id: str
    effective_at: dt.datetime
    ratio: Decimal
    in_lieu: Decimal = ZERO
    price: Decimal | None = None
    close_price: Decimal | None = None


def apply_split(pos: PositionState, ratio: Decimal, in_lieu: Decimal = ZERO,
                price: Decimal | None = None) -> PositionState:
    """The position after a split of ``ratio``: quantity multiplied, average cost divided
    (cost basis unchanged), then ``in_lieu`` (signed, new terms) traded away at ``price`` as a
    fill would be (:func:`apply_fill`; ``None``: at the new average cost). A positive
    ``in_lieu`` of a long position is a fraction sold, realizing ``in_lieu x (price - avg)``;
    one of the other sign is the sleeve rounded up to a whole lot (another sleeve of the fund
    gave the fraction up), bought at ``price``. The cash itself is the venue's and the
    treasury's. A ratio that is not a positive finite Decimal is ``ValueError`` naming it."""
    if not isinstance(ratio, Decimal) or not ratio.is_finite() or ratio <= 0:
        raise ValueError(f"ratio must be a positive finite Decimal, got {ratio!r}")
    q = pos.quantity * ratio
    split = PositionState(q, pos.avg_cost / ratio if q != 0 else ZERO, pos.realized_pnl)
    if in_lieu == 0:
        return split
    return apply_fill(split, -in_lieu, price if price is not None else split.avg_cost)


def lieu_quantities(adjusted: Mapping[str, Decimal], lot: Decimal) -> dict[str, Decimal]:
    """What each sleeve gives up as cash in lieu so that the fund's position (the sum of
    ``adjusted``, each sleeve's quantity after the split) is its whole lots, as the paper
    venue keeps them (the fund's total cut toward zero to a multiple of ``lot``). Each sleeve
    keeps its own whole lots first; the lots the fund keeps beyond those go one each to the
    sleeves with the largest remainder of the fund's sign of change (ties: by name), so every
    sleeve ends on whole lots and the sleeves sum to the venue's position. Returns sleeve ->
    signed quantity given up (0 entries left out)."""
    if lot <= 0:
        raise ValueError(f"lot must be > 0, got {lot!r}")
    total = sum(adjusted.values(), ZERO)
    kept_total = (total / lot).to_integral_value(rounding=ROUND_DOWN) * lot
    whole = {s: (q / lot).to_integral_value(rounding=ROUND_DOWN) * lot
             for s, q in adjusted.items()}
    rest = {s: adjusted[s] - whole[s] for s in adjusted}
    extra = kept_total - sum(whole.values(), ZERO)  # a multiple of lot
    step = lot if extra > 0 else -lot
    candidates = sorted((s for s, r in rest.items() if r != 0 and (r > 0) == (extra > 0)),
                        key=lambda s: (-abs(rest[s]), s))
    for s in candidates:
        if extra == 0:
            break
        whole[s] += step
        extra -= step
    if extra != 0:  # pragma: no cover - the lots kept beyond each sleeve's never run short
        raise ValueError(f"cannot place {extra} of the fund's lots over {sorted(adjusted)}")
    return {s: adjusted[s] - whole[s] for s in adjusted if adjusted[s] != whole[s]}


def replay(fills: Iterable[Fill], splits: Iterable[SplitStep] = ()) -> PositionState:
    """The position of a list of fills applied in time order (then by trade id), with each
    split applied at its effective time - before the fills stamped at or after it (those are
    in the new terms), whenever either was recorded; a delisting's step closes the position
    there (:attr:`SplitStep.close_price`)."""
    steps: list[tuple[dt.datetime, int, str, Fill | SplitStep]] = [
        (f.ts, 1, f.trade_id, f) for f in fills]
    steps += [(s.effective_at, 0, s.action_id, s) for s in splits]
    pos = PositionState()
    for _ts, _kind, _id, item in sorted(steps, key=lambda t: t[:3]):
        if isinstance(item, SplitStep):
            pos = apply_split(pos, item.ratio, item.in_lieu, item.price)
            if item.close_price is not None and pos.quantity != 0:
                pos = apply_fill(pos, -pos.quantity, item.close_price)
        else:
            pos = apply_fill(pos, item.signed_quantity, item.price, item.commission)
    return pos


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One symbol whose quantity differs between the OMS and the broker."""

    symbol: str
    oms_quantity: Decimal
    broker_quantity: Decimal

    @property
    def difference(self) -> Decimal:
        return self.broker_quantity - self.oms_quantity


def reconcile(oms: Mapping[str, Decimal], broker: Mapping[str, Decimal]) -> list[Mismatch]:
    """Symbols whose quantities differ (a missing side counts as 0), sorted by symbol.

    Nothing is overwritten: the caller reports the mismatches and a person decides.
    """
    out = []
    for sym in sorted(set(oms) | set(broker)):
        a, b = oms.get(sym, ZERO), broker.get(sym, ZERO)
        if a != b:
            out.append(Mismatch(sym, a, b))
    return out
