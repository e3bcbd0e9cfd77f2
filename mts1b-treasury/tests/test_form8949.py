"""Form 8949 rows of a year and the CSV, checked character for character."""

from __future__ import annotations

import io
from datetime import date
from decimal import Decimal as D  # noqa: N817

from mts1b_foundation import TaxLotMethod as M
from mts1b_treasury.form8949 import FORM8949_COLUMNS, gains_rows, write_form8949_csv
from mts1b_treasury.washsale import GainRow, TaxTrade, TaxView, tax_view


def t(fund: str, tid: str, when: date, qty: str, price: str, fee: str = "0") -> TaxTrade:
    return TaxTrade(fund, tid, "AAPL", D(qty), D(price), D(fee), when)


def view() -> TaxView:
    return tax_view(
        [
            t("A", "b1", date(2023, 5, 1), "100", "150", "1.00"),
            t("A", "b2", date(2024, 12, 2), "10", "200"),
            t("A", "s1", date(2024, 12, 10), "-100", "190", "1.00"),  # long-term gain
            t("A", "s2", date(2025, 1, 6), "-10", "180"),  # loss 200, washed by r
            t("B", "r", date(2025, 1, 20), "5", "185"),
            t("B", "s3", date(2025, 3, 3), "-5", "170.005"),  # sub-cent proceeds
        ],
        {"A": M.FIFO, "B": M.FIFO},
    )


def test_gains_rows_of_a_year() -> None:
    v = view()
    assert [r.trade_id for r in gains_rows(v, year=2024)] == ["s1"]
    assert [r.trade_id for r in gains_rows(v, year=2025)] == ["s2", "s3"]
    assert gains_rows(v, year=2023) == []


def test_csv_golden() -> None:
    out = io.StringIO()
    write_form8949_csv(gains_rows(view(), year=2025), out)
    # s2: 10 shares, proceeds 1800, basis 2000, loss 200 of which 5 shares' worth (100) is W.
    # s3: 5 shares bought 01/20/2025 for 925 + 100 carried = 1025, held since 01/20 - 35 days.
    #     proceeds 5 * 170.005 = 850.025 -> 850.02 (half even); gain 850.02 - 1025.00
    expected = (
        "description,date_acquired,date_sold,proceeds,cost_basis,adjustment_code,"
        "adjustment_amount,gain_or_loss,term,fund_id,symbol,lot_id,trade_id\n"
        "10 AAPL,12/02/2024,01/06/2025,1800.00,2000.00,W,100.00,-100.00,short,A,AAPL,b2,s2\n"
        "5 AAPL,12/16/2024,03/03/2025,850.02,1025.00,,0.00,-174.98,short,B,AAPL,r,s3\n"
    )
    assert out.getvalue() == expected


def test_csv_puts_short_term_first_and_is_deterministic() -> None:
    rows = list(view().gains)
    first, second = io.StringIO(), io.StringIO()
    write_form8949_csv(rows, first)
    write_form8949_csv(reversed(rows), second)
    assert first.getvalue() == second.getvalue()
    lines = first.getvalue().splitlines()
    assert lines[0] == ",".join(FORM8949_COLUMNS)
    assert [line.split(",")[-1] for line in lines[1:]] == ["s2", "s3", "s1"]
    assert lines[3] == (
        "100 AAPL,05/01/2023,12/10/2024,18999.00,15001.00,,0.00,3998.00,long,A,AAPL,b1,s1"
    )


def test_fractional_quantities_and_negative_zero() -> None:
    row = GainRow("F", "s", "b", "BTC", D("0.50000"), date(2025, 1, 2), date(2025, 2, 3),
                  D("-0.001"), D("0"), "", D("0"), D("-0.001"), "short")  # fmt: skip
    out = io.StringIO()
    write_form8949_csv([row], out)
    assert out.getvalue().splitlines()[1] == (
        "0.5 BTC,01/02/2025,02/03/2025,0.00,0.00,,0.00,0.00,short,F,BTC,b,s"
    )
