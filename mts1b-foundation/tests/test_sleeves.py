"""Sleeve ownership on the wire (issue #17): SleeveAllocation, Order.sleeves, the fill split."""

from __future__ import annotations

import datetime as dt
import json
import random
import re
from decimal import Decimal

import pytest
from mts1b_foundation import (
    MULTI_SLEEVE_STRATEGY,
    Equity,
    Order,
    ReplaceRequest,
    Side,
    SleeveAllocation,
    TargetPortfolio,
    ValidationFailed,
    parse_message,
)
from mts1b_foundation.sleeves import split_commission, split_fill

D = Decimal
AS_OF = dt.datetime(2026, 12, 4, 21, 0, tzinfo=dt.UTC)


def order(quantity: str, side: Side, sleeves: dict[str, str]) -> Order:
    return Order(idempotency_key="k", fund_id="f1", strategy_id=MULTI_SLEEVE_STRATEGY,
                 instrument=Equity(symbol="AAPL"), side=side, quantity=D(quantity),
                 sleeves={k: D(v) for k, v in sleeves.items()})


def refused(model: type, data: dict[str, object]) -> dict[str, object]:
    with pytest.raises(ValidationFailed) as info:
        parse_message(model, data)
    error: dict[str, object] = info.value.context["errors"][0]
    return error


def test_a_cross_fills_each_sleeve_its_share_at_the_funds_price() -> None:
    """A buys 100, B sells 60: the fund buys 40; the 40 filling in three pieces credits A
    +100 and B -60 exactly, each piece's credits summing to the piece."""
    o = order("40", Side.BUY, {"A": "100", "B": "-60"})
    credited: dict[str, Decimal] = {}
    steps = []
    for q in ("10", "3", "27"):
        credits = o.sleeve_credits(D(q), credited)
        assert sum(credits.values()) == D(q)
        steps.append(credits)
        for s, c in credits.items():
            credited[s] = credited.get(s, D(0)) + c
    assert steps == [{"A": D(25), "B": D(-15)}, {"A": D(7), "B": D(-4)},
                     {"A": D(68), "B": D(-41)}]
    assert credited == {"A": D(100), "B": D(-60)}


def test_the_split_is_exact_and_completes_every_share_on_random_orders() -> None:
    rng = random.Random(17)
    for _ in range(300):
        n = rng.randint(1, 6)
        scale = rng.choice([0, 0, 2, 8])
        unit = D(1).scaleb(-scale)
        shares = {f"s{i}": D(rng.randint(-10**6, 10**6) or 1) * unit for i in range(n)}
        net = sum(shares.values())
        if net == 0:
            continue
        quantity = abs(net)
        credited: dict[str, Decimal] = {}
        left = quantity
        while left > 0:
            piece = min(left, D(rng.randint(1, 10**5)) * unit)
            credits = split_fill(shares, quantity, piece, credited)
            assert sum(credits.values()) == (piece if net > 0 else -piece)
            for s, c in credits.items():
                credited[s] = credited.get(s, D(0)) + c
            left -= piece
        assert {s: c for s, c in credited.items() if c} == shares


def test_an_overfill_goes_to_the_largest_sleeve() -> None:
    o = order("10", Side.SELL, {"A": "-4", "B": "-6"})
    assert o.sleeve_credits(D(12)) == {"A": D(-4), "B": D(-8)}
    assert o.sleeve_credits(D(1), {"A": D(-4), "B": D(-6)}) == {"B": D(-1)}


def test_an_order_without_sleeves_credits_its_strategy() -> None:
    o = Order(idempotency_key="k", fund_id="f1", strategy_id="s1",
              instrument=Equity(symbol="AAPL"), side=Side.SELL, quantity=D(5))
    assert o.sleeves == {} and o.sleeve_credits(D(2)) == {"s1": D(-2)}


def test_commission_splits_pro_rata_and_sums_exactly() -> None:
    parts = split_commission({"A": D(100), "B": D(-60), "C": D(7)}, D("1.00"))
    assert sum(parts.values()) == D("1.00")
    assert parts == {"A": D("1.00") - D("0.359281437126") - D("0.041916167665"),
                     "B": D("0.359281437126"), "C": D("0.041916167665")}


@pytest.mark.parametrize(("sleeves", "reason"), [
    ({"A": "100", "B": "-50"}, "the sleeves' shares sum to 50, not the order's signed quantity 40"),
    ({"A": "40", "B": "0"}, "sleeves['B'] is 0"),
    ({"": "40"}, "at least 1 character"),
    ({"A": "40.0000000000001"}, "at most 12 digits after the decimal point"),
    ({"A": "999999999999999", "B": "-999999999999959", "C": "0.000001", "D": "-0.000001"},
     "leaves the numeric domain"),
])
def test_order_sleeves_are_checked_and_named(sleeves: dict[str, str], reason: str) -> None:
    base = json.loads(order("40", Side.BUY, {"A": "40"}).to_json())
    error = refused(Order, {**base, "sleeves": sleeves})
    assert str(error["field"]).startswith("sleeves")
    assert reason in str(error["reason"])


def test_a_sell_is_served_by_negative_shares() -> None:
    assert order("40", Side.SELL, {"A": "-50", "B": "10"}).signed_quantity == D(-40)
    base = json.loads(order("40", Side.SELL, {"A": "-40"}).to_json())
    assert "signed quantity -40" in str(refused(Order, {**base, "sleeves": {"A": "40"}})["reason"])


def test_allocation_totals_and_validation() -> None:
    a = SleeveAllocation(fund_id="f1", as_of=AS_OF,
                         sleeves={"A": {"AAPL": D(100), "MSFT": D("2.5")},
                                  "B": {"AAPL": D(-60)}, "C": {}})
    assert a.totals() == {"AAPL": D(40), "MSFT": D("2.5")}
    assert a.total("AAPL") == D(40) and a.total("IBM") == D(0)
    assert a.symbols() == {"AAPL", "MSFT"}
    assert parse_message(SleeveAllocation, a.to_json()) == a
    base = json.loads(a.to_json())
    assert refused(SleeveAllocation, {**base, "sleeves": {}})["field"] == "sleeves"
    assert refused(SleeveAllocation, {**base, "sleeves": {"": {}}})["value"] == ""
    bad = refused(SleeveAllocation, {**base, "sleeves": {"A": {"AAPL": "1e99"}}})
    assert bad["field"] == "sleeves.A.AAPL" and bad["value"] == "1e99"
    bad = refused(SleeveAllocation, {**base, "sleeves": {"A": {"../x": "1"}}})
    assert str(bad["field"]).startswith("sleeves.A") and bad["value"] == "../x"
    bad = refused(SleeveAllocation, {**base, "sleeves": {"A": {"X": "999999999999999"},
                                                         "B": {"X": "1"}}})
    assert "the fund's total of 'X' over all sleeves (1000000000000000)" in str(bad["reason"])


def test_target_carries_an_allocation_of_its_own_fund() -> None:
    a = SleeveAllocation(fund_id="f1", as_of=AS_OF, sleeves={"A": {"AAPL": D(1)}})
    t = TargetPortfolio(fund_id="f1", as_of=AS_OF, weights={"AAPL": D("0.1")}, allocation=a)
    assert parse_message(TargetPortfolio, t.to_json()) == t
    base = json.loads(t.to_json())
    error = refused(TargetPortfolio, {**base, "fund_id": "f2"})
    assert error["field"] == "allocation"
    assert "allocation.fund_id 'f1' differs from fund_id 'f2'" in str(error["reason"])


def test_version_2_targets_orders_and_replaces_still_read() -> None:
    t = parse_message(TargetPortfolio, {"schema_version": 2, "fund_id": "f1",
                                        "as_of": "2026-12-04T21:00:00Z",
                                        "weights": {"AAPL": "0.5"}})
    assert t.schema_version == 3 and t.allocation is None
    o2 = {**json.loads(order("5", Side.BUY, {"A": "5"}).to_json()), "schema_version": 2}
    del o2["sleeves"]
    assert parse_message(Order, o2).sleeves == {}
    with pytest.raises(ValidationFailed, match=re.escape("sleeves")):
        parse_message(Order, {**o2, "sleeves": {"A": "5"}, "quantity": "4"})
    r = parse_message(ReplaceRequest, {"schema_version": 2, "order_id": "o1", "quantity": "3"})
    assert r.schema_version == 3 and r.sleeves is None


def test_replace_sleeves_come_with_a_quantity() -> None:
    error = refused(ReplaceRequest, {"order_id": "o1", "limit_price": "1", "sleeves": {"A": "3"}})
    assert "sleeves change only with quantity" in str(error["reason"])
