"""Realised gains of a tax year, and a CSV with the columns of IRS Form 8949.

Why a CSV and not the form: the form is filled by a preparer or tax software from a broker's
1099-B; what the treasury must give them is one line per lot sold, in the form's terms, that
adds up exactly. Rows are never merged (no "VARIOUS" dates): a line per tax-view row keeps the
wash-sale adjustment traceable to its fund, lot and trade.

Ordering: short-term rows (the form's Part I) before long-term rows (Part II), each by date
sold, then fund, trade, lot and date acquired; rows equal in all of these keep their order.

Amounts are written with two decimals (ROUND_HALF_EVEN). ``gain_or_loss`` is computed from the
written proceeds, basis and adjustment, so every line adds up as printed
(``gain_or_loss = proceeds - cost_basis + adjustment_amount``) even when a price had more
decimals than a cent. ``adjustment_amount`` is ``0.00`` on lines without a code.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from typing import TextIO

from mts1b_treasury.lots import quantize_cents
from mts1b_treasury.washsale import GainRow, TaxView

__all__ = ["FORM8949_COLUMNS", "gains_rows", "write_form8949_csv"]

FORM8949_COLUMNS = (
    "description",
    "date_acquired",
    "date_sold",
    "proceeds",
    "cost_basis",
    "adjustment_code",
    "adjustment_amount",
    "gain_or_loss",
    "term",
    "fund_id",
    "symbol",
    "lot_id",
    "trade_id",
)


def gains_rows(view: TaxView, *, year: int) -> list[GainRow]:
    """The view's rows disposed of in calendar ``year``, in the view's order."""
    return [row for row in view.gains if row.disposed.year == year]


def _amount(value: Decimal) -> str:
    """Two decimals, never ``-0.00``."""
    cents = quantize_cents(value)
    return f"{cents:.2f}" if cents != 0 else "0.00"


def _quantity(value: Decimal) -> str:
    """A share count as written: ``100``, ``0.5`` (no exponent, no trailing zeros)."""
    return f"{value.normalize():f}"


def _order(row: GainRow) -> tuple[int, date, str, str, str, date]:
    return (0 if row.term == "short" else 1, row.disposed, row.fund_id, row.trade_id, row.lot_id,
            row.acquired)  # fmt: skip


def _line(row: GainRow) -> list[str]:
    proceeds, basis = quantize_cents(row.proceeds), quantize_cents(row.basis)
    adjustment = quantize_cents(row.adjustment)
    return [
        f"{_quantity(row.quantity)} {row.symbol}",
        row.acquired.strftime("%m/%d/%Y"),
        row.disposed.strftime("%m/%d/%Y"),
        _amount(proceeds),
        _amount(basis),
        row.adjustment_code,
        _amount(adjustment),
        _amount(proceeds - basis + adjustment),
        row.term,
        row.fund_id,
        row.symbol,
        row.lot_id,
        row.trade_id,
    ]


def write_form8949_csv(rows: Iterable[GainRow], stream: TextIO) -> None:
    """Write a header and one line per row (``\\n`` line ends) in the module's order."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(FORM8949_COLUMNS)
    for row in sorted(rows, key=_order):
        writer.writerow(_line(row))
