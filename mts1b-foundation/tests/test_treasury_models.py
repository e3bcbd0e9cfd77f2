"""The treasury's wire models: FundNav adds up exactly, ConfigureFund signs what it carries."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from decimal import Decimal
from typing import Any

import pytest
from mts1b_foundation import (
    FUND_COMMAND_CONTEXT,
    ConfigureFund,
    FundConfig,
    FundNav,
    ValidationFailed,
    model_for_subject,
    parse_message,
)

T0 = dt.datetime(2026, 12, 4, 21, 0, tzinfo=dt.UTC)
H = "0" * 64


def nav(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "fund_id": "f1", "session": "2026-12-04", "as_of": T0, "nav": "1010", "cash": "10",
        "positions_value": "1000", "previous_nav": "1000", "pnl": "5", "flows": "5",
        "pnl_by_strategy": {"mom": "3"}, "unattributed": "2", "inputs_sha256": H,
        "outputs_sha256": H}
    return base | kw


def test_a_nav_that_adds_up_reads() -> None:
    parsed = parse_message(FundNav, nav())
    assert parsed.nav == Decimal(1010)
    assert model_for_subject("mts.v1.treasury.nav.struck") is FundNav


@pytest.mark.parametrize(("change", "words"), [
    ({"cash": "11"}, "differs from cash 11 + positions_value 1000"),
    ({"pnl": "6", "pnl_by_strategy": {"mom": "4"}}, "differs from previous_nav 1000 + pnl 6"),
    ({"unattributed": "1"}, "sum to 4, not pnl 5"),
])
def test_a_nav_that_does_not_add_up_is_refused(change: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationFailed, match=re.escape(words)):
        parse_message(FundNav, nav(**change))


def test_configure_fund_signs_the_configuration_it_carries() -> None:
    config = FundConfig(fund_id="f1", name="One", target_nav_usd=Decimal(100), broker="paper",
                        broker_account_id="a1")
    command = ConfigureFund(config=config, reason="more room", key_id="cro",
                            nonce="ab" * 16, timestamp=T0, signature="A" * 86 + "==")
    digest = hashlib.sha256(config.to_json()).hexdigest()
    assert command.signing_bytes() == (
        f"{FUND_COMMAND_CONTEXT}\ncro\n{'ab' * 16}\n2026-12-04T21:00:00.000000Z\nmore room\n"
        f"{digest}").encode()
    bigger = command.model_copy(update={"config": config.model_copy(
        update={"target_nav_usd": Decimal(200)})})
    assert bigger.signing_bytes() != command.signing_bytes()
    assert model_for_subject("mts.v1.treasury.commands.configure") is ConfigureFund


def test_strategy_command_signs_its_action_target_and_evidence() -> None:
    from mts1b_foundation import STRATEGY_COMMAND_CONTEXT, StrategyCommand

    base: dict[str, Any] = {"action": "promote", "strategy": "momentum_v3", "to_state": "live",
                            "evidence": {"sessions": 60, "mean_ic": 0.03}, "reason": "go",
                            "key_id": "cro", "nonce": "ab" * 16, "timestamp": T0,
                            "signature": "A" * 86 + "=="}
    command = parse_message(StrategyCommand, base)
    lines = command.signing_bytes().decode().split("\n")
    assert lines[:4] == [STRATEGY_COMMAND_CONTEXT, "promote", "momentum_v3", "live"]
    paper = parse_message(StrategyCommand, {**base, "to_state": "paper"})
    assert paper.signing_bytes() != command.signing_bytes()
    more = parse_message(StrategyCommand, {**base, "evidence": {"sessions": 61}})
    assert more.signing_bytes() != command.signing_bytes()
    with pytest.raises(ValidationFailed, match="to_state is given exactly when"):
        parse_message(StrategyCommand, {**base, "action": "enable"})
    with pytest.raises(ValidationFailed, match="unknown fields"):
        parse_message(StrategyCommand, {**base, "evidence": {"sharpe": 3}})
    assert model_for_subject("mts.v1.research.commands.strategy") is StrategyCommand
