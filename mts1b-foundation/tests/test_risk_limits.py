"""RiskEnvelope version 3: finite default limits, "unlimited" the only way to lift one, and
version 1/2 envelopes read with each null limit as the version-3 default (issue #15)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from mts1b_foundation import (
    UNLIMITED,
    FundConfig,
    OrderStatusQuery,
    RiskEnvelope,
    ValidationFailed,
    model_for_subject,
    parse_message,
)

LIMITS = ("price_collar_pct", "max_order_quantity", "max_order_notional", "max_adv_pct",
          "max_position_pct_nav", "max_gross_exposure", "max_net_exposure", "max_drawdown_pct",
          "max_messages_per_window", "max_repeated_executions")


def test_an_empty_envelope_has_the_finite_sanity_limits() -> None:
    env = parse_message(RiskEnvelope, b"{}")
    assert env.max_order_quantity == Decimal(1_000_000)
    assert env.max_position_pct_nav == Decimal("0.25")
    assert env.price_collar_pct == Decimal("0.05")
    assert env.max_order_notional is None  # the relative default ...
    assert env.order_notional_limit(Decimal(2_000_000)) == Decimal(200_000)  # ... 10 % of NAV
    assert env.order_notional_limit(Decimal("1234.5")) == Decimal("123.45")


def test_the_effective_limits_of_a_default_fund() -> None:
    fund = FundConfig(fund_id="f", name="F", target_nav_usd=Decimal(1_000_000), broker="paper",
                      broker_account_id="a")
    assert fund.effective_limits() == {
        "price_collar_pct": "0.05", "max_order_quantity": "1000000",
        "max_order_notional": "100000.00 (10% of target NAV 1000000)", "max_adv_pct": UNLIMITED,
        "max_position_pct_nav": "0.25", "max_gross_exposure": UNLIMITED,
        "max_net_exposure": UNLIMITED, "max_drawdown_pct": UNLIMITED,
        "max_messages_per_window": UNLIMITED, "max_repeated_executions": UNLIMITED}


@pytest.mark.parametrize("name", LIMITS)
def test_unlimited_lifts_a_limit_and_null_does_not(name: str) -> None:
    lifted = parse_message(RiskEnvelope, {name: "unlimited"})
    assert getattr(lifted, name) == UNLIMITED
    assert json.loads(lifted.to_json())[name] == "unlimited"
    if name == "max_order_notional":  # null is its (finite) default, never "off"
        env = parse_message(RiskEnvelope, {name: None})
        assert env.order_notional_limit(Decimal(10)) == Decimal("1.0")
        assert lifted.order_notional_limit(Decimal(10)) is None
        return
    with pytest.raises(ValidationFailed, match='null does not lift a limit: write "unlimited"'):
        parse_message(RiskEnvelope, {name: None})


@pytest.mark.parametrize("value", ["0", "-1", "Unlimited", "none", "", "inf", "1e999999", True,
                                   1.5, [], "١٢٣"])
def test_a_limit_is_a_positive_number_or_the_word(value: object) -> None:
    with pytest.raises(ValidationFailed, match="max_order_quantity"):
        parse_message(RiskEnvelope, {"max_order_quantity": value})


@pytest.mark.parametrize("value", ["5", 0, -3, 2**63, True, 1.0, "unlimited "])
def test_a_count_limit_is_a_positive_integer_or_the_word(value: object) -> None:
    with pytest.raises(ValidationFailed, match="max_messages_per_window"):
        parse_message(RiskEnvelope, {"max_messages_per_window": value})
    assert parse_message(RiskEnvelope, {"max_messages_per_window": 7}).max_messages_per_window == 7


@pytest.mark.parametrize("version", [1, 2])
def test_an_old_null_limit_reads_as_the_new_default_never_unlimited(version: int) -> None:
    old = {"schema_version": version, **dict.fromkeys(LIMITS, None)}
    env = parse_message(RiskEnvelope, json.dumps(old))
    assert env.schema_version == 3
    assert env == RiskEnvelope()  # every null: the version-3 default
    assert env.max_order_quantity == Decimal(1_000_000)
    assert env.order_notional_limit(Decimal(1_000_000)) == Decimal(100_000)
    set_ones = parse_message(RiskEnvelope, {"schema_version": version,
                                            "max_order_quantity": "5", "max_adv_pct": "0.1"})
    assert (set_ones.max_order_quantity, set_ones.max_adv_pct) == (Decimal(5), Decimal("0.1"))
    fund = parse_message(FundConfig, {
        "schema_version": version, "fund_id": "f", "name": "F", "target_nav_usd": "500",
        "broker": "paper", "broker_account_id": "a", "risk": old})
    assert fund.schema_version == 3 and fund.risk == RiskEnvelope()


def test_a_version_3_envelope_round_trips_and_unrestricted_lifts_everything() -> None:
    env = RiskEnvelope(max_order_notional=Decimal(50_000), max_gross_exposure=Decimal(2),
                       max_messages_per_window=100)
    assert parse_message(RiskEnvelope, env.to_json()) == env
    free = RiskEnvelope.unrestricted()
    assert all(getattr(free, name) == UNLIMITED for name in LIMITS)
    assert free.order_notional_limit(Decimal(1)) is None
    assert parse_message(RiskEnvelope, free.to_json()) == free


def test_the_order_status_query_has_its_subject() -> None:
    assert model_for_subject("mts.v1.brokers.paper.order_status") is OrderStatusQuery
    q = parse_message(OrderStatusQuery, {"order_id": "ord-1"})
    assert (q.schema_version, q.account_id) == (1, None)
    with pytest.raises(ValidationFailed, match="order_id"):
        parse_message(OrderStatusQuery, {"order_id": "../x"})
