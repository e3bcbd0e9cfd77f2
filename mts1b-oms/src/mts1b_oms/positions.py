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
from decimal import Decimal

from mts1b_foundation import Fill, Position, fit_to_domain

__all__ = ["Mismatch", "PositionState", "apply_fill", "reconcile", "replay"]

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


def replay(fills: Iterable[Fill]) -> PositionState:
    """The position of a list of fills applied in time order (then by trade id)."""
    pos = PositionState()
    for f in sorted(fills, key=lambda f: (f.ts, f.trade_id)):
        pos = apply_fill(pos, f.signed_quantity, f.price, f.commission)
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
