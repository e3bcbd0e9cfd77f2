"""The lot engine: relief order per method, exact rounding, short lots, splits, bad input."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D  # noqa: N817

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mts1b_foundation import TaxLotMethod as M
from mts1b_treasury.errors import TreasuryInputError
from mts1b_treasury.lots import Disposal, FillEffect, OpenLot, allocate, apply_fill, apply_split

DAY1 = date(2025, 1, 2)
DAY2 = date(2025, 1, 3)
DAY3 = date(2025, 1, 6)
SELL_DAY = date(2025, 2, 3)


def fill(
    method: M,
    lots: tuple[OpenLot, ...],
    qty: str,
    price: str,
    *,
    tid: str,
    when: date,
    seq: int,
    fee: str = "0",
    lot_ids: tuple[str, ...] | None = None,
    symbol: str = "AAPL",
) -> FillEffect:
    return apply_fill(
        method,
        lots,
        trade_id=tid,
        symbol=symbol,
        signed_quantity=D(qty),
        price=D(price),
        commission=D(fee),
        when=when,
        sequence=seq,
        lot_ids=lot_ids,
    )


def three_lots(method: M) -> tuple[OpenLot, ...]:
    """100 @ 10 (fee 1), 100 @ 12 (fee 1), 100 @ 11 (fee 1) on three days."""
    lots: tuple[OpenLot, ...] = ()
    for seq, (tid, price, when) in enumerate(
        [("b1", "10", DAY1), ("b2", "12", DAY2), ("b3", "11", DAY3)], start=1
    ):
        lots = fill(method, lots, "100", price, tid=tid, when=when, seq=seq, fee="1").lots
    return lots


def test_opening_fill_makes_a_lot_with_cost_and_fees_apart() -> None:
    eff = fill(M.FIFO, (), "100", "10.50", tid="b1", when=DAY1, seq=1, fee="1.25")
    lot = OpenLot("b1", "AAPL", D("100"), D("1050.00"), D("1.25"), DAY1, 1)
    assert eff == FillEffect((lot,), (), lot, D(0), D(0))


@pytest.mark.parametrize(
    ("method", "lot_ids", "expected"),
    [
        (M.FIFO, None, [("b1", "100", "1000"), ("b2", "50", "600.00")]),
        (M.LIFO, None, [("b3", "100", "1100"), ("b2", "50", "600.00")]),
        (M.HIFO, None, [("b2", "100", "1200"), ("b3", "50", "550.00")]),
        (M.SPECIFIC_ID, ("b3", "b1"), [("b3", "100", "1100"), ("b1", "50", "500.00")]),
    ],
)
def test_relief_order_per_method(
    method: M, lot_ids: tuple[str, ...] | None, expected: list[tuple[str, str, str]]
) -> None:
    lots = three_lots(method)
    eff = fill(method, lots, "-150", "13", tid="s1", when=SELL_DAY, seq=4, lot_ids=lot_ids)
    assert [(d.lot_id, d.quantity, d.cost) for d in eff.disposals] == [
        (i, D(q), D(c)) for i, q, c in expected
    ]
    assert eff.realized == D("1950") - sum((D(c) for _, _, c in expected), D(0))
    assert eff.cost_relieved == sum((D(c) for _, _, c in expected), D(0))
    assert sum((lot.quantity for lot in eff.lots), D(0)) == D("150")
    assert eff.opened is None


def test_partial_relief_rounds_half_even_and_keeps_the_rest() -> None:
    lot = fill(M.FIFO, (), "3", "10.01", tid="b1", when=DAY1, seq=1, fee="1.00").lots
    eff = fill(M.FIFO, lot, "-1", "11", tid="s1", when=DAY2, seq=2)
    (d,) = eff.disposals
    # 30.03 / 3 = 10.01 exactly; fees 1.00 / 3 = 0.333.. -> 0.33
    assert (d.cost, d.fees, d.proceeds, d.realized) == (D("10.01"), D("0.33"), D("11"), D("0.99"))
    assert eff.lots == (OpenLot("b1", "AAPL", D("2"), D("20.02"), D("0.67"), DAY1, 1),)
    # the last share takes exactly what is left, whatever rounding did before
    eff2 = fill(M.FIFO, eff.lots, "-1", "11", tid="s2", when=DAY2, seq=3)
    eff3 = fill(M.FIFO, eff2.lots, "-1", "11", tid="s3", when=DAY2, seq=4)
    assert eff2.disposals[0].fees + eff3.disposals[0].fees == D("0.67")
    assert eff3.disposals[0].cost == D("10.01")
    assert eff3.lots == ()


def test_half_cent_goes_to_the_even_cent() -> None:
    lot = (OpenLot("b1", "X", D("2"), D("0.05"), D("0.03"), DAY1, 1),)
    (d,) = fill(M.FIFO, lot, "-1", "1", tid="s", when=DAY2, seq=2, symbol="X").disposals
    assert (d.cost, d.fees) == (D("0.02"), D("0.02"))  # 0.025 -> 0.02, 0.015 -> 0.02


def test_sale_commission_is_shared_pro_rata_and_sums_exactly() -> None:
    lots = three_lots(M.FIFO)
    eff = fill(M.FIFO, lots, "-300", "13", tid="s1", when=SELL_DAY, seq=4, fee="1.00")
    assert [d.sale_fees for d in eff.disposals] == [D("0.33"), D("0.34"), D("0.33")]
    assert [d.fees for d in eff.disposals] == [D("1"), D("1"), D("1")]


def test_allocate_never_gives_a_negative_piece() -> None:
    assert allocate(D("0.03"), [D(1)] * 5) == [
        D("0.01"),
        D("0.00"),
        D("0.01"),
        D("0.00"),
        D("0.01"),
    ]
    assert allocate(D("-1.00"), [D(1), D(2)]) == [D("-0.33"), D("-0.67")]
    assert allocate(D("5"), []) == []


def test_a_fill_crossing_zero_closes_then_opens_the_other_way() -> None:
    lots = fill(M.FIFO, (), "100", "10", tid="b1", when=DAY1, seq=1).lots
    eff = fill(M.FIFO, lots, "-150", "12", tid="s1", when=DAY2, seq=2, fee="3.00")
    (d,) = eff.disposals
    assert (d.quantity, d.proceeds, d.realized, d.sale_fees) == (
        D("100"),
        D("1200"),
        D("200"),
        D("2.00"),
    )
    short = OpenLot("s1", "AAPL", D("-50"), D("-600"), D("1.00"), DAY2, 2)
    assert eff.opened == short
    assert eff.lots == (short,)


def test_short_lots_are_covered_with_signed_amounts() -> None:
    lots = fill(M.FIFO, (), "-100", "50", tid="ss", when=DAY1, seq=1, fee="1").lots
    assert lots == (OpenLot("ss", "AAPL", D("-100"), D("-5000"), D("1"), DAY1, 1),)
    eff = fill(M.FIFO, lots, "40", "40", tid="cv", when=DAY2, seq=2, fee="0.50")
    (d,) = eff.disposals
    assert d == Disposal(
        "cv", "ss", "AAPL", D("-40"), D("-2000.00"), D("0.40"), D("-1600"), D("0.50"),
        D("400.00"), DAY1, DAY2,
    )  # fmt: skip
    assert eff.lots == (OpenLot("ss", "AAPL", D("-60"), D("-3000.00"), D("0.60"), DAY1, 1),)


def test_average_cost_merges_on_purchase_and_relieves_the_average() -> None:
    lots = three_lots(M.AVERAGE_COST)
    merged = OpenLot("b1", "AAPL", D("300"), D("3300"), D("3"), DAY1, 1)
    assert lots == (merged,)
    eff = fill(M.AVERAGE_COST, lots, "-100", "12", tid="s1", when=SELL_DAY, seq=4)
    (d,) = eff.disposals
    assert (d.lot_id, d.cost, d.fees, d.realized, d.acquired) == (
        "b1",
        D("1100.00"),
        D("1.00"),
        D("100.00"),
        DAY1,
    )
    assert eff.lots == (OpenLot("b1", "AAPL", D("200"), D("2200.00"), D("2.00"), DAY1, 1),)


def test_average_cost_merges_lots_handed_in_separately_before_relief() -> None:
    lots = (
        OpenLot("x", "AAPL", D("1"), D("10"), D("0"), DAY2, 2),
        OpenLot("y", "AAPL", D("2"), D("14"), D("0"), DAY1, 5),
    )
    eff = fill(M.AVERAGE_COST, lots, "-1", "9", tid="s", when=DAY3, seq=6)
    assert eff.disposals[0].cost == D("8.00")
    assert eff.lots == (OpenLot("y", "AAPL", D("2"), D("16.00"), D("0"), DAY1, 2),)


def test_hifo_ties_go_to_the_oldest_then_by_fees() -> None:
    lots = (
        OpenLot("late", "AAPL", D("1"), D("10"), D("0"), DAY2, 2),
        OpenLot("early", "AAPL", D("1"), D("10"), D("0"), DAY1, 1),
        OpenLot("fees", "AAPL", D("1"), D("10"), D("0.5"), DAY3, 3),
    )
    eff = fill(M.HIFO, lots, "-3", "9", tid="s", when=SELL_DAY, seq=4)
    assert [d.lot_id for d in eff.disposals] == ["fees", "early", "late"]


def test_split_multiplies_quantity_and_keeps_cost_and_dates() -> None:
    lots = three_lots(M.FIFO)
    after = apply_split(lots, ratio=D("2"), effective=SELL_DAY)
    assert [(lot.quantity, lot.cost, lot.fees, lot.acquired) for lot in after] == [
        (D("200"), D("1000"), D("1"), DAY1),
        (D("200"), D("1200"), D("1"), DAY2),
        (D("200"), D("1100"), D("1"), DAY3),
    ]
    rev = apply_split(lots[:1], ratio=D("0.3"), effective=SELL_DAY)
    assert rev[0].quantity == D("30.0")
    odd = apply_split((OpenLot("b", "X", D("7"), D("70"), D(0), DAY1, 1),), ratio=D("0.1"),
                      effective=DAY2)  # fmt: skip
    assert odd[0].quantity == D("0.7")  # fractional shares stay (no cash in lieu)


def test_split_refuses_lots_bought_on_or_after_the_ex_date_and_bad_ratios() -> None:
    lots = three_lots(M.FIFO)
    with pytest.raises(TreasuryInputError) as err:
        apply_split(lots, ratio=D("2"), effective=DAY3)
    assert err.value.context["field"] == "effective"
    with pytest.raises(TreasuryInputError, match="ratio"):
        apply_split(lots, ratio=D("0"), effective=SELL_DAY)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"signed_quantity": D(0)}, "signed_quantity"),
        ({"price": D(0)}, "price"),
        ({"price": D("-1")}, "price"),
        ({"commission": D("-0.01")}, "commission"),
        ({"symbol": "MSFT"}, "symbol"),
        ({"lot_ids": ("b1",)}, "lot_ids"),
    ],
)
def test_bad_input_names_the_field(kwargs: dict[str, object], field: str) -> None:
    lots = three_lots(M.FIFO)
    args: dict[str, object] = {
        "trade_id": "s",
        "symbol": "AAPL",
        "signed_quantity": D("-1"),
        "price": D("1"),
        "commission": D("0"),
        "when": SELL_DAY,
        "sequence": 9,
    }
    args.update(kwargs)
    with pytest.raises(TreasuryInputError) as err:
        apply_fill(M.FIFO, lots, **args)  # type: ignore[arg-type]
    assert err.value.context["field"] == field


@pytest.mark.parametrize(
    "lot_ids",
    [None, ("nope",), ("b1", "b1"), ("b1",)],
)
def test_specific_id_refuses_missing_unknown_repeated_or_short_ids(
    lot_ids: tuple[str, ...] | None,
) -> None:
    lots = three_lots(M.SPECIFIC_ID)
    with pytest.raises(TreasuryInputError) as err:
        fill(M.SPECIFIC_ID, lots, "-150", "9", tid="s", when=SELL_DAY, seq=4, lot_ids=lot_ids)
    assert err.value.context["field"] == "lot_ids"
    assert err.value.context["value"] == repr(lot_ids)


def test_specific_id_purchase_needs_no_ids_and_refuses_some() -> None:
    eff = fill(M.SPECIFIC_ID, (), "1", "9", tid="b", when=DAY1, seq=1)
    assert eff.opened is not None
    with pytest.raises(TreasuryInputError, match="lot_ids"):
        fill(M.SPECIFIC_ID, (), "1", "9", tid="b", when=DAY1, seq=1, lot_ids=("x",))


def test_lots_handed_in_must_be_consistent() -> None:
    a = OpenLot("a", "AAPL", D("1"), D("1"), D(0), DAY1, 1)
    for lots, field in [
        ((a, a), "lots"),
        ((a, OpenLot("b", "AAPL", D("-1"), D("-1"), D(0), DAY1, 2)), "lots"),
        ((OpenLot("z", "AAPL", D("0"), D("0"), D(0), DAY1, 2),), "lots"),
        ((a,), "trade_id"),
    ]:
        with pytest.raises(TreasuryInputError) as err:
            fill(M.FIFO, lots, "1", "1", tid="a", when=DAY2, seq=3)
        assert err.value.context["field"] == field


_fills = st.lists(
    st.tuples(
        st.integers(min_value=-40, max_value=40).filter(bool),
        st.integers(min_value=1, max_value=5000),
        st.integers(min_value=0, max_value=300),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([M.FIFO, M.LIFO, M.HIFO, M.AVERAGE_COST]), _fills)
def test_property_lots_conserve_quantity_cost_and_fees(
    method: M, fills: list[tuple[int, int, int]]
) -> None:
    """Σ lots == position; every cent of cost and fees is either still open or relieved."""
    lots: tuple[OpenLot, ...] = ()
    position = D(0)
    paid = D(0)  # Σ opened cost
    relieved = D(0)
    fees_in = D(0)
    fees_out = D(0)
    for seq, (qty, cents, fee_cents) in enumerate(fills):
        price, fee = D(cents) / 100, D(fee_cents) / 100
        eff = apply_fill(
            method, lots, trade_id=f"t{seq}", symbol="AAPL", signed_quantity=D(qty), price=price,
            commission=fee, when=date(2025, 1, 1 + seq), sequence=seq,
        )  # fmt: skip
        lots = eff.lots
        position += qty
        assert sum((lot.quantity for lot in lots), D(0)) == position
        assert len({lot.quantity > 0 for lot in lots}) <= 1
        assert eff.realized == sum((d.proceeds - d.cost for d in eff.disposals), D(0))
        assert eff.cost_relieved == sum((d.cost for d in eff.disposals), D(0))
        opened_fee = eff.opened.fees if eff.opened else D(0)
        assert sum((d.sale_fees for d in eff.disposals), D(0)) + opened_fee == fee
        assert all(d.sale_fees >= 0 for d in eff.disposals)
        if eff.opened is not None:
            paid += eff.opened.cost
            fees_in += eff.opened.fees
        relieved += eff.cost_relieved
        fees_out += sum((d.fees for d in eff.disposals), D(0))
        assert sum((lot.cost for lot in lots), D(0)) == paid - relieved
        assert sum((lot.fees for lot in lots), D(0)) == fees_in - fees_out
