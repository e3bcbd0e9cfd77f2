"""The ``capabilities`` gate: an order the OMS's broker does not declare it supports (order
type, time in force, asset class; replace) is refused before it is sent, with ``UNSUPPORTED``
naming the field and the value. A broker that declares nothing keeps today's behaviour: the
order goes to the venue, which answers for itself."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING, ClassVar

from mts1b_foundation import (
    CryptoPair,
    Equity,
    Order,
    OrderType,
    ReplaceRequest,
    ReplyCode,
    TimeInForce,
)
from mts1b_foundation.plugins import Capabilities
from mts1b_oms.gates import GateContext, GatePipeline, Replacing
from mts1b_oms.testing import RecordingBroker, make_fund, make_registry

if TYPE_CHECKING:
    from conftest import MakeOms

D = Decimal
NOW = dt.datetime(2026, 3, 2, 15, tzinfo=dt.UTC)
PLAIN = Capabilities(order_types=frozenset({OrderType.MARKET, OrderType.LIMIT}),
                     time_in_force=frozenset({TimeInForce.DAY, TimeInForce.GTC}),
                     asset_classes=frozenset({"equity"}),  # type: ignore[arg-type]
                     supports_replace=False)


class PlainBroker(RecordingBroker):
    """The recording broker declaring market and limit orders, DAY and GTC, equities, and no
    replace."""

    capabilities: ClassVar[Capabilities] = PLAIN


def _order(key: str, **terms: object) -> Order:
    fields: dict[str, object] = {"instrument": Equity(symbol="AAPL"), **terms}
    return Order(idempotency_key=key, fund_id="f1", strategy_id="s1", side="buy",
                 quantity=D(10), **fields)  # type: ignore[arg-type]


def _denial(order: Order, caps: Capabilities | None, *,
            replacing: Replacing | None = None) -> tuple[object, ...] | None:
    ctx = GateContext(fund=make_fund(), now=NOW, nav=D(1_000_000), prices={"AAPL": D(100)},
                      instruments=make_registry(), capabilities=caps, replacing=replacing)
    pipeline = GatePipeline()
    decision = (pipeline.evaluate(order, ctx) if replacing is None
                else pipeline.evaluate_replace(order, ctx))
    d = decision.denial
    return None if d is None else (d.code, d.gate, d.context.get("field"),
                                   d.context.get("value"), d.message)


def test_each_undeclared_field_is_named_with_its_value() -> None:
    stop = _denial(_order("k1", order_type=OrderType.STOP, stop_price=D(99)), PLAIN)
    assert stop == (ReplyCode.UNSUPPORTED, "capabilities", "order_type", "stop",
                    "order_type stop is not supported by broker paper: it declares limit, "
                    "market")
    ioc = _denial(_order("k2", time_in_force=TimeInForce.IOC), PLAIN)
    assert ioc is not None and ioc[:4] == (ReplyCode.UNSUPPORTED, "capabilities",
                                           "time_in_force", "IOC")
    assert "declares DAY, GTC" in str(ioc[4])
    btc = CryptoPair(symbol="BTC-USD", base="BTC", quote="USD")
    crypto = _denial(_order("k3", instrument=btc), PLAIN)
    assert crypto is not None and crypto[:4] == (ReplyCode.UNSUPPORTED, "capabilities",
                                                 "instrument.asset_class", "crypto")


def test_declared_orders_and_undeclared_brokers_pass() -> None:
    assert _denial(_order("k1", order_type=OrderType.LIMIT, limit_price=D(99),
                          time_in_force=TimeInForce.GTC), PLAIN) is None
    stop = _order("k2", order_type=OrderType.STOP, stop_price=D(99),
                  time_in_force=TimeInForce.IOC)
    assert _denial(stop, None) is None  # no manifest: nothing checked here


def test_a_replace_needs_the_broker_to_declare_replace() -> None:
    order = _order("k1", order_type=OrderType.LIMIT, limit_price=D(99))
    replacing = Replacing(open_quantity=D(10), filled_quantity=D(0))
    denied = _denial(order, PLAIN, replacing=replacing)
    assert denied is not None and denied[:4] == (ReplyCode.UNSUPPORTED, "capabilities",
                                                 "replace", "true")
    with_replace = PLAIN.model_copy(update={"supports_replace": True})
    assert _denial(order, with_replace, replacing=replacing) is None


async def test_the_oms_refuses_before_sending(make: MakeOms) -> None:
    broker = PlainBroker()
    oms = await make(broker)
    assert oms.capabilities == PLAIN
    refused = await oms.submit(_order("stop-1", order_type=OrderType.STOP, stop_price=D(99)))
    assert not refused.ok and refused.code is ReplyCode.UNSUPPORTED
    assert refused.denial is not None and refused.denial.gate == "capabilities"
    assert refused.denial.context["field"] == "order_type"
    assert refused.denial.context["value"] == "stop"
    assert "order_type stop is not supported by broker paper" in (refused.message or "")
    assert broker.submissions == []  # never sent
    sent = await oms.submit(_order("lim-1", order_type=OrderType.LIMIT, limit_price=D(99)))
    assert sent.ok, sent.message
    assert len(broker.submissions) == 1
    assert sent.order_id is not None
    oid = sent.order_id
    replace = await oms.replace(ReplaceRequest(order_id=oid, limit_price=D(98)))
    assert not replace.ok and replace.code is ReplyCode.UNSUPPORTED
    assert replace.denial is not None and replace.denial.context["field"] == "replace"
    assert broker.replace_requests == []


async def test_a_broker_without_a_manifest_gets_the_order(make: MakeOms) -> None:
    broker = RecordingBroker()
    oms = await make(broker)
    assert oms.capabilities is None
    reply = await oms.submit(_order("stop-1", order_type=OrderType.STOP, stop_price=D(99),
                                    time_in_force=TimeInForce.IOC))
    assert reply.ok, reply.message
    assert len(broker.submissions) == 1
