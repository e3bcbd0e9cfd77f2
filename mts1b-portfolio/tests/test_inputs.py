"""Bad input raises one ComposeInputError naming the field and the value."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import Any

import pytest
from mts1b_foundation import Equity, SleeveAllocation
from mts1b_portfolio import ComposeInputError, Constraints, Sleeve, compose

AS_OF = dt.datetime(2026, 12, 4, 21, 0, tzinfo=dt.UTC)
PRICES = {"A": Decimal(10), "B": Decimal(20)}
GOOD = [Sleeve("s1", {"A": 0.5}, 0.5), Sleeve("s2", {"B": -0.2}, 0.4)]


def _call(**changes: Any) -> None:
    args: dict[str, Any] = {"sleeves": GOOD, "capital": Decimal(1_000), "constraints":
                            Constraints(), "current": {}, "prices": PRICES,
                            "instruments": None, "fund_id": "f", "as_of": AS_OF}
    args.update(changes)
    compose(**args)


CASES = [
    ({"sleeves": [Sleeve("s1", {"A": math.nan}, 0.5)]}, "sleeves['s1'].weights['A']"),
    ({"sleeves": [Sleeve("s1", {"A": math.inf}, 0.5)]}, "sleeves['s1'].weights['A']"),
    ({"sleeves": [Sleeve("s1", {"A": True}, 0.5)]}, "sleeves['s1'].weights['A']"),
    ({"sleeves": [Sleeve("s1", {"A": "0.5"}, 0.5)]}, "sleeves['s1'].weights['A']"),
    ({"sleeves": [Sleeve("s1", {"ZZZ": 0.1}, 0.5)]}, "prices['ZZZ']"),
    ({"sleeves": [Sleeve("s1", {"../etc": 0.1}, 0.5)]}, "sleeves['s1'].weights"),
    ({"sleeves": [Sleeve("s1", {"A": 0.1}, 0.7), Sleeve("s2", {"B": 0.1}, 0.4)]},
     "sleeves[*].share"),
    ({"sleeves": [Sleeve("s1", {"A": 0.1}, -0.1)]}, "sleeves[0].share"),
    ({"sleeves": [Sleeve("s1", {"A": 0.1}, math.nan)]}, "sleeves[0].share"),
    ({"sleeves": [Sleeve("s1", {}, 0.1), Sleeve("s1", {}, 0.1)]}, "sleeves[1].strategy_id"),
    ({"sleeves": [Sleeve("bad id", {}, 0.1)]}, "sleeves[0].strategy_id"),
    ({"sleeves": []}, "sleeves"),
    ({"sleeves": GOOD, "exclude": ["s1", "s2"]}, "sleeves"),
    ({"exclude": "s1"}, "exclude"),
    ({"capital": Decimal(-5)}, "capital"),
    ({"capital": Decimal("NaN")}, "capital"),
    ({"capital": 1000.0}, "capital"),
    ({"capital": Decimal("1E+16")}, "capital"),
    ({"current": {"A": Decimal("1E-13")}}, "current['A']"),
    ({"prices": {"A": Decimal(0), "B": Decimal(1)}}, "prices['A']"),
    ({"prices": {"A": 10.5, "B": Decimal(1)}}, "prices['A']"),
    ({"current": {"A": Decimal("NaN")}}, "current['A']"),
    ({"current": {"C": Decimal(3)}}, "prices['C']"),
    ({"current": [("A", 1)]}, "current"),
    ({"current": SleeveAllocation(fund_id="other", as_of=AS_OF, sleeves={"s1": {}})},
     "current.fund_id"),
    ({"instruments": {"A": Equity(symbol="B")}}, "instruments['A']"),
    ({"constraints": Constraints(max_gross=-1)}, "constraints.max_gross"),
    ({"constraints": Constraints(max_turnover=math.nan)}, "constraints.max_turnover"),
    ({"constraints": Constraints(min_net=0.5, max_net=0.1)}, "constraints.min_net"),
    ({"constraints": Constraints(max_weight_by_symbol={"A": -0.1})},
     "constraints.max_weight_by_symbol['A']"),
    ({"constraints": Constraints(min_trade_notional=Decimal(-1))},
     "constraints.min_trade_notional"),
    ({"constraints": {"max_gross": 1}}, "constraints"),
    ({"as_of": dt.datetime(2026, 12, 4)}, "as_of"),  # noqa: DTZ001 - the point of the case
    ({"fund_id": "a/b"}, "fund_id"),
    ({"instruments": {"A": Equity(symbol="A", lot_size=Decimal("1E-12"),
                                  min_quantity=Decimal("1E-12"))},
      "prices": {"A": Decimal("0.0001"), "B": Decimal(20)}}, "instruments['A'].lot_size"),
]


@pytest.mark.parametrize(("changes", "field"), CASES, ids=[c[1] for c in CASES])
def test_bad_input_names_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ComposeInputError) as caught:
        _call(**changes)
    assert caught.value.context["field"] == field
    assert caught.value.code == "PORTFOLIO.BAD_INPUT"
    assert str(caught.value).startswith(f"[PORTFOLIO.BAD_INPUT] {field}: ")


def test_good_input_composes() -> None:
    _call()
