"""PaperClient.apply_split / pay_dividend: the venue adjusts the positions and cash it holds on
the ex-date, so its account agrees with the book of the loop that trades on it (issue #20)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D  # noqa: N817

import pytest
from mts1b_brokers import BrokerConfigError, PaperClient
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
