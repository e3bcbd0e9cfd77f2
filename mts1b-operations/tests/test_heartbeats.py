"""Heartbeats end to end over real NATS JetStream and PostgreSQL: the alert router raises
``HeartbeatMissing`` for the OMS once its heartbeats stop and resolves it when they come back;
the audit recorder beats as ``mts1b-operations-audit`` and keeps heartbeats out of the
chain."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import SimpleNamespace as Kit
from typing import Any

import pytest
from mts1b_operations.alerts.config import load_alerts_config
from mts1b_operations.alerts.router import Router
from mts1b_operations.alerts.service import HEARTBEAT_SERVICE as ROUTER_SERVICE
from mts1b_operations.alerts.service import run_alerts
from mts1b_operations.alerts.store import AlertsDb
from mts1b_operations.audit.chain import AuditChain
from mts1b_operations.audit.db import AuditDb
from mts1b_operations.audit.recorder import HEARTBEAT_SERVICE, RecorderOptions, run_recorder
from mts1b_platform.heartbeat import Heartbeater, HeartbeatProbe

pytestmark = [pytest.mark.integration]
OMS = "mts1b-oms"  # what mts1b-oms's service beats as (mts1b_oms.service.HEARTBEAT_SERVICE)


async def _until(check: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await check()
        if found:
            return found
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_the_router_raises_and_resolves_heartbeat_missing_for_the_oms(
        alerts_db: AlertsDb, fresh_bus: Any, kit: Kit) -> None:
    bus = fresh_bus
    config = load_alerts_config(None, environ={}, overrides={
        "database_url": kit.DSN, "schema_name": alerts_db.schema, "group_wait": 0,
        "tick": 0.1, "heartbeat_misses": 3})
    reader = Router(alerts_db, config)

    async def oms_alert(status: str) -> Any:
        return [v for v in await reader.list_alerts(include_resolved=True)
                if v.alert.alertname == "HeartbeatMissing" and v.alert.labels["service"] == OMS
                and v.status == status]

    async def beating() -> Any:
        async with alerts_db.pool.acquire() as conn:
            return await conn.fetchval("SELECT count(*) FROM heartbeats WHERE service = $1 "
                                       "AND NOT missing", OMS)

    stop, ready = asyncio.Event(), asyncio.Event()
    service = asyncio.create_task(run_alerts(config, namespace=bus.namespace, stop=stop,
                                             ready=ready, heartbeat_interval=0.2))
    try:
        await asyncio.wait_for(ready.wait(), 20)
        # 0.5 s: a beat late by a loaded machine's second still counts as beating
        async with Heartbeater(bus, OMS, interval_s=0.5):  # the OMS serving
            await _until(beating)
            await asyncio.sleep(0.8)  # beating: never missing
            assert await oms_alert("firing") == []
        # the OMS stopped: missing after 3 intervals (1.5 s), at the router's next tick
        [firing] = await _until(lambda: oms_alert("firing"), timeout=10)
        assert firing.alert.labels == {"alertname": "HeartbeatMissing", "service": OMS,
                                       "instance": "default"}
        async with Heartbeater(bus, OMS, interval_s=0.5):  # the OMS back
            [resolved] = await _until(lambda: oms_alert("resolved"), timeout=10)
        assert resolved.alert.fingerprint == firing.alert.fingerprint
        # the router itself beats all along
        async with alerts_db.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM heartbeats WHERE service = $1",
                                       ROUTER_SERVICE) == 1
    finally:
        stop.set()
        await asyncio.wait_for(service, 20)


async def test_the_recorder_beats_and_keeps_heartbeats_out_of_the_chain(
        audit_db: AuditDb, fresh_bus: Any, kit: Kit) -> None:
    bus = fresh_bus
    probe = await HeartbeatProbe(bus, HEARTBEAT_SERVICE).open()
    stop, ready = asyncio.Event(), asyncio.Event()
    opts = RecorderOptions(dsn=kit.DSN, schema=audit_db.schema, namespace=bus.namespace,
                           domains=("oms", "operations"), skew_threshold=0.0,
                           heartbeat_interval=0.2, heartbeat_instance="rec-1")
    task = asyncio.create_task(run_recorder(opts, ready=ready, stop=stop))
    try:
        await asyncio.wait_for(ready.wait(), 20)
        first = await probe.next()
        await probe.next()
        await bus.publish_bytes("mts.v1.oms.orders.accepted", b'{"order_id": "o1"}',
                                {"Nats-Msg-Id": "m-1"})
        chain = AuditChain(audit_db)

        async def recorded() -> bool:
            return (await chain.head()).size >= 1

        await _until(recorded)
        await asyncio.sleep(0.5)  # more heartbeats of the recorder pass meanwhile
    finally:
        stop.set()
        recorder = await asyncio.wait_for(task, 20)
        await probe.close()
    assert (first.service, first.instance, first.interval_s) == (
        "mts1b-operations-audit", "rec-1", 0.2)
    subjects = [r.subject async for r in chain.entries()]
    assert subjects == ["mts.v1.oms.orders.accepted"] and recorder.stats.appended == 1
