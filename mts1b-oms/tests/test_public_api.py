"""The exported surface of mts1b_oms is deliberate: this test fails when it changes."""

from __future__ import annotations

import mts1b_oms


def test_public_names() -> None:
    assert sorted(mts1b_oms.__all__) == sorted([
        "DEFAULT_CANCEL_RATE", "DEFAULT_GATES", "DEFAULT_IDEMPOTENCY_WINDOW", "TRANSITIONS",
        "CancelOutcome", "Decision", "FundBook", "FundLock", "FundMemory", "GateContext",
        "GatePipeline", "InMemoryStore", "KillSwitch", "Mismatch", "Oms", "OrderState",
        "OrderStore", "Outcome", "OutboxItem", "OutboxRelay", "Pacer", "PositionState",
        "RebalanceError", "Rule", "StaleState", "Store", "StoreError", "Sweep", "SweepOrder",
        "TradingStates", "apply_event", "apply_fill", "make_change", "make_command",
        "new_order_state", "rebalance", "reconcile", "replay",
        "CommandVerifier", "KeyRegistry", "Role", "SigningKey"])
    for name in mts1b_oms.__all__:
        assert hasattr(mts1b_oms, name), name


def test_cli_entry_point_registered() -> None:
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="mts1b.commands")}
    assert eps.get("mts1b-oms") == "mts1b_oms.cli:app"
