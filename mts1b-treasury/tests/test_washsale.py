"""The wash-sale tax view: 26 CFR 1.1091-1's own examples, hand-computed cases, a property."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal as D  # noqa: N817

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mts1b_foundation import TaxLotMethod as M
from mts1b_treasury.errors import TreasuryInputError
from mts1b_treasury.lots import OpenLot, apply_fill, apply_split
from mts1b_treasury.washsale import (
    GainRow,
    Split,
    TaxLot,
    TaxTrade,
    TaxView,
    is_long_term,
    tax_view,
)

FIFO = {"A": M.FIFO, "B": M.FIFO}


def t(
    tid: str,
    when: date,
    qty: int | str,
    price: int | str,
    *,
    fund: str = "A",
    sym: str = "M",
    fee: str = "0",
) -> TaxTrade:
    return TaxTrade(fund, tid, sym, D(qty), D(price), D(fee), when)


def row(
    tid: str,
    lot: str,
    qty: int,
    acquired: date,
    disposed: date,
    proceeds: str,
    basis: str,
    adjustment: str = "0",
    *,
    term: str = "short",
    fund: str = "A",
    sym: str = "M",
) -> GainRow:
    adj = D(adjustment)
    return GainRow(
        fund, tid, lot, sym, D(qty), acquired, disposed, D(proceeds), D(basis),
        "W" if adj else "", adj, D(proceeds) - D(basis) + adj, term,
    )  # fmt: skip


def lot(
    lid: str,
    qty: int,
    acquired: date,
    adjusted: date,
    basis: str,
    adjustment: str = "0",
    *,
    fund: str = "A",
    sym: str = "M",
) -> TaxLot:
    return TaxLot(fund, lid, sym, D(qty), acquired, adjusted, D(basis), D(adjustment))


# --- 26 CFR 1.1091-1(h), the regulation's own examples --------------------------------------


def test_reg_example_1_replacement_bought_before_the_sale() -> None:
    """Dec 1 buy 100 for $10,000, Dec 15 buy 100 for $9,000, Jan 3 sell the first for $9,000."""
    view = tax_view(
        [
            t("b1", date(1954, 12, 1), 100, 100),
            t("b2", date(1954, 12, 15), 100, 90),
            t("s1", date(1955, 1, 3), -100, 90),
        ],
        FIFO,
    )
    assert view.gains == (
        row("s1", "b1", 100, date(1954, 12, 1), date(1955, 1, 3), "9000", "10000", "1000"),
    )
    # the $1,000 goes onto the Dec 15 shares, with the 33 days the sold shares were held
    assert view.lots == (lot("b2", 100, date(1954, 12, 15), date(1954, 11, 12), "10000", "1000"),)


def test_reg_example_2_fewer_replacement_shares_than_shares_sold() -> None:
    """(c): 75 replacement shares for 100 sold: the loss on 75 ($750) is disallowed."""
    view = tax_view(
        [
            t("b1", date(1954, 9, 21), 100, 50),
            t("b2", date(1954, 12, 21), 50, 55),
            t("b3", date(1954, 12, 27), 25, 50),
            t("s1", date(1955, 1, 3), -100, 40),
        ],
        FIFO,
    )
    assert view.gains == (
        row("s1", "b1", 100, date(1954, 9, 21), date(1955, 1, 3), "4000", "5000", "750"),
    )
    assert view.gains[0].gain == D("-250")
    held = (date(1955, 1, 3) - date(1954, 9, 21)).days  # 104 days tacked on
    assert view.lots == (
        lot("b2", 50, date(1954, 12, 21), date(1954, 12, 21) - timedelta(held), "3250", "500"),
        lot("b3", 25, date(1954, 12, 27), date(1954, 12, 27) - timedelta(held), "1500", "250"),
    )


def test_reg_example_3_more_replacement_shares_the_earliest_are_matched() -> None:
    """(d): 200 shares bought Feb 15-18 after a 100-share loss: Feb 15 and 16 are the ones."""
    trades = [t("b0", date(1954, 9, 15), 100, 50), t("s1", date(1956, 2, 1), -100, 40)]
    trades += [t(f"r{d}", date(1956, 2, d), 50, 40) for d in (15, 16, 17, 18)]
    view = tax_view(trades, FIFO)
    assert view.gains == (
        row("s1", "b0", 100, date(1954, 9, 15), date(1956, 2, 1), "4000", "5000", "1000",
            term="long"),
    )  # fmt: skip
    held = (date(1956, 2, 1) - date(1954, 9, 15)).days
    assert view.lots == (
        lot("r15", 50, date(1956, 2, 15), date(1956, 2, 15) - timedelta(held), "2500", "500"),
        lot("r16", 50, date(1956, 2, 16), date(1956, 2, 16) - timedelta(held), "2500", "500"),
        lot("r17", 50, date(1956, 2, 17), date(1956, 2, 17), "2000"),
        lot("r18", 50, date(1956, 2, 18), date(1956, 2, 18), "2000"),
    )
    # the tacked holding period makes a sale three months later long term
    later = tax_view([*trades, t("s2", date(1956, 5, 1), -50, 45)], FIFO)
    assert later.gains[-1].term == "long"
    assert later.gains[-1].basis == D("2500")


def test_reg_1091_2_basis_examples_up_and_down() -> None:
    """1.1091-2: $100 share sold at $80, rebought at $90 -> basis $110; at $70 -> $90."""
    for rebuy, basis in (("90", "110"), ("70", "90")):
        view = tax_view(
            [
                t("b", date(1935, 6, 1), 1, 100),
                t("s", date(1955, 1, 15), -1, 80),
                t("r", date(1955, 2, 1), 1, rebuy),
            ],
            FIFO,
        )
        assert view.lots[0].basis == D(basis)
        assert view.gains[0].adjustment == D("20")
        assert view.gains[0].gain == D(0)


def test_losses_in_sale_order_and_one_bite_per_replacement_share() -> None:
    """(b), (e): two losses, 100 replacement shares: the earlier sale takes them all."""
    view = tax_view(
        [
            t("b1", date(2025, 1, 2), 100, 10),
            t("b2", date(2025, 1, 3), 100, 10),
            t("s1", date(2025, 3, 3), -100, 8),
            t("s2", date(2025, 3, 4), -100, 7),
            t("r", date(2025, 3, 10), 100, 9),
        ],
        FIFO,
    )
    assert view.gains == (
        row("s1", "b1", 100, date(2025, 1, 2), date(2025, 3, 3), "800", "1000", "200"),
        row("s2", "b2", 100, date(2025, 1, 3), date(2025, 3, 4), "700", "1000"),
    )
    assert view.lots == (lot("r", 100, date(2025, 3, 10), date(2025, 1, 9), "1100", "200"),)


def test_same_day_losses_of_one_sale_go_in_order_of_acquisition() -> None:
    """(b): one LIFO sale of two lots; the older lot's loss is matched first."""
    view = tax_view(
        [
            t("old", date(2025, 1, 2), 10, 20),
            t("new", date(2025, 1, 3), 10, 15),
            t("s", date(2025, 3, 3), -20, 10),
            t("r", date(2025, 3, 5), 10, 11),
        ],
        {"A": M.LIFO},
    )
    assert [(g.lot_id, g.adjustment) for g in view.gains] == [("new", D(0)), ("old", D(100))]
    assert view.lots[0].basis == D(210)


# --- hand-computed cases ----------------------------------------------------------------------


def test_cross_fund_wash_sale() -> None:
    """A loss in fund A, a purchase in fund B of the same entity 7 days later: W."""
    view = tax_view(
        [
            t("b", date(2025, 1, 2), 100, 10, fee="1"),
            t("s", date(2025, 2, 3), -100, 8, fee="1"),
            t("r", date(2025, 2, 10), 100, 9, fund="B", fee="1"),
        ],
        FIFO,
    )
    assert view.gains == (
        row("s", "b", 100, date(2025, 1, 2), date(2025, 2, 3), "799", "1001", "202"),
    )
    assert view.select(fund_id="B").lots == (
        lot("r", 100, date(2025, 2, 10), date(2025, 1, 9), "1103", "202", fund="B"),
    )
    assert view.select(fund_id="A") == TaxView(view.gains, ())
    assert view.select(symbol="X") == TaxView((), ())


def test_a_later_purchase_reprocesses_an_earlier_loss() -> None:
    trades = [
        t("b", date(2025, 1, 2), 100, 10),
        t("s", date(2025, 2, 3), -100, 8),
        t("r", date(2025, 3, 5), 100, 9),  # 30 days after: inside the window
    ]
    before = tax_view(trades[:2], FIFO)
    assert before.gains[0].adjustment_code == ""
    assert before.gains[0].gain == D(-200)
    after = tax_view(trades, FIFO)
    assert after.gains[0].adjustment_code == "W"
    assert after.gains[0].gain == D(0)


@pytest.mark.parametrize(
    ("rebuy", "washed"),
    [
        (date(2025, 3, 5), True),  # sale + 30
        (date(2025, 3, 6), False),  # sale + 31
        (date(2025, 1, 4), True),  # sale - 30
        (date(2025, 1, 3), False),  # sale - 31
        (date(2025, 2, 3), True),  # the sale day itself
    ],
)
def test_the_61_day_window_edges(rebuy: date, washed: bool) -> None:
    trades = [t("b", date(2024, 12, 2), 100, 10), t("s", date(2025, 2, 3), -100, 8)]
    trades.append(t("r", rebuy, 100, 9, fund="B"))
    trades.sort(key=lambda x: x.when)
    view = tax_view(trades, FIFO)
    assert view.select(fund_id="A").gains[0].adjustment == (D(200) if washed else D(0))


def test_a_gain_is_never_adjusted() -> None:
    view = tax_view(
        [
            t("b", date(2025, 1, 2), 100, 10),
            t("s", date(2025, 2, 3), -100, 12),
            t("r", date(2025, 2, 10), 100, 11),
        ],
        FIFO,
    )
    assert view.gains == (row("s", "b", 100, date(2025, 1, 2), date(2025, 2, 3), "1200", "1000"),)
    assert view.lots == (lot("r", 100, date(2025, 2, 10), date(2025, 2, 10), "1100"),)


def test_a_lot_sold_the_day_it_was_bought_is_not_its_own_replacement() -> None:
    view = tax_view([t("b", date(2025, 1, 2), 100, 10), t("s", date(2025, 1, 2), -100, 9)], FIFO)
    assert view.gains[0].adjustment_code == ""
    assert view.gains[0].gain == D(-100)


def test_one_sale_of_two_recent_lots_does_not_wash_against_itself() -> None:
    view = tax_view(
        [
            t("b1", date(2025, 1, 2), 100, 10),
            t("b2", date(2025, 1, 10), 100, 10),
            t("s", date(2025, 1, 20), -150, 9),  # all of b1, half of b2; the rest of b2 is kept
        ],
        FIFO,
    )
    assert [g.adjustment for g in view.gains] == [D(0), D(0)]
    assert view.lots == (lot("b2", 50, date(2025, 1, 10), date(2025, 1, 10), "500.00"),)


def test_shares_sold_before_the_loss_sale_are_not_replacements() -> None:
    view = tax_view(
        [
            t("b1", date(2025, 1, 2), 100, 10),
            t("b2", date(2025, 1, 10), 100, 12, fund="B"),
            t("s2", date(2025, 1, 12), -100, "12.5", fund="B"),  # a gain, sold before s1
            t("s1", date(2025, 1, 20), -100, 9),
        ],
        FIFO,
    )
    assert view.select(fund_id="A").gains[0].gain == D(-100)


def test_partial_sale_of_a_washed_lot_carries_its_share_of_the_adjustment() -> None:
    view = tax_view(
        [
            t("b", date(2025, 1, 2), 10, 10),
            t("s", date(2025, 2, 3), -10, 7),
            t("r", date(2025, 2, 4), 30, 8),  # 10 of its 30 shares absorb the $30 loss
            t("x", date(2025, 6, 2), -15, 9),
        ],
        FIFO,
    )
    assert view.gains[1:] == (
        # the washed 10 (adjusted date, basis 80 + 30) then 5 plain shares
        row("x", "r", 10, date(2025, 1, 3), date(2025, 6, 2), "90", "110.00"),
        row("x", "r", 5, date(2025, 2, 4), date(2025, 6, 2), "45", "40.00"),
    )
    assert view.lots == (lot("r", 15, date(2025, 2, 4), date(2025, 2, 4), "120.00"),)


def test_a_washed_replacement_sold_at_a_loss_is_washed_with_its_carried_loss() -> None:
    view = tax_view(
        [
            t("b", date(2025, 1, 2), 10, 10),
            t("s", date(2025, 2, 3), -10, 8),  # loss 20 -> r
            t("r", date(2025, 2, 5), 10, 8),
            t("s2", date(2025, 2, 20), -10, 8),  # basis 100: loss 20 -> r2
            t("r2", date(2025, 3, 1), 10, 8),
        ],
        FIFO,
    )
    assert [(g.basis, g.adjustment, g.gain) for g in view.gains] == [
        (D(100), D(20), D(0)),
        (D(100), D(20), D(0)),
    ]
    # 32 days for b, then 15 more for r: r2's acquisition date moves back 47 days
    assert view.lots == (lot("r2", 10, date(2025, 3, 1), date(2025, 1, 13), "100", "20"),)


@pytest.mark.parametrize(
    ("acquired", "disposed", "long"),
    [
        (date(2024, 3, 15), date(2025, 3, 15), False),
        (date(2024, 3, 15), date(2025, 3, 16), True),
        (date(2024, 2, 29), date(2025, 2, 28), False),
        (date(2024, 2, 29), date(2025, 3, 1), True),
        (date(2023, 2, 28), date(2024, 2, 29), True),
    ],
)
def test_short_long_boundary(acquired: date, disposed: date, long: bool) -> None:
    assert is_long_term(acquired, disposed) is long
    view = tax_view([t("b", acquired, 1, 10), t("s", disposed, -1, 11)], FIFO)
    assert view.gains[0].term == ("long" if long else "short")


def test_a_split_between_purchase_and_sale() -> None:
    view = tax_view(
        [t("b", date(2025, 1, 2), 100, 100), t("s", date(2025, 4, 1), -200, 40)],
        FIFO,
        splits=[Split("M", D(2), date(2025, 3, 3))],
    )
    assert view.gains == (row("s", "b", 200, date(2025, 1, 2), date(2025, 4, 1), "8000", "10000"),)


def test_a_split_between_a_loss_and_its_replacement_counts_old_shares() -> None:
    """100 old shares sold at a loss; 2:1 split; 200 new shares are the whole replacement."""
    view = tax_view(
        [
            t("b", date(2025, 1, 2), 100, 100),
            t("s", date(2025, 2, 20), -100, 80),
            t("r", date(2025, 3, 5), 250, 41),
        ],
        FIFO,
        splits=[Split("M", D(2), date(2025, 3, 1)), Split("Z", D(3), date(2025, 3, 1))],
    )
    assert view.gains[0].adjustment == D(2000)
    assert view.lots == (
        lot("r", 200, date(2025, 3, 5), date(2025, 1, 15), "10200.00", "2000"),
        lot("r", 50, date(2025, 3, 5), date(2025, 3, 5), "2050.00"),
    )


def test_a_split_after_the_wash_multiplies_the_washed_shares() -> None:
    view = tax_view(
        [
            t("b", date(2025, 1, 2), 10, 10),
            t("s", date(2025, 2, 3), -10, 8),
            t("r", date(2025, 2, 4), 10, 8),
        ],
        FIFO,
        splits=[Split("M", D("0.5"), date(2025, 5, 1))],
    )
    assert view.lots == (lot("r", 5, date(2025, 2, 4), date(2025, 1, 3), "100", "20"),)


def test_short_sales_are_out_of_scope() -> None:
    view = tax_view(
        [
            t("ss", date(2025, 1, 2), -100, 10),
            t("cv", date(2025, 1, 10), 100, 12),  # a covering loss: no row, no wash
            t("b", date(2025, 1, 12), 50, 11),
        ],
        FIFO,
    )
    assert view.gains == ()
    assert view.lots == (lot("b", 50, date(2025, 1, 12), date(2025, 1, 12), "550"),)


def test_average_cost_fund_relieves_the_merged_lot() -> None:
    view = tax_view(
        [
            t("b1", date(2025, 1, 2), 10, 10),
            t("b2", date(2025, 1, 3), 10, 12),
            t("s", date(2025, 6, 2), -5, 13),
        ],
        {"A": M.AVERAGE_COST},
    )
    assert view.gains == (row("s", "b1", 5, date(2025, 1, 2), date(2025, 6, 2), "65", "55.00"),)
    assert view.lots == (lot("b1", 15, date(2025, 1, 2), date(2025, 1, 2), "165.00"),)


def test_bad_input() -> None:
    with pytest.raises(TreasuryInputError) as err:
        tax_view([t("b", date(2025, 1, 2), 1, 1)], {"B": M.FIFO})
    assert err.value.context["field"] == "methods"
    with pytest.raises(TreasuryInputError) as err:
        tax_view([t("b", date(2025, 1, 2), 1, 1), t("c", date(2025, 1, 1), 1, 1)], FIFO)
    assert err.value.context["field"] == "trades"
    with pytest.raises(TreasuryInputError) as err:
        tax_view([t("b", date(2025, 1, 2), 1, 0)], FIFO)
    assert err.value.context["field"] == "price"


# --- the property -----------------------------------------------------------------------------

_trades = st.lists(
    st.tuples(
        st.sampled_from(["A", "B"]),
        st.sampled_from(["M", "N"]),
        st.integers(min_value=-30, max_value=30).filter(bool),
        st.integers(min_value=100, max_value=2000),
        st.integers(min_value=0, max_value=200),
        st.integers(min_value=0, max_value=20),
    ),
    min_size=1,
    max_size=20,
)


_splits = st.lists(
    st.tuples(st.integers(min_value=0, max_value=200), st.sampled_from(["2", "0.5", "4"])),
    max_size=2,
)


@settings(max_examples=200, deadline=None)
@given(_trades, st.sampled_from([M.FIFO, M.LIFO, M.HIFO, M.AVERAGE_COST]), _splits)
def test_property_tax_view_agrees_with_the_books(
    raw: list[tuple[str, str, int, int, int, int]], method: M, raw_splits: list[tuple[int, str]]
) -> None:
    """Lots sum to positions; deferred losses are neither lost nor created; no W, basis = book."""
    trades: list[TaxTrade] = []
    when = date(2025, 1, 2)
    for i, (fund, sym, qty, cents, fee, gap) in enumerate(raw):
        when += timedelta(days=gap)
        trades.append(TaxTrade(fund, f"t{i}", sym, D(qty), D(cents) / 100, D(fee) / 100, when))
    splits = sorted(
        (Split("M", D(r), date(2025, 1, 3) + timedelta(days=d)) for d, r in raw_splits),
        key=lambda s: s.effective,
    )
    view = tax_view(trades, {"A": method, "B": M.FIFO}, splits=splits)

    books: dict[tuple[str, str], tuple[OpenLot, ...]] = {}
    due = list(splits)

    def split_books(upto: date | None) -> None:
        while due and (upto is None or due[0].effective <= upto):
            s = due.pop(0)
            for key in [k for k in books if k[1] == s.symbol]:
                books[key] = apply_split(books[key], ratio=s.ratio, effective=s.effective)

    book_realized = D(0)
    long_cost = D(0)  # cost + fees of long disposals
    economic = D(0)  # proceeds - sale fees - cost - fees of long disposals
    for i, tr in enumerate(trades):
        split_books(tr.when)
        eff = apply_fill(
            {"A": method, "B": M.FIFO}[tr.fund_id], books.get((tr.fund_id, tr.symbol), ()),
            trade_id=tr.trade_id, symbol=tr.symbol, signed_quantity=tr.signed_quantity,
            price=tr.price, commission=tr.commission, when=tr.when, sequence=i,
        )  # fmt: skip
        books[(tr.fund_id, tr.symbol)] = eff.lots
        book_realized += eff.realized
        assert eff.realized == sum((d.proceeds - d.cost for d in eff.disposals), D(0))
        for d in eff.disposals:
            if d.quantity > 0:
                long_cost += d.cost + d.fees
                economic += d.proceeds - d.sale_fees - d.cost - d.fees
    split_books(None)
    for (fund, sym), lots in books.items():
        longs = sum((x.quantity for x in lots if x.quantity > 0), D(0))
        assert sum((x.quantity for x in view.select(fund_id=fund, symbol=sym).lots), D(0)) == longs
    rows_basis = sum((g.basis for g in view.gains), D(0))
    carried_into_rows = rows_basis - long_cost
    disallowed = sum((g.adjustment for g in view.gains), D(0))
    still_open = sum((x.wash_sale_adjustment for x in view.lots), D(0))
    assert disallowed == carried_into_rows + still_open
    assert sum((g.gain for g in view.gains), D(0)) == economic + still_open
    assert all(
        g.adjustment >= 0 and (g.adjustment == 0) == (g.adjustment_code == "") for g in view.gains
    )
    assert all(g.adjustment <= max(D(0), g.basis - g.proceeds) for g in view.gains)
    if disallowed == 0:
        assert rows_basis == long_cost
        open_cost = sum(
            (x.cost + x.fees for lots in books.values() for x in lots if x.quantity > 0), D(0)
        )
        assert sum((x.basis for x in view.lots), D(0)) == open_cost
    assert [(g.disposed) for g in view.gains] == sorted(g.disposed for g in view.gains)


def test_specific_id_fund_sells_the_named_lot() -> None:
    trades = [
        t("b1", date(2025, 1, 2), 10, 10),
        t("b2", date(2025, 1, 3), 10, 20),
    ]
    sell = TaxTrade("A", "s", "M", D(-10), D(15), D(0), date(2025, 6, 2), ("b2",))
    view = tax_view([*trades, sell], {"A": M.SPECIFIC_ID})
    assert view.gains == (row("s", "b2", 10, date(2025, 1, 3), date(2025, 6, 2), "150", "200"),)
    assert view.lots == (lot("b1", 10, date(2025, 1, 2), date(2025, 1, 2), "100"),)
