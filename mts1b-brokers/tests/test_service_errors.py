"""An unexpected exception inside a broker is answered INTERNAL_ERROR without its text.

The text of an exception a broker library raises (a driver's error, a venue session dump) may
hold credentials or internals; it belongs in the service's redacted log, not in a reply that
any client reads (issue #15).
"""

from __future__ import annotations

import logging
import uuid
from decimal import Decimal
from typing import Any

import pytest
from mts1b_brokers.conformance import paper_harness
from mts1b_brokers.service import BrokerService
from mts1b_foundation import Equity, Order, ReplyCode, SubmitOrder


async def test_an_unexpected_broker_exception_is_answered_without_its_text(
        caplog: pytest.LogCaptureFixture) -> None:
    harness = await paper_harness()()

    async def boom(order: Order) -> Any:
        raise RuntimeError("venue session token=abc123 at https://u:pw-999@venue/x")

    harness.broker.submit = boom  # type: ignore[method-assign]
    service = BrokerService(harness.broker, bus=None,  # type: ignore[arg-type]
                            follow_market_data=False)
    order = Order(order_id=f"o-{uuid.uuid4().hex[:6]}", idempotency_key="k1", fund_id="conf",
                  strategy_id="s", instrument=Equity(symbol="CONF"), side="buy",
                  quantity=Decimal(10), order_type="limit", limit_price=Decimal(90),
                  time_in_force="GTC")
    with caplog.at_level(logging.ERROR, logger="mts1b_brokers.service"):
        reply = await service.handle("submit", SubmitOrder(order=order).to_json())
    assert not reply.ok and reply.code is ReplyCode.INTERNAL_ERROR
    assert reply.message == ("the broker service failed (RuntimeError); its log has the "
                             "details")
    assert [r.getMessage() for r in caplog.records] == ["broker command failed"]
    assert "pw-999" not in caplog.text and "abc123" not in caplog.text
