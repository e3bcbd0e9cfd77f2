"""The OMS's order events into the ledger: fills posted once, split by sleeve as the OMS splits
them; busts and corrections reversed; cash reserved for working buy orders.

Why the treasury keeps the orders it sees: a fill event carries the fill, not the order, and
who owns a fill depends on the order's sleeves and on what its earlier fills credited each
(:meth:`~mts1b_foundation.Order.sleeve_credits`, the rule the OMS applies). The submitted event
carries the order; this module stores it (``treasury_orders``), keeps it current through
replaces, and reads "what earlier fills credited" back from the ledger's own posted fills, so a
redelivered event is split exactly as the first time.

Reservations: an accepted BUY order with a limit price sets ``quantity x limit_price`` aside
(a pending ledger entry) until the order ends - filled, canceled, rejected or expired - when it
is voided. Conservative on purpose: a partly filled order keeps its whole reservation until it
ends. Market orders reserve nothing (no price to reserve at); sells reserve nothing (short
sales' margin is the broker's to track).
"""

from __future__ import annotations

import json
from decimal import Decimal

from mts1b_foundation import (
    Fill,
    Order,
    OrderEvent,
    OrderEventType,
    OrderType,
    Side,
    parse_message,
)
from mts1b_platform.logging import get_logger

from mts1b_treasury.db import TreasuryDb
from mts1b_treasury.errors import TreasuryInputError
from mts1b_treasury.ledger import FillPosting, Ledger, PostOutcome, PostStatus

__all__ = ["FlowResult", "OrderFlow", "is_permanent"]

_log = get_logger("mts1b_treasury.orderflow")
E = OrderEventType
_ENDS = {E.FILLED, E.CANCELED, E.REJECTED, E.EXPIRED}


FlowResult = PostOutcome | None
"""What one event did to the ledger: a posting's outcome, or ``None`` (nothing to post)."""


class OrderFlow:
    """Applies order events to a :class:`~mts1b_treasury.ledger.Ledger`."""

    def __init__(self, db: TreasuryDb, ledger: Ledger) -> None:
        self.db = db
        self.ledger = ledger

    async def apply(self, event: OrderEvent) -> FlowResult:
        """Apply one event; raises :class:`TreasuryInputError` for an event the books cannot
        take (a fill of an order never announced, of a fund without accounts)."""
        kind = event.event_type
        if kind is E.SUBMITTED and event.order is not None:
            await self._remember(event.order)
            return None
        if kind is E.REPLACED and event.replace is not None:
            await self._replaced(event)
            return None
        if kind is E.ACCEPTED:
            return await self._reserve(event.order_id)
        result: FlowResult = None
        if kind in (E.PARTIALLY_FILLED, E.FILLED) and event.fill is not None:
            result = (await self.ledger.post_fills([await self.posting(event.fill)]))[0]
        elif kind is E.CORRECTED and event.fill is not None:
            result = await self.ledger.correct(event.fill.trade_id,
                                               await self.posting(event.fill))
        elif kind is E.BUSTED and event.busted_trade_id is not None:
            result = await self.ledger.bust(event.busted_trade_id,
                                            reason=event.reason or "busted by the venue")
        if kind in _ENDS:
            await self._release(event.order_id)
        return result

    async def posting(self, fill: Fill) -> FillPosting:
        """``fill`` with its sleeve split: the order's rule over what the order's other posted
        fills credited each sleeve."""
        order = await self.order(fill.order_id)
        if order is None:
            raise TreasuryInputError("order_id", fill.order_id,
                                     "a fill of an order the treasury never saw submitted")
        if fill.fund_id != order.fund_id:
            raise TreasuryInputError("fund_id", fill.fund_id,
                                     f"the order {fill.order_id} belongs to {order.fund_id}")
        credited = await self._credited(fill.order_id, except_trade=fill.trade_id)
        return FillPosting(fill, sleeves=order.sleeve_credits(fill.quantity, credited))

    async def order(self, order_id: str) -> Order | None:
        raw = await self.db.pool.fetchval(
            "SELECT order_json FROM treasury_orders WHERE order_id = $1", order_id)
        return None if raw is None else parse_message(Order, raw)

    async def _remember(self, order: Order) -> None:
        if not order.order_id:
            raise TreasuryInputError("order.order_id", order.order_id, "a submitted order "
                                     "carries the id the OMS gave it")
        await self.db.pool.execute(
            "INSERT INTO treasury_orders (order_id, fund_id, strategy_id, order_json) "
            "VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT (order_id) DO NOTHING",
            order.order_id, order.fund_id, order.strategy_id, order.to_json().decode())

    async def _replaced(self, event: OrderEvent) -> None:
        order = await self.order(event.order_id)
        replace = event.replace
        if order is None or replace is None:
            return
        changes: dict[str, object] = {}
        for name in ("quantity", "limit_price", "stop_price", "sleeves"):
            value = getattr(replace, name)
            if value is not None:
                changes[name] = value
        # validated again as a whole: new sleeves must sum to the new quantity
        updated = parse_message(Order, json.loads(order.model_copy(update=changes).to_json()))
        await self.db.pool.execute("UPDATE treasury_orders SET order_json = $2::jsonb "
                                   "WHERE order_id = $1", event.order_id,
                                   updated.to_json().decode())

    async def _credited(self, order_id: str, *, except_trade: str) -> dict[str, Decimal]:
        rows = await self.db.pool.fetch(
            "SELECT sleeve_ids, sleeve_qty FROM ledger_fills WHERE order_id = $1 AND "
            "status = 'posted' AND trade_id <> $2", order_id, except_trade)
        out: dict[str, Decimal] = {}
        for r in rows:
            for sleeve, qty in zip(r["sleeve_ids"], r["sleeve_qty"], strict=True):
                out[sleeve] = out.get(sleeve, Decimal(0)) + qty
        return out

    async def _reserve(self, order_id: str) -> FlowResult:
        order = await self.order(order_id)
        if (order is None or order.side is not Side.BUY or order.limit_price is None
                or order.order_type is OrderType.MARKET):
            return None
        return await self.ledger.reserve(order_id, order.fund_id,
                                         order.quantity * order.limit_price)

    async def _release(self, order_id: str) -> None:
        try:
            await self.ledger.release(order_id)
        except TreasuryInputError:
            return  # the order reserved nothing


def is_permanent(outcome: FlowResult) -> bool:
    """A conflict: the ledger holds other terms under the trade id (a person must look)."""
    return outcome is not None and outcome.status is PostStatus.CONFLICT
