"""The OMS trades through the IBKR adapter end to end, against FakeTws: submit, fill into
positions, cancel, a corrected execution applied with ``Oms.correct``, reconciliation clean."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal

import pytest
from mts1b_brokers.ibkr import IbkrBroker
from mts1b_brokers.testing.tws import FakeTws
from mts1b_foundation import Equity, FundConfig, Order, OrderStatus, OrderType, Side

oms_module = pytest.importorskip("mts1b_oms.oms")
memstore = pytest.importorskip("mts1b_oms.memstore")
testing = pytest.importorskip("mts1b_oms.testing")

ACCOUNT = "DU1234567"


async def eventually(check: Callable[[], bool], what: str) -> None:
    for _ in range(150):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never happened: {what}")


async def test_oms_trades_through_ibkr() -> None:
    async with FakeTws(prices={"AAPL": Decimal(100)}) as tws:
        broker = IbkrBroker(port=tws.port, client_id=3, commission_wait=0.5)
        await broker.connect()
        fund = FundConfig(fund_id="f1", name="IB fund", target_nav_usd=Decimal(1_000_000),
                          broker="ibkr", broker_account_id=ACCOUNT)
        store = memstore.InMemoryStore()
        oms = oms_module.Oms(store, broker, [fund], instruments=testing.make_registry("AAPL"))
        oms.set_price("AAPL", Decimal(100))
        await oms.start()
        corrections = asyncio.create_task(_apply_corrections(broker, oms))
        try:
            buy = await oms.submit(Order(idempotency_key="ib-1", fund_id="f1",
                                         strategy_id="s1", instrument=Equity(symbol="AAPL"),
                                         side=Side.BUY, quantity=Decimal(10)))
            assert buy.ok, buy
            oid = buy.order_id or ""
            (at_ib,) = tws.placed(oid)  # our order id went out in orderRef
            assert at_ib.account == ACCOUNT
            await tws.trade("AAPL", Decimal("100.10"), Decimal(10))
            await eventually(lambda: oms.positions("f1").get("AAPL") == 10, "filled")
            state = await store.load_order(oid)
            assert state is not None and state.status is OrderStatus.FILLED

            # IB corrects the execution to 9 shares: the OMS replaces the fill
            await tws.correct_execution(shares=Decimal(9))
            await eventually(lambda: oms.positions("f1").get("AAPL") == 9, "corrected")

            rest = await oms.submit(Order(idempotency_key="ib-2", fund_id="f1",
                                          strategy_id="s1", instrument=Equity(symbol="AAPL"),
                                          side=Side.BUY, quantity=Decimal(5),
                                          order_type=OrderType.LIMIT,
                                          limit_price=Decimal("96.00"),
                                          time_in_force="GTC"))
            assert rest.ok, rest
            canceled = await oms.cancel(rest.order_id or "")
            assert canceled.ok, canceled
            await eventually(lambda: tws.placed(rest.order_id or "")[0].status == "Cancelled",
                             "canceled at IB")
            assert await oms.reconcile("f1") == []
        finally:
            corrections.cancel()
            await oms.stop()
            await broker.close()


async def _apply_corrections(broker: IbkrBroker, oms: object) -> None:
    async for fill in broker.corrections():
        await oms.correct(fill)  # type: ignore[attr-defined]
