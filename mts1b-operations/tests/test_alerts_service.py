"""The router as a service over real NATS: a fund halted by the OMS (``mts.v1.oms.state.changed``)
mutes that fund's order alerts, not another fund's; the notifications reach a webhook."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
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


async def test_serve_alerts_says_it_serves_and_shows_no_secret(
        alerts_db: AlertsDb, fresh_bus: Any, kit: Any, tmp_path: Path) -> None:
    """``serve alerts`` prints one line once it consumes (as ``serve audit`` does) and one when
    SIGTERM stopped it; neither holds the token or the webhook's credentials."""
    config = tmp_path / "alerts.yaml"
    config.write_text(yaml.safe_dump({
        "database_url": kit.DSN, "schema_name": alerts_db.schema, "receivers": [
            {"kind": "telegram", "name": "ops", "chat_ids": [1]},
            {"kind": "webhook", "name": "hook", "url": "https://bot:SECRET-pw@127.0.0.1:9/h"}]}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mts1b_operations.cli", "serve", "alerts", "--config",
         str(config), "--namespace", fresh_bus.namespace],
        env={**os.environ, "MTS_ALERTS_TELEGRAM_TOKEN": "999:SECRET-tok"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        assert first == (f"alert router serving (2 receivers, schema {alerts_db.schema}, "
                         f"namespace {fresh_bus.namespace}); SIGTERM stops it\n")
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.to_thread(proc.communicate, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            await asyncio.to_thread(proc.wait)
    assert (proc.returncode, out) == (0, "alert router stopped\n"), err
    assert "SECRET" not in first + out + err
