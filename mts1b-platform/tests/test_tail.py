"""`mts mts1b-platform tail` against the real NATS server: replay with --since, and live."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import uuid

import pytest

pytest.importorskip("nats", reason="nats-py (the bus extra of mts1b-platform) is not installed")

from mts1b_foundation import Alert
from mts1b_platform import cli
from mts1b_platform.bus import Bus, BusError, BusSettings
from typer.testing import CliRunner

pytestmark = pytest.mark.integration

NATS_URL = os.environ.get("MTS_NATS_URL", "nats://127.0.0.1:4222")
SUBJECT = "mts.v1.operations.alerts.raised"


def _alert(order_id: str, text: str = "x") -> Alert:
    return Alert(alert_id=f"alr-{uuid.uuid4().hex[:8]}", severity="warning", source="oms",
                 labels={"alertname": "T"}, text=text, context={"order_id": order_id},
                 ts=dt.datetime.now(dt.UTC))


async def _with_bus(namespace: str, alerts: list[Alert], cleanup: bool = False) -> None:
    try:
        bus = await Bus.connect(BusSettings(url=NATS_URL, namespace=namespace, connect_timeout=2))
    except BusError as exc:
        pytest.skip(f"no NATS at {NATS_URL}: {exc}")
    await bus.declare_streams(["operations"])
    for alert in alerts:
        await bus.publish(SUBJECT, alert)
    if cleanup:
        await bus.delete_streams()
    await bus.drain()


def test_tail_since_replays_matching_events_as_json() -> None:
    namespace = f"t{uuid.uuid4().hex[:10]}"
    alerts = [_alert("ord-abc", "first"), _alert("ord-other"), _alert("ord-abc", "second")]
    asyncio.run(_with_bus(namespace, alerts))
    try:
        env = {"MTS_NATS_URL": NATS_URL, "MTS_NATS_NAMESPACE": namespace}
        result = CliRunner().invoke(cli.app, [
            "mts1b-platform", "tail", "--subject", "mts.v1.>", "--filter", "order_id=ord-abc",
            "--since", "10m", "--json", "-n", "2", "--duration", "20"], env=env)
        assert result.exit_code == 0, result.output
        lines = [json.loads(x) for x in result.stdout.splitlines()]
        assert [x["data"]["text"] for x in lines] == ["first", "second"]
        assert all(x["subject"] == SUBJECT for x in lines)
        assert lines[0]["headers"]["Content-Type"] == "application/json"
        readable = CliRunner().invoke(cli.app, [
            "mts1b-platform", "tail", "-s", "mts.v1.operations.>", "-f", "order_id=ord-other",
            "--since", "10m", "-n", "1", "--duration", "20"], env=env)
        assert readable.exit_code == 0, readable.output
        assert SUBJECT in readable.stdout and "source=oms" in readable.stdout
    finally:
        asyncio.run(_with_bus(namespace, [], cleanup=True))


def test_tail_live_prints_new_messages() -> None:
    namespace = f"t{uuid.uuid4().hex[:10]}"
    asyncio.run(_with_bus(namespace, []))
    env = {**os.environ, "MTS_NATS_URL": NATS_URL, "MTS_NATS_NAMESPACE": namespace}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mts1b_platform.cli", "mts1b-platform", "tail", "-s", SUBJECT,
         "-f", "order_id=ord-live", "-n", "1", "--duration", "30"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        async def keep_publishing() -> None:
            while proc.poll() is None:
                await _with_bus(namespace, [_alert("ord-noise"), _alert("ord-live", "live")])
                await asyncio.sleep(0.2)

        asyncio.run(asyncio.wait_for(keep_publishing(), 30))
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert "text=live" in out
        assert "ord-noise" not in out
    finally:
        if proc.poll() is None:
            proc.kill()
        asyncio.run(_with_bus(namespace, [], cleanup=True))
