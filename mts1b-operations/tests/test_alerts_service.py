"""The router as a service over real NATS: a fund halted by the OMS (``mts.v1.oms.state.changed``)
mutes that fund's order alerts, not another fund's; the notifications reach a webhook."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from mts1b_foundation import Alert, TradingState, TradingStateChange
from mts1b_operations.alerts.config import load_alerts_config
from mts1b_operations.alerts.service import run_alerts
from mts1b_operations.alerts.store import AlertsDb
from mts1b_operations.testing import LocalWebhook

pytestmark = [pytest.mark.integration]


async def test_a_halt_from_the_oms_mutes_that_funds_order_alerts(
        alerts_db: AlertsDb, fresh_bus: Any, kit: Any) -> None:
    bus = fresh_bus
    await bus.declare_streams(["operations", "oms"])
    now = dt.datetime.now(dt.UTC)
    await bus.publish("mts.v1.oms.state.changed", TradingStateChange(
        scope="fund", scope_id="f1", state=TradingState.HALTED, actor="ops",
        reason="drawdown limit", ts=now))
    async with LocalWebhook() as hook:
        config = load_alerts_config(None, environ={}, overrides={
            "database_url": kit.DSN, "schema_name": alerts_db.schema, "group_wait": 0.5,
            "tick": 0.1, "receivers": [{"kind": "webhook", "name": "hook", "url": hook.url}]})
        stop, ready = asyncio.Event(), asyncio.Event()
        service = asyncio.create_task(run_alerts(config, namespace=bus.namespace, stop=stop,
                                                 ready=ready))
        try:
            await asyncio.wait_for(ready.wait(), 20)
            await asyncio.sleep(0.5)  # the halt is taken first, as it was published first
            for fund in ("f1", "f2"):
                await bus.publish("mts.v1.operations.alerts.raised", Alert(
                    alert_id=f"alr-{fund}", severity="error", source="mts1b-oms", ts=now,
                    text=f"order of {fund} rejected",
                    labels={"alertname": "OrderRejected", "fund": fund, "order_id": "o1"}))
            names: set[tuple[str, str]] = set()
            for _ in range(100):
                names = {(a["labels"]["alertname"], a["labels"].get("fund", ""))
                         for r in hook.requests for a in r.json()["alerts"]}
                if ("OrderRejected", "f2") in names:
                    break
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.wait_for(service, 20)
    assert ("TradingHalted", "f1") in names and ("OrderRejected", "f2") in names
    assert ("OrderRejected", "f1") not in names
