"""The kit reads a broker's ``Capabilities``: a check needing what the broker does not declare
is skipped, saying what is missing; ``CHECK_NEEDS`` says what each check really sends.

The paper and IBKR brokers declare manifests; the IBKR manifest is held to what its mapping
translates (an undeclared asset class has no contract).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal

import pytest
from mts1b_brokers.conformance import (
    CHECK_NEEDS,
    CHECKS,
    FAULT_CHECKS,
    BrokerHarness,
    CheckNeeds,
    ConformanceSkip,
    HarnessFactory,
    ibkr_harness,
    missing_capabilities,
    paper_harness,
    run_check,
    run_conformance,
)
from mts1b_brokers.paper import PaperClient
from mts1b_foundation import (
    AssetClass,
    BrokerRejected,
    ConnectionState,
    CryptoPair,
    Equity,
    Order,
    OrderType,
    Side,
    TimeInForce,
)
from mts1b_foundation.plugins import Capabilities, capabilities_of


def _caps(*order_types: OrderType, tifs: tuple[TimeInForce, ...] = (TimeInForce.GTC,),
          asset_classes: tuple[str, ...] = ("equity",), replace: bool = True) -> Capabilities:
    return Capabilities(order_types=frozenset(order_types), time_in_force=frozenset(tifs),
                        asset_classes=frozenset(asset_classes),
                        supports_replace=replace)


def _declaring(caps: Capabilities | None,
               base: HarnessFactory | None = None) -> tuple[HarnessFactory, list[str]]:
    """Paper harnesses whose broker declares ``caps`` (``None``: no manifest); the list
    records each harness's cleanup and whether its broker was ever connected."""
    make = base or paper_harness()
    events: list[str] = []

    async def factory() -> BrokerHarness:
        h = await make()
        h.broker.capabilities = caps  # type: ignore[attr-defined]

        async def cleanup() -> None:
            events.append(f"cleanup connected={h.broker.connection_state.value}")

        h.cleanup = cleanup
        return h

    return factory, events


def test_the_table_names_every_check_of_the_kit() -> None:
    assert set(CHECK_NEEDS) == set(CHECKS)


def _recording(seen: dict[str, set[object]], base: HarnessFactory) -> HarnessFactory:

    async def factory() -> BrokerHarness:
        h = await base()
        broker = h.broker
        real_submit, real_replace = broker.submit, broker.replace

        async def submit(order: Order):  # type: ignore[no-untyped-def]
            seen["types"].add(order.order_type)
            seen["tifs"].add(order.time_in_force)
            return await real_submit(order)

        async def replace(order_id: str, **changes: Decimal | None):  # type: ignore[no-untyped-def]
            seen["replace"].add(True)
            return await real_replace(order_id, **changes)

        broker.submit = submit  # type: ignore[method-assign]
        broker.replace = replace  # type: ignore[method-assign]
        return h

    return factory


@pytest.mark.parametrize("check", sorted(CHECKS))
async def test_each_check_sends_what_the_table_says(check: str) -> None:
    """Run against a recording broker (paper; IBKR against FakeTws for the fault checks): the
    order types, times in force and replaces the check sends are exactly its row of
    CHECK_NEEDS."""
    if check in FAULT_CHECKS:
        pytest.importorskip("ib_async")
        base = ibkr_harness()
    else:
        base = paper_harness()
    seen: dict[str, set[object]] = {"types": set(), "tifs": set(), "replace": set()}
    await run_check(check, _recording(seen, base))
    assert CheckNeeds(order_types=frozenset(seen["types"]),  # type: ignore[arg-type]
                      time_in_force=frozenset(seen["tifs"]),  # type: ignore[arg-type]
                      replace=bool(seen["replace"])) == CHECK_NEEDS[check]


async def test_checks_the_capabilities_rule_out_are_skipped_with_the_reason() -> None:
    factory, events = _declaring(_caps(OrderType.MARKET, OrderType.LIMIT, replace=False))
    results = await run_conformance(factory, ["replace", "submit_ack"])
    assert results == {
        "replace": "skipped: the capabilities of paper lack replace, which replace needs",
        "submit_ack": None}
    # the skipped check never connected the broker, and its harness was cleaned up
    assert events[0] == "cleanup connected=disconnected"

    market_only, _ = _declaring(_caps(OrderType.MARKET, tifs=(TimeInForce.DAY,)))
    with pytest.raises(ConformanceSkip, match=r"lack order type limit, time in force GTC, "
                                              r"which reject needs"):
        await run_check("reject", market_only)


async def test_the_harness_instrument_must_be_a_declared_asset_class() -> None:
    factory, _ = _declaring(_caps(OrderType.MARKET, OrderType.LIMIT, asset_classes=("crypto",)))
    results = await run_conformance(factory, ["partial_fill", "order_status"])
    assert results == {
        name: f"skipped: the capabilities of paper lack asset class equity, which {name} needs"
        for name in ("order_status", "partial_fill")}


async def test_a_broker_without_a_manifest_runs_every_check() -> None:
    factory, _ = _declaring(None)
    h = await factory()
    assert capabilities_of(h.broker) is None
    assert all(missing_capabilities(check, h) is None for check in CHECKS)
    assert await run_conformance(factory, ["replace"]) == {"replace": None}


def test_the_paper_broker_declares_what_it_trades() -> None:
    caps = capabilities_of(PaperClient)
    assert caps is not None and caps == capabilities_of(PaperClient())
    assert caps.order_types == frozenset(OrderType)
    assert TimeInForce.OPG not in caps.time_in_force
    assert caps.supports(order_type=OrderType.STOP_LIMIT, time_in_force=TimeInForce.FOK,
                         asset_class=AssetClass.CRYPTO)
    assert caps.supports_replace and caps.streaming


async def test_the_paper_broker_refuses_the_time_in_force_it_does_not_declare() -> None:
    broker = PaperClient(accounts={"a": Decimal(1000)})
    await broker.connect()
    undeclared = set(TimeInForce) - capabilities_of(broker).time_in_force  # type: ignore[union-attr]
    assert undeclared == {TimeInForce.OPG}
    order = Order(order_id="o-1", idempotency_key="o-1", fund_id="a", account_id="a",
                  strategy_id="s", instrument=Equity(symbol="X"), side=Side.BUY,
                  quantity=Decimal(1), time_in_force=TimeInForce.OPG)
    with pytest.raises(BrokerRejected, match="OPG"):
        await broker.submit(order)
    await broker.close()
    assert broker.connection_state is ConnectionState.DISCONNECTED


def test_the_ibkr_manifest_is_what_its_mapping_translates() -> None:
    pytest.importorskip("ib_async")
    from mts1b_brokers.ibkr import IbkrBroker
    from mts1b_brokers.ibkr.mapping import UnsupportedOrder, ib_order, to_contract
    from mts1b_foundation import ETF, Future, FxPair, Option, OptionRight

    caps = capabilities_of(IbkrBroker)
    assert caps is not None and caps.supports_replace and caps.streaming
    base = Order(order_id="o-1", idempotency_key="o-1", fund_id="f", account_id="DU1",
                 strategy_id="s", instrument=Equity(symbol="X"), side=Side.BUY,
                 quantity=Decimal(1), order_type=OrderType.LIMIT, limit_price=Decimal(1))
    for order_type in caps.order_types:
        for tif in caps.time_in_force:
            ib = ib_order(base.model_copy(update={"order_type": order_type,
                                                  "time_in_force": tif}), "DU1", 1)
            assert ib.orderType and ib.tif
    contracts: dict[str, Callable[[], object]] = {
        "equity": lambda: to_contract(Equity(symbol="X")),
        "etf": lambda: to_contract(ETF(symbol="SPY")),
        "fx": lambda: to_contract(FxPair(symbol="EURUSD", base="EUR", quote="USD")),
        "option": lambda: to_contract(Option(
            symbol="X250117C100", underlying="X", expiry=dt.date(2025, 1, 17),
            strike=Decimal(100), right=OptionRight.CALL)),
        "future": lambda: to_contract(Future(symbol="ESH5", root="ES",
                                             expiry=dt.date(2025, 3, 21),
                                             multiplier=Decimal(50))),
    }
    assert set(contracts) == caps.asset_classes
    for asset_class, build in contracts.items():
        assert asset_class in caps.asset_classes
        assert build() is not None
    assert "crypto" not in caps.asset_classes
    with pytest.raises(UnsupportedOrder, match="crypto"):
        to_contract(CryptoPair(symbol="BTC-USD", base="BTC", quote="USD"))
