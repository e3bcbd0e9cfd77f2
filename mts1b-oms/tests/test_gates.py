"""Each pre-trade gate, allowed and denied exactly at its boundary (Decimal, no tolerance)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D  # noqa: N817
from typing import Any

import pytest
from mts1b_foundation import (
    DenialCode,
    Equity,
    FundConfig,
    Order,
    OrderType,
    Side,
    TradingState,
)
from mts1b_oms.gates import DEFAULT_GATES, FundMemory, GateContext, GatePipeline
from mts1b_oms.testing import make_fund as fund
from mts1b_oms.testing import make_registry
from mts1b_oms.tradingstate import TradingStates

NOW = dt.datetime(2026, 1, 5, 15, 0, tzinfo=dt.UTC)
_n = iter(range(10**9))


def order(side: Side = Side.BUY, qty: str = "100", limit: str | None = None,
          symbol: str = "AAPL", **kw: Any) -> Order:
    return Order(idempotency_key=f"k{next(_n)}", fund_id=kw.pop("fund_id", "f1"),
                 strategy_id=kw.pop("strategy_id", "s1"), instrument=Equity(symbol=symbol),
                 side=side, quantity=D(qty),
                 order_type=OrderType.LIMIT if limit else OrderType.MARKET,
                 limit_price=D(limit) if limit else None, **kw)


def ctx(f: FundConfig, **kw: Any) -> GateContext:
    kw.setdefault("prices", {"AAPL": D(100), "MSFT": D(200)})
    kw.setdefault("nav", D(1_000_000))
    kw.setdefault("instruments", make_registry())
    return GateContext(fund=f, now=kw.pop("now", NOW), **kw)


def code(o: Order, c: GateContext) -> DenialCode | None:
    d = GatePipeline().evaluate(o, c).denial
    return None if d is None else d.code


def test_gate_order_is_documented_order() -> None:
    assert [n for n, _ in DEFAULT_GATES] == [
        "trading_state", "permissions", "capabilities", "instrument", "duplicate", "price_collar",
        "order_size", "position_cap", "exposure", "drawdown", "message_rate",
        "repeated_execution"]


@pytest.mark.parametrize(
    ("scope", "scope_id"), [("global", "*"), ("fund", "f1"), ("strategy", "s1")])
def test_halted_at_every_scope(scope: str, scope_id: str) -> None:
    st = TradingStates()
    st.set(scope, scope_id, TradingState.HALTED)
    d = GatePipeline().evaluate(order(), ctx(fund(), states=st)).denial
    assert d is not None and d.code is DenialCode.TRADING_HALTED
    assert d.context["scope"] == scope


def test_halt_elsewhere_does_not_apply() -> None:
    st = TradingStates()
    st.set("fund", "other", TradingState.HALTED)
    st.set("strategy", "other", TradingState.HALTED)
    assert code(order(), ctx(fund(), states=st)) is None


def test_reducing_allows_only_risk_reducing_up_to_position() -> None:
    st = TradingStates()
    st.set("fund", "f1", TradingState.REDUCING)
    c = ctx(fund(), states=st, positions={"AAPL": D(100)})
    assert code(order(Side.SELL, "100"), c) is None  # exactly flat: allowed
    c = ctx(fund(), states=st, positions={"AAPL": D(100)})
    assert code(order(Side.SELL, "101"), c) is DenialCode.TRADING_STATE_REDUCING  # would flip short
    assert code(order(Side.BUY, "1"), c) is DenialCode.TRADING_STATE_REDUCING
    c = ctx(fund(), states=st, positions={"AAPL": D(100)}, open_sell={"AAPL": D(60)})
    assert code(order(Side.SELL, "41"), c) is DenialCode.TRADING_STATE_REDUCING  # counts open sells
    assert code(order(Side.SELL, "40"), c) is None


def test_halted_beats_reducing() -> None:
    st = TradingStates()
    st.set("fund", "f1", TradingState.REDUCING)
    st.set("global", "*", TradingState.HALTED)
    c = ctx(fund(), states=st, positions={"AAPL": D(100)})
    assert code(order(Side.SELL, "10"), c) is DenialCode.TRADING_HALTED


def test_permissions() -> None:
    f = fund(allowed_brokers=["paper"], restricted_symbols=["GME"])
    assert code(order(), ctx(f)) is None
    assert code(order(broker="ibkr"), ctx(f)) is DenialCode.BROKER_NOT_ALLOWED
    assert code(order(symbol="GME"), ctx(f, prices={"GME": D(10)})) is (
        DenialCode.INSTRUMENT_RESTRICTED)
    f2 = f.model_copy(update={"strategies": ["s2"]})
    assert code(order(), ctx(f2)) is DenialCode.STRATEGY_NOT_ALLOWED
    assert code(order(fund_id="f9"), ctx(f)) is DenialCode.INVALID_ORDER


def test_duplicate_inside_window_only_with_other_key() -> None:
    f = fund(duplicate_window_seconds=D(5))
    mem = FundMemory()
    pipe = GatePipeline()
    first = order(qty="10")
    assert pipe.evaluate(first, ctx(f, memory=mem)).allowed
    again = first.model_copy(update={"idempotency_key": "other"})
    at_edge = ctx(f, memory=mem, now=NOW + dt.timedelta(seconds=5))
    d = pipe.evaluate(again, at_edge).denial
    assert d is not None and d.code is DenialCode.DUPLICATE_ORDER
    later = ctx(f, memory=mem, now=NOW + dt.timedelta(seconds=5, microseconds=1))
    assert pipe.evaluate(again, later).allowed
    # different terms are not a duplicate
    assert pipe.evaluate(order(qty="11"), ctx(f, memory=mem)).allowed


def test_price_collar_boundary() -> None:
    f = fund(price_collar_pct=D("0.05"))
    assert code(order(limit="105"), ctx(f)) is None
    assert code(order(limit="95"), ctx(f)) is None
    assert code(order(limit="105.01"), ctx(f)) is DenialCode.PRICE_COLLAR
    assert code(order(limit="94.99"), ctx(f)) is DenialCode.PRICE_COLLAR
    assert code(order(), ctx(f, prices={})) is DenialCode.NO_REFERENCE_PRICE


def test_max_quantity_boundary() -> None:
    f = fund(max_order_quantity=D(100))
    assert code(order(qty="100"), ctx(f)) is None
    assert code(order(qty="101"), ctx(f)) is DenialCode.QUANTITY_EXCEEDS_MAXIMUM


def test_max_notional_boundary_uses_limit_else_reference() -> None:
    f = fund(max_order_notional=D(10_000))
    assert code(order(qty="100"), ctx(f)) is None  # 100 x ref 100
    assert code(order(qty="101"), ctx(f)) is DenialCode.NOTIONAL_EXCEEDS_MAXIMUM
    assert code(order(qty="100", limit="100.01"), ctx(f)) is DenialCode.NOTIONAL_EXCEEDS_MAXIMUM


def test_max_adv_pct_boundary() -> None:
    f = fund(max_adv_pct=D("0.01"))
    c = ctx(f, adv={"AAPL": D(10_000)})
    assert code(order(qty="100"), c) is None
    assert code(order(qty="101"), c) is DenialCode.MAX_ADV_PCT
    assert code(order(qty="1"), ctx(f)) is DenialCode.MAX_ADV_PCT  # no ADV known


def test_position_cap_counts_open_orders() -> None:
    f = fund(max_position_pct_nav=D("0.10"))  # 100,000 of 1,000,000 NAV = 1000 sh at 100
    assert code(order(qty="1000"), ctx(f)) is None
    assert code(order(qty="1001"), ctx(f)) is DenialCode.POSITION_CAP
    c = ctx(f, positions={"AAPL": D(500)}, open_buy={"AAPL": D(400)})
    assert code(order(qty="100"), c) is None
    c = ctx(f, positions={"AAPL": D(500)}, open_buy={"AAPL": D(400)})
    assert code(order(qty="101"), c) is DenialCode.POSITION_CAP
    # over the cap already: reducing is always allowed
    c = ctx(f, positions={"AAPL": D(5000)})
    assert code(order(Side.SELL, "10"), c) is None


def test_gross_exposure_boundary() -> None:
    f = fund(max_gross_exposure=D("1.0"))
    c = ctx(f, positions={"MSFT": D(-2500)})  # 500,000 short
    assert code(order(qty="5000"), c) is None  # + 500,000 long = 1.0x
    assert code(order(qty="5001"), c) is DenialCode.GROSS_EXPOSURE


def test_net_exposure_boundary_and_reducing_allowed() -> None:
    f = fund(max_net_exposure=D("0.5"))
    c = ctx(f, positions={"MSFT": D(1000)})  # 200,000 long
    assert code(order(qty="3000"), c) is None  # net 500,000 = 0.5x
    assert code(order(qty="3001"), c) is DenialCode.NET_EXPOSURE
    c = ctx(f, positions={"MSFT": D(5000)})  # 1.0x already
    assert code(order(Side.SELL, "1"), c) is None


@pytest.mark.parametrize("action", [TradingState.HALTED, TradingState.REDUCING])
def test_drawdown_boundary_and_state_change(action: TradingState) -> None:
    f = fund(max_drawdown_pct=D("0.10"), drawdown_action=action)
    assert code(order(), ctx(f, nav=D(900_000), peak_nav=D(1_000_000))) is None
    dec = GatePipeline().evaluate(order(), ctx(f, nav=D("899999.99"), peak_nav=D(1_000_000)))
    assert dec.denial is not None and dec.denial.code is DenialCode.DRAWDOWN_HALT
    assert dec.state_change is action


def test_drawdown_reducing_lets_reducing_orders_through() -> None:
    f = fund(max_drawdown_pct=D("0.10"), drawdown_action=TradingState.REDUCING)
    c = ctx(f, nav=D(800_000), peak_nav=D(1_000_000), positions={"AAPL": D(10)})
    assert code(order(Side.SELL, "10"), c) is None


def test_message_rate_counts_denied_orders() -> None:
    f = fund(max_messages_per_window=3, message_window_seconds=D(1),
             restricted_symbols=["GME"])
    mem = FundMemory()
    pipe = GatePipeline()
    c = ctx(f, memory=mem, prices={"AAPL": D(100), "GME": D(1)})
    assert pipe.evaluate(order(symbol="GME"), c).denial.code is (  # type: ignore[union-attr]
        DenialCode.INSTRUMENT_RESTRICTED)
    assert pipe.evaluate(order(qty="1"), c).allowed
    assert pipe.evaluate(order(qty="2"), c).allowed  # third message: at the limit
    d = pipe.evaluate(order(qty="3"), c).denial
    assert d is not None and d.code is DenialCode.MESSAGE_RATE
    # one second later the window has moved
    c2 = ctx(f, memory=mem, now=NOW + dt.timedelta(seconds=1, microseconds=1))
    assert pipe.evaluate(order(qty="4"), c2).allowed


def test_repeated_execution_boundary() -> None:
    f = fund(max_repeated_executions=2, repeated_window_seconds=D(60))
    mem = FundMemory()
    pipe = GatePipeline()
    assert pipe.evaluate(order(qty="1"), ctx(f, memory=mem)).allowed
    assert pipe.evaluate(order(qty="2"), ctx(f, memory=mem)).allowed
    d = pipe.evaluate(order(qty="3"), ctx(f, memory=mem)).denial
    assert d is not None and d.code is DenialCode.REPEATED_EXECUTION
    assert pipe.evaluate(order(Side.SELL, "3"), ctx(f, memory=mem)).allowed  # other side
    later = ctx(f, memory=mem, now=NOW + dt.timedelta(seconds=61))
    assert pipe.evaluate(order(qty="3"), later).allowed


def test_denial_context_is_wire_safe() -> None:
    f = fund(max_order_quantity=D(1))
    d = GatePipeline().evaluate(order(qty="2"), ctx(f)).denial
    assert d is not None
    assert d.gate == "order_size" and d.context == {"quantity": "2", "limit": "1"}
    assert d.to_json()
