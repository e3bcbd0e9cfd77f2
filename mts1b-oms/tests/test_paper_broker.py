"""The OMS with the real paper venue, found through the ``mts1b.brokers`` entry point."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import pytest
from mts1b_foundation import Equity, FundConfig, Order, OrderStatus, Quote, RiskEnvelope, Side
from mts1b_oms.oms import Oms
from mts1b_oms.service import ServiceError, load_broker
from mts1b_oms.store import Store
from mts1b_oms.testing import make_registry

pytestmark = pytest.mark.integration


async def test_paper_broker_fills_flow_into_positions(store: Store) -> None:
    try:
        paper = load_broker("paper", default_cash="1000000")
    except ServiceError as exc:
        pytest.skip(f"mts1b-brokers not installed: {exc}")
    await paper.connect()
    fund = FundConfig(fund_id="f1", name="Paper fund", target_nav_usd=Decimal(1_000_000),
                      broker="paper", broker_account_id="f1",
                      risk=RiskEnvelope(max_order_notional=Decimal(10_000)))
    oms = Oms(store, paper, [fund], instruments=make_registry("AAPL"))
    oms.set_price("AAPL", Decimal(100))
    await oms.start()
    quote = Quote(symbol="AAPL", ts=dt.datetime.now(dt.UTC), bid=Decimal("99.9"),
                  ask=Decimal("100.1"))
    await paper.on_quote(quote)  # type: ignore[attr-defined]  # paper venue control
    try:
        o = Order(idempotency_key="paper-1", fund_id="f1", strategy_id="s1",
                  instrument=Equity(symbol="AAPL"), side=Side.BUY, quantity=Decimal(10))
        first = await oms.submit(o)
        again = await oms.submit(o)
        evs = await store.events(first.order_id or "")
        assert first.ok, evs[-1].get("reason")
        assert again.duplicate and again.order_id == first.order_id
        too_big = await oms.submit(o.model_copy(update={"idempotency_key": "paper-2",
                                                        "quantity": Decimal(101)}))
        assert too_big.code == "NOTIONAL_EXCEEDS_MAXIMUM"
        await paper.on_quote(quote.model_copy(  # type: ignore[attr-defined]
            update={"ts": dt.datetime.now(dt.UTC)}))
        for _ in range(50):
            if oms.positions("f1").get("AAPL") == 10:
                break
            await asyncio.sleep(0.05)
        assert oms.positions("f1") == {"AAPL": Decimal(10)}
        st = await store.load_order(first.order_id or "")
        assert st is not None and st.status is OrderStatus.FILLED
        assert await oms.reconcile("f1") == []
    finally:
        await oms.stop()
        await paper.close()
