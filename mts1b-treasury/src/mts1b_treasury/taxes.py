"""The tax view of one tax entity's funds, from the ledger's posted fills and splits.

Why a replay: the wash-sale rule looks across every fund of the taxpayer and 30 days either
side of each loss, and a purchase posted today can disallow a loss reported yesterday; the
tax view is therefore recomputed from the whole history each time
(:func:`~mts1b_treasury.washsale.tax_view`), never stored beside the books. The books (cost,
realised PnL, NAV) are never touched by it.
"""

from __future__ import annotations

from mts1b_foundation import Side

from mts1b_treasury.db import TreasuryDb
from mts1b_treasury.funds import FundRegistry
from mts1b_treasury.washsale import Split, TaxTrade, TaxView, tax_view

__all__ = ["entity_tax_view"]


async def entity_tax_view(db: TreasuryDb, tax_entity: str = "default") -> TaxView:
    """The tax view (lots with wash-sale adjustments, gains) of ``tax_entity``'s funds,
    closed ones included."""
    records = await FundRegistry(db).funds(include_closed=True, tax_entity=tax_entity)
    methods = {r.fund_id: r.config.tax_lot_method for r in records}
    if not methods:
        return tax_view([], {})
    rows = await db.pool.fetch(
        "SELECT fund_id, trade_id, symbol, side, quantity, price, commission, ts, lot_ids "
        "FROM ledger_fills WHERE status = 'posted' AND fund_id = ANY($1::text[]) "
        "ORDER BY ts, sequence", sorted(methods))
    trades = [TaxTrade(fund_id=r["fund_id"], trade_id=r["trade_id"], symbol=r["symbol"],
                       signed_quantity=r["quantity"] if r["side"] == Side.BUY.value
                       else -r["quantity"], price=r["price"], commission=r["commission"],
                       when=r["ts"].date(),
                       lot_ids=None if r["lot_ids"] is None else tuple(r["lot_ids"]))
              for r in rows]
    splits = [Split(symbol=r["symbol"], ratio=r["ratio"], effective=r["effective"])
              for r in await db.pool.fetch(
                  "SELECT symbol, ratio, effective FROM ledger_split_actions "
                  "ORDER BY effective, key")]
    return tax_view(trades, methods, splits=splits)
