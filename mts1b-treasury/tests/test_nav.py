"""The NAV strike: hand-computed days, reproducibility, a property over random days, bad input."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal as D  # noqa: N817

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mts1b_foundation import FundNav, parse_message
from mts1b_treasury.errors import TreasuryInputError
from mts1b_treasury.nav import (
    NavFill,
    NavInputs,
    canonical_decimal,
    fills_net_cash,
    inputs_sha256,
    outputs_sha256,
    session_close,
    split_commission,
    strike_nav,
)

CLOSE_1 = dt.datetime(2026, 12, 3, 21, 0, tzinfo=dt.UTC)
CLOSE_2 = dt.datetime(2026, 12, 4, 21, 0, tzinfo=dt.UTC)


def day_one() -> NavInputs:
    """First strike: 10,000 contributed, 50 XYZ bought at 100 (A 30, B 20), commission 1."""
    return NavInputs(
        fund_id="fund-1", session=dt.date(2026, 12, 3), as_of=CLOSE_1,
        previous_nav=D(0), cash=D("4999.00"), positions={"XYZ": D(50)},
        marks={"XYZ": D("102.00")}, previous_marks={},
        sleeve_positions={("A", "XYZ"): D(30), ("B", "XYZ"): D(20)},
        previous_sleeve_positions={},
        fills=(NavFill("XYZ", D(50), D("100.00"), D("1.00"), {"A": D(30), "B": D(20)}),),
        flows=(D("10000"),),
    )


def day_two() -> NavInputs:
    """A sells 10 at 103 (commission 0.35), 500 withdrawn, the mark falls to 101.50."""
    return NavInputs(
        fund_id="fund-1", session=dt.date(2026, 12, 4), as_of=CLOSE_2,
        previous_nav=D("10099"), cash=D("5528.65"), positions={"XYZ": D(40)},
        marks={"XYZ": D("101.50")}, previous_marks={"XYZ": D("102.00")},
        sleeve_positions={("A", "XYZ"): D(20), ("B", "XYZ"): D(20)},
        previous_sleeve_positions={("A", "XYZ"): D(30), ("B", "XYZ"): D(20)},
        fills=(NavFill("XYZ", D(-10), D("103"), D("0.35"), {"A": D(-10)}),),
        flows=(D("-500"),),
    )


def test_first_day_by_hand() -> None:
    nav = strike_nav(day_one())
    # positions 50 * 102 = 5,100; nav = 4,999 + 5,100; pnl = nav - 0 - 10,000
    assert (nav.positions_value, nav.nav, nav.pnl, nav.flows) == (D(5100), D(10099), D(99),
                                                                   D(10000))
    # A: 30 * (102 - 100) - 1.00 * 30/50 = 59.40; B: 20 * 2 - 0.40 = 39.60
    assert nav.pnl_by_strategy == {"A": D("59.4"), "B": D("39.6")}
    assert (nav.unattributed, nav.fees, nav.positions) == (D(0), D(1), 1)
    assert nav.as_of == CLOSE_1 and nav.session == "2026-12-03"


def test_second_day_by_hand() -> None:
    nav = strike_nav(day_two())
    # cash 4,999 + 1,030 - 0.35 - 500 = 5,528.65; positions 40 * 101.50 = 4,060
    assert (nav.positions_value, nav.nav) == (D(4060), D("9588.65"))
    # pnl = 9,588.65 - 10,099 - (-500) = -10.35
    assert (nav.pnl, nav.flows, nav.fees) == (D("-10.35"), D(-500), D("0.35"))
    # A: 30 * -0.50 + (-10) * (101.50 - 103) - 0.35 = -0.35; B: 20 * -0.50 = -10
    assert nav.pnl_by_strategy == {"A": D("-0.35"), "B": D(-10)}
    assert nav.unattributed == 0
    assert nav.nav == nav.previous_nav + nav.pnl + nav.flows


def test_unowned_shares_dividend_and_borrow() -> None:
    """100 LONG held (A owns 60, 40 unowned) +1 and a dividend of 50; 100 SHRT short by B,
    borrow 3, price unchanged: A gets 60 + 30, B pays 3, the 40 unowned shares' 40 + 20 are
    unattributed."""
    inputs = NavInputs(
        fund_id="f2", session=dt.date(2026, 12, 4), as_of=CLOSE_2,
        previous_nav=D(1000) + 100 * D(10) - 100 * D(5), cash=D(1000) + 50 - 3,
        positions={"LONG": D(100), "SHRT": D(-100)},
        marks={"LONG": D(11), "SHRT": D(5)}, previous_marks={"LONG": D(10), "SHRT": D(5)},
        sleeve_positions={("A", "LONG"): D(60), ("B", "SHRT"): D(-100)},
        previous_sleeve_positions={("A", "LONG"): D(60), ("B", "SHRT"): D(-100)},
        dividends={"LONG": D(50)}, borrow_fees={"SHRT": D(3)},
    )
    nav = strike_nav(inputs)
    assert (nav.pnl, nav.fees) == (D(147), D(3))
    assert nav.pnl_by_strategy == {"A": D(90), "B": D(-3)}
    assert nav.unattributed == D(60)


def test_internal_transfer_prices_each_side() -> None:
    """A gives 10 to B at 100 (a fill of 0); the mark is 101: A +0 on them, B +10."""
    inputs = NavInputs(
        fund_id="f3", session=dt.date(2026, 12, 4), as_of=CLOSE_2,
        previous_nav=D(1000), cash=D(0), positions={"X": D(10)},
        marks={"X": D(101)}, previous_marks={"X": D(100)},
        sleeve_positions={("B", "X"): D(10)}, previous_sleeve_positions={("A", "X"): D(10)},
        fills=(NavFill("X", D(0), D(100), D(0), {"A": D(-10), "B": D(10)}),),
    )
    nav = strike_nav(inputs)
    # A: 10 * (101 - 100) + (-10) * (101 - 100) = 0; B: 10 * (101 - 100) = 10
    assert nav.pnl_by_strategy == {"A": D(0), "B": D(10)}
    assert (nav.pnl, nav.unattributed) == (D(10), D(0))


def test_split_commission_sums_exactly() -> None:
    assert split_commission(D("1.00"), {"c": D(10), "a": D(-10), "b": D(10)}) == {
        "a": D("0.33"), "b": D("0.33"), "c": D("0.34")}
    assert split_commission(D("0.005"), {"a": D(1), "b": D(1)}) == {"a": D("0.00"),
                                                                     "b": D("0.005")}
    assert split_commission(D(1), {"a": D(0)}) == {}


def test_striking_twice_gives_the_same_bits() -> None:
    first, second = strike_nav(day_two()), strike_nav(day_two())
    assert first.to_json() == second.to_json()
    assert first.inputs_sha256 == inputs_sha256(day_two())
    assert first.outputs_sha256 == outputs_sha256(first)
    # a consumer re-reading the JSON can check the outputs digest
    again = parse_message(FundNav, first.to_json())
    assert outputs_sha256(again) == first.outputs_sha256


def test_trailing_zeros_and_order_do_not_change_the_bits() -> None:
    base = day_two()
    written_otherwise = replace(
        base, cash=D("5528.650"), previous_nav=D("10099.00"), marks={"XYZ": D("101.5")},
        flows=(D("-200"), D("-300.0")),
        fills=(NavFill("XYZ", D("-10.0"), D("103.00"), D("0.350"), {"A": D("-10")}),))
    split_flows = replace(base, flows=(D("-300"), D("-200")))
    assert canonical_decimal(D("1.00")) == canonical_decimal(D("1.0")) == "1"
    assert canonical_decimal(D("1E+2")) == "100" and canonical_decimal(D("-0.00")) == "0"
    assert inputs_sha256(written_otherwise) != inputs_sha256(base)  # two flows, not one
    assert inputs_sha256(replace(written_otherwise, flows=(D("-300.00"), D("-200")))) == \
        inputs_sha256(split_flows)
    assert strike_nav(written_otherwise).to_json() == strike_nav(split_flows).to_json()


@given(st.decimals(min_value=-10**20, max_value=10**20, allow_nan=False, allow_infinity=False))
def test_canonical_text_is_the_normalised_value(value: D) -> None:
    text = canonical_decimal(value)
    assert D(text) == value and "E" not in text and "e" not in text
    assert canonical_decimal(D(text)) == text
    assert text == "0" or not ("." in text and text.endswith("0"))


def test_one_mark_changes_the_inputs_digest() -> None:
    base = day_two()
    moved = replace(base, marks={"XYZ": D("101.51")})
    assert inputs_sha256(moved) != inputs_sha256(base)
    assert strike_nav(moved).outputs_sha256 != strike_nav(base).outputs_sha256


def test_session_close_uses_the_calendar() -> None:
    assert session_close(dt.date(2024, 7, 3)) == dt.datetime(2024, 7, 3, 17, 0, tzinfo=dt.UTC)
    assert session_close("2026-12-04", "XNYS") == CLOSE_2


# --- bad input ---------------------------------------------------------------------------------


def _error(inputs: NavInputs) -> TreasuryInputError:
    with pytest.raises(TreasuryInputError) as info:
        strike_nav(inputs)
    return info.value


def test_a_held_symbol_without_a_mark_is_refused() -> None:
    err = _error(replace(day_two(), positions={"XYZ": D(40), "NOMARK": D(1)}))
    assert err.context["field"] == "marks" and err.context["value"] == "'NOMARK'"


def test_a_missing_previous_mark_is_refused() -> None:
    err = _error(replace(day_two(), previous_marks={}))
    assert err.context["field"] == "previous_marks" and "XYZ" in err.context["value"]


def test_a_negative_price_is_refused() -> None:
    err = _error(replace(day_two(), marks={"XYZ": D("-1")}))
    assert err.context["field"] == "marks" and "-1" in err.context["value"]
    bad_fill = NavFill("XYZ", D(-10), D("-103"), D("0.35"), {"A": D(-10)})
    err = _error(replace(day_two(), fills=(bad_fill,)))
    assert err.context["field"] == "fills[0].price" and err.context["value"] == "Decimal('-103')"


def test_a_split_that_does_not_sum_to_the_fill_is_refused() -> None:
    bad_fill = NavFill("XYZ", D(-10), D(103), D("0.35"), {"A": D(-6), "B": D(-3)})
    err = _error(replace(day_two(), fills=(bad_fill,)))
    assert err.context["field"] == "fills[0].sleeves"
    assert "Decimal('-6')" in err.context["value"] and "-9" in err.message


def test_ownership_changed_without_a_fill_is_refused() -> None:
    err = _error(replace(day_two(), sleeve_positions={("A", "XYZ"): D(25),
                                                      ("B", "XYZ"): D(20)}))
    assert err.context["field"] == "sleeve_positions" and "25" in err.context["value"]


def test_a_negative_commission_and_a_naive_as_of_are_refused() -> None:
    bad_fill = NavFill("XYZ", D(-10), D(103), D("-0.35"), {"A": D(-10)})
    assert _error(replace(day_two(), fills=(bad_fill,))).context["field"] == \
        "fills[0].commission"
    empty = NavFill("XYZ", D(0), D(103), D("0.35"), {"A": D(0)})
    assert _error(replace(day_two(), fills=(empty,))).context["field"] == "fills[0].quantity"
    naive = replace(day_two(), as_of=dt.datetime(2026, 12, 4, 21))  # noqa: DTZ001
    assert _error(naive).context["field"] == "as_of"


# --- the property ------------------------------------------------------------------------------

SYMBOLS = ("AAA", "BBB", "CCC")
SLEEVES = ("s1", "s2", "s3")
prices = st.integers(1, 100_000).map(lambda c: D(c) / 100)
quantities = st.integers(-500, 500).map(D)


@st.composite
def days(draw: st.DrawFn) -> tuple[NavInputs, D]:
    """A random consistent day, and what no sleeve owned (its market move is unattributed)."""
    prev_sleeves = {(s, sym): draw(quantities) for s in SLEEVES for sym in SYMBOLS
                    if draw(st.booleans())}
    unowned = {sym: draw(quantities) for sym in SYMBOLS}
    prev_marks = {sym: draw(prices) for sym in SYMBOLS}
    marks = {sym: draw(prices) for sym in SYMBOLS}
    fills = []
    for _ in range(draw(st.integers(0, 5))):
        shares = {s: draw(quantities) for s in draw(st.sets(st.sampled_from(SLEEVES),
                                                            min_size=1))}
        if not any(shares.values()):
            continue  # a fill of 0 that moves nothing is refused (tested above)
        fills.append(NavFill(draw(st.sampled_from(SYMBOLS)), sum(shares.values(), D(0)),
                             draw(prices), draw(st.integers(0, 999).map(lambda c: D(c) / 100)),
                             shares))
    sleeves = dict(prev_sleeves)
    for fill in fills:
        for s, q in fill.sleeves.items():
            sleeves[(s, fill.symbol)] = sleeves.get((s, fill.symbol), D(0)) + q
    positions = {sym: unowned[sym] + sum((q for (_, y), q in sleeves.items() if y == sym), D(0))
                 for sym in SYMBOLS}
    prev_positions = {sym: unowned[sym] + sum((q for (_, y), q in prev_sleeves.items()
                                               if y == sym), D(0)) for sym in SYMBOLS}
    prev_cash = D(draw(st.integers(-10**8, 10**8))) / 100
    flows = tuple(D(f) / 100 for f in draw(st.lists(st.integers(-10**7, 10**7), max_size=3)))
    inputs = NavInputs(
        fund_id="prop", session=dt.date(2026, 12, 4), as_of=CLOSE_2,
        previous_nav=prev_cash + sum((prev_positions[s] * prev_marks[s] for s in SYMBOLS), D(0)),
        cash=prev_cash + fills_net_cash(fills) + sum(flows, D(0)),
        positions=positions, marks=marks, previous_marks=prev_marks,
        sleeve_positions=sleeves, previous_sleeve_positions=prev_sleeves,
        fills=tuple(fills), flows=flows)
    unowned_move = sum((unowned[s] * (marks[s] - prev_marks[s]) for s in SYMBOLS), D(0))
    return inputs, unowned_move


@settings(max_examples=150, deadline=None)
@given(days())
def test_nav_change_is_pnl_plus_flows_and_attribution_sums_exactly(
        day: tuple[NavInputs, D]) -> None:
    inputs, unowned_move = day
    nav = strike_nav(inputs)
    assert nav.nav - nav.previous_nav == nav.pnl + nav.flows
    assert sum(nav.pnl_by_strategy.values(), D(0)) + nav.unattributed == nav.pnl
    assert nav.nav == nav.cash + nav.positions_value
    # every traded share is owned and the cash is the fills' and flows': only the unowned
    # shares' market move is left unattributed, to the cent and below
    assert nav.unattributed == unowned_move
    assert nav.fees == sum((f.commission for f in inputs.fills), D(0))
