"""The OMS trades through the Coinbase adapter end to end, against the Coinbase stand-in:
submit, fill into positions, a corrected fill applied with ``Oms.correct``, a cancel, and a
clean reconciliation against Coinbase's balances."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal

import pytest

pytest.importorskip("coinbase", reason="needs the coinbase extra (coinbase-advanced-py)")
from mts1b_brokers.coinbase import CoinbaseBroker
from mts1b_brokers.testing.coinbase_harness import coinbase_pair
from mts1b_brokers.testing.coinbase_server import CoinbaseServer
from mts1b_brokers.testing.coinbase_tls import new_api_key
from mts1b_foundation import CryptoPair, FundConfig, Order, OrderStatus, OrderType, Side

oms_module = pytest.importorskip("mts1b_oms.oms")
memstore = pytest.importorskip("mts1b_oms.memstore")
instruments = pytest.importorskip("mts1b_oms.instruments")

BTC = CryptoPair(symbol="BTC-USD", base="BTC", quote="USD")


async def eventually(check: Callable[[], bool], what: str) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never happened: {what}")


async def test_oms_trades_through_coinbase() -> None:
    async with CoinbaseServer(new_api_key("EdDSA"), heartbeat_interval=0.1) as server:
        broker = coinbase_pair(server, account_id="cb-main")
        await broker.connect()
        fund = FundConfig(fund_id="f1", name="Coinbase fund", target_nav_usd=Decimal(1_000_000),
                          broker="coinbase", broker_account_id="cb-main")
        store = memstore.InMemoryStore()
        oms = oms_module.Oms(store, broker, [fund],
                             instruments=instruments.InstrumentRegistry([BTC]))
        oms.set_price("BTC-USD", Decimal(100))
        await oms.start()
        corrections = asyncio.create_task(_apply_corrections(broker, oms))
        try:
            day = await oms.submit(Order(idempotency_key="cb-0", fund_id="f1",
                                         strategy_id="s1", instrument=BTC, side=Side.BUY,
                                         quantity=Decimal(10)))  # DAY, the default
            assert not day.ok and "time_in_force DAY" in str(day)  # the capability gate
            assert server.sent("POST", "/orders") == []
            buy = await oms.submit(Order(idempotency_key="cb-1", fund_id="f1",
                                         strategy_id="s1", instrument=BTC, side=Side.BUY,
                                         quantity=Decimal(10), time_in_force="IOC"))
            assert buy.ok, buy
            oid = buy.order_id or ""
            assert server.venue.by_client[oid].kind == "market_market_ioc"  # our id went out
            await server.trade("BTC-USD", Decimal("100.10"), Decimal(10))
            await eventually(lambda: oms.positions("f1").get("BTC-USD") == 10, "filled")
            state = await store.load_order(oid)
            assert state is not None and state.status is OrderStatus.FILLED

            await server.correct_last_execution(Decimal(9))  # Coinbase corrects the fill
            await eventually(lambda: oms.positions("f1").get("BTC-USD") == 9, "corrected")

            rest = await oms.submit(Order(idempotency_key="cb-2", fund_id="f1",
                                          strategy_id="s1", instrument=BTC, side=Side.BUY,
                                          quantity=Decimal(5), order_type=OrderType.LIMIT,
                                          limit_price=Decimal("96.00"), time_in_force="GTC"))
            assert rest.ok, rest
            canceled = await oms.cancel(rest.order_id or "")
            assert canceled.ok, canceled
            assert server.venue.by_client[rest.order_id or ""].status == "CANCELLED"
            assert await oms.reconcile("f1") == []
        finally:
            corrections.cancel()
            await oms.stop()
            await broker.close()


async def _apply_corrections(broker: CoinbaseBroker, oms: object) -> None:
    async for fill in broker.corrections():
        await oms.correct(fill)  # type: ignore[attr-defined]
