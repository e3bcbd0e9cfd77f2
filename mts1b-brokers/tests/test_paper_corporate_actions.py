"""PaperClient.apply_split / pay_dividend: the venue adjusts the positions and cash it holds on
the ex-date, so its account agrees with the book of the loop that trades on it (issue #20)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D  # noqa: N817

import pytest
from mts1b_brokers import BrokerConfigError, PaperClient
from mts1b_brokers.models import BpsCommission
from mts1b_foundation import Bar, Equity, Order

T0 = dt.datetime(2024, 1, 2, 21, tzinfo=dt.UTC)


def _bar(day: int, price: str) -> Bar:
    p = D(price)
    return Bar(symbol="AAA", ts=T0 + dt.timedelta(days=day), open=p, high=p, low=p, close=p,
               volume=D(1_000_000))


async def _holding_100_at_50() -> PaperClient:
    broker = PaperClient(accounts={"core": "10000"}, participation_rate=None, start=T0)
    await broker.connect()
    broker.set_mark("AAA", "50")
    await broker.submit(Order(order_id="o-1", idempotency_key="k-1", fund_id="core",
                              strategy_id="s", instrument=Equity(symbol="AAA"), side="buy",
                              quantity=D(100)))
    await broker.on_bar(_bar(1, "50"))
    return broker


async def test_split_multiplies_the_position_and_keeps_value_and_cost() -> None:
    broker = await _holding_100_at_50()
    before = await broker.account("core")
    broker.apply_split("AAA", "4")
    after = await broker.account("core")
    assert after.positions == {"AAA": D(400)}
    assert after.cash == before.cash and after.equity == before.equity
    (pos,) = await broker.positions("core")
    assert pos.avg_cost == D("12.5")
    await broker.on_bar(_bar(2, "13"))
    assert (await broker.account("core")).equity == before.cash + 400 * D(13)


async def test_dividend_is_paid_in_cash_by_the_position() -> None:
    broker = await _holding_100_at_50()
    cash = (await broker.account("core")).cash
    broker.pay_dividend("AAA", "0.25")
    broker.pay_dividend("BBB", "1")  # not held: nothing
    assert (await broker.account("core")).cash == cash + D(25)


@pytest.mark.parametrize(("call", "value"), [("apply_split", "0"), ("apply_split", "x"),
                                             ("pay_dividend", "-1")])
def test_bad_values_are_config_errors(call: str, value: str) -> None:
    broker = PaperClient(accounts={"core": "1"})
    with pytest.raises(BrokerConfigError):
        getattr(broker, call)("AAA", value)


async def test_matching_looks_only_at_working_orders() -> None:
    """A loop over years sends hundreds of thousands of orders: once filled they must not be
    walked again on every bar (the venue keeps them for order_status, not in its working set)."""
    broker = PaperClient(accounts={"core": "1000000"}, participation_rate=None, start=T0)
    await broker.connect()
    broker.set_mark("AAA", "50")
    for day in range(1, 51):
        await broker.submit(Order(order_id=f"o-{day}", idempotency_key=f"k-{day}",
                                  fund_id="core", strategy_id="s",
                                  instrument=Equity(symbol="AAA"), side="buy", quantity=D(1)))
        await broker.on_bar(_bar(day, "50"))
    await broker.submit(Order(order_id="o-last", idempotency_key="k-last", fund_id="core",
                              strategy_id="s", instrument=Equity(symbol="AAA"), side="buy",
                              quantity=D(1), order_type="limit", limit_price=D(1),
                              time_in_force="GTC"))
    assert [o.order_id for o in await broker.open_orders("core")] == ["o-last"]
    assert len(broker._open) == 1   # the working set, not the 51 orders
    assert (await broker.order_status("o-7")) is not None
    assert (await broker.account("core")).positions == {"AAA": D(50)}


async def test_reverse_split_pays_the_fraction_below_a_lot_in_cash() -> None:
    broker = PaperClient(accounts={"core": "10000"}, participation_rate=None, start=T0,
                         instruments=[Equity(symbol="AAA")])          # lot of 1 share
    await broker.connect()
    broker.set_mark("AAA", "50")
    await broker.submit(Order(order_id="o-1", idempotency_key="k-1", fund_id="core",
                              strategy_id="s", instrument=Equity(symbol="AAA"), side="buy",
                              quantity=D(105)))
    await broker.on_bar(_bar(1, "2.5"))                      # 105 shares at 2.5
    before = await broker.account("core")
    broker.apply_split("AAA", "0.1")                          # 1-for-10: 10.5 shares at 25
    after = await broker.account("core")
    assert after.positions == {"AAA": D(10)}
    assert after.cash == before.cash + D("12.50")             # half a share at 25, in lieu
    assert after.equity == before.equity


async def test_delisting_pays_the_position_out_at_the_last_close_and_cancels_its_orders() -> None:
    """A delisting (issue #20) closes every account's position at the last close into cash,
    no commission, realizing its PnL, and ends the symbol's working orders with CANCELED
    reports; other symbols' orders keep working."""
    broker = PaperClient(accounts={"core": "10000", "other": "500"}, participation_rate=None,
                         start=T0, commission=BpsCommission(D(10)))
    await broker.connect()
    broker.set_mark("AAA", "50")
    broker.set_mark("BBB", "5")
    await broker.submit(Order(order_id="o-1", idempotency_key="k-1", fund_id="core",
                              strategy_id="s", instrument=Equity(symbol="AAA"), side="buy",
                              quantity=D(100)))
    await broker.on_bar(_bar(1, "50"))
    cash = (await broker.account("core")).cash
    await broker.submit(Order(order_id="o-2", idempotency_key="k-2", fund_id="core",
                              strategy_id="s", instrument=Equity(symbol="AAA"), side="sell",
                              quantity=D(40)))
    await broker.submit(Order(order_id="o-3", idempotency_key="k-3", fund_id="core",
                              strategy_id="s", instrument=Equity(symbol="BBB"), side="buy",
                              quantity=D(10)))
    reports = broker.delist("AAA", "41.5")
    assert [(r.order_id, r.exec_type.value) for r in reports] == [("o-2", "canceled")]
    after = await broker.account("core")
    assert after.positions == {} and after.cash == cash + 100 * D("41.5")
    (pos,) = await broker.positions("core")  # flat, with its realized PnL
    assert (pos.symbol, pos.quantity, pos.realized_pnl) == ("AAA", 0, 100 * D("-8.5"))
    assert [o.order_id for o in await broker.open_orders("core")] == ["o-3"]
    assert (await broker.account("other")).cash == D(500)
    assert broker.delist("AAA", "41.5") == [] and (await broker.account("core")).cash == (
        after.cash)  # nothing left to close: a second call changes nothing
    with pytest.raises(BrokerConfigError):
        broker.delist("AAA", "0")
