"""Which changes loosen a fund's limits (and so need the risk role)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from mts1b_foundation import UNLIMITED, FundConfig, RiskEnvelope, TradingState
from mts1b_treasury.limits import loosened_limits


def fund(nav: int = 1_000_000, **risk: Any) -> FundConfig:
    return FundConfig(fund_id="f1", name="One", target_nav_usd=Decimal(nav), broker="paper",
                      broker_account_id="a1", risk=RiskEnvelope(**risk))


def test_the_same_configuration_loosens_nothing() -> None:
    assert loosened_limits(fund(), fund()) == []


@pytest.mark.parametrize(("old", "new", "names"), [
    ({"max_order_quantity": Decimal(100)}, {"max_order_quantity": Decimal(101)},
     ["max_order_quantity"]),
    ({"max_order_quantity": Decimal(100)}, {"max_order_quantity": UNLIMITED},
     ["max_order_quantity"]),
    ({"price_collar_pct": Decimal("0.05")}, {"price_collar_pct": Decimal("0.06")},
     ["price_collar_pct"]),
    ({"restricted_symbols": ["GME", "AMC"]}, {"restricted_symbols": ["GME"]},
     ["restricted_symbols"]),
    ({"allowed_brokers": ["paper"]}, {"allowed_brokers": ["paper", "ibkr"]},
     ["allowed_brokers"]),
    ({"allowed_brokers": ["paper"]}, {"allowed_brokers": []}, ["allowed_brokers"]),
    ({"duplicate_window_seconds": Decimal(5)}, {"duplicate_window_seconds": Decimal(1)},
     ["duplicate_window_seconds"]),
    ({"max_drawdown_pct": Decimal("0.1")},
     {"max_drawdown_pct": Decimal("0.1"), "drawdown_action": TradingState.REDUCING},
     ["drawdown_action"]),
    ({"max_messages_per_window": 10, "message_window_seconds": Decimal(1)},
     {"max_messages_per_window": 10, "message_window_seconds": Decimal("0.5")},
     ["message_window_seconds"]),
])
def test_each_loosening_is_named(old: dict[str, Any], new: dict[str, Any],
                                 names: list[str]) -> None:
    assert loosened_limits(fund(**old), fund(**new)) == names
    assert loosened_limits(fund(**new), fund(**old)) == []  # the way back tightens


def test_a_larger_target_nav_raises_the_relative_order_notional_limit() -> None:
    assert loosened_limits(fund(1_000_000), fund(2_000_000)) == ["max_order_notional",
                                                                 "target_nav_usd"]
    # an absolute notional limit does not move with the NAV
    assert loosened_limits(fund(1_000_000, max_order_notional=Decimal(5000)),
                           fund(2_000_000, max_order_notional=Decimal(5000))) == [
        "target_nav_usd"]
