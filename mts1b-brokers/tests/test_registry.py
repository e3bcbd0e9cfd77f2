from __future__ import annotations

from importlib.metadata import entry_points

import mts1b_brokers
import pytest
from mts1b_brokers import BrokerNotFound, PaperClient, available_brokers, get_broker
from mts1b_foundation import BrokerProtocol


def test_paper_is_registered_as_an_entry_point() -> None:
    names = {ep.name: ep.value for ep in entry_points(group="mts1b.brokers")}
    assert names["paper"] == "mts1b_brokers.paper:PaperClient"
    assert "paper" in available_brokers()


def test_get_broker_builds_with_config() -> None:
    broker = get_broker("paper", accounts={"core": "1000"}, seed=3)
    assert isinstance(broker, PaperClient) and isinstance(broker, BrokerProtocol)
    assert broker.name == "paper"


def test_unknown_broker_is_a_clear_error() -> None:
    with pytest.raises(BrokerNotFound, match=r"no broker named 'ibkr-typo'.*paper") as info:
        get_broker("ibkr-typo")
    assert info.value.code == "BROKERS.UNKNOWN_BROKER"


def test_public_surface_is_pinned() -> None:
    assert set(mts1b_brokers.__all__) == {
        "ENTRY_POINT_GROUP", "BpsCommission", "BpsSlippage", "BrokerConfigError", "BrokerNotFound",
        "BrokerService",
        "FixedLatency", "NoCommission", "NoSlippage", "PaperClient", "PerShareCommission",
        "RandomLatency", "RandomTickSlippage", "RejectReason", "RemoteBroker", "__version__",
        "available_brokers", "get_broker", "register_broker",
    }
    for name in mts1b_brokers.__all__:
        assert getattr(mts1b_brokers, name) is not None


def test_cli_group_is_registered() -> None:
    names = {ep.name: ep.value for ep in entry_points(group="mts1b.commands")}
    assert names["mts1b-brokers"] == "mts1b_brokers.cli:app"
