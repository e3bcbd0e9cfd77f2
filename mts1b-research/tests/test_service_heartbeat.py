"""The signal service beats as ``mts1b-research`` on
``mts.v1.operations.heartbeats.mts1b-research`` from its start to its stop (real NATS JetStream
and PostgreSQL; an empty registry: beating does not wait for a strategy)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from mts1b_platform.bus import Bus, BusError
from mts1b_platform.heartbeat import HeartbeatProbe
from mts1b_research.service import HEARTBEAT_SERVICE, ServeOptions, run_service

from .conftest import DSN, open_db

pytestmark = pytest.mark.integration


async def test_the_signal_service_beats_while_it_serves(tmp_path: Path) -> None:
    try:
        bus = await Bus.connect(namespace=f"t{uuid.uuid4().hex[:10]}", connect_timeout=2)
    except BusError as exc:
        pytest.skip(f"NATS not reachable: {exc}")
    db = await open_db()
    probe = await HeartbeatProbe(bus, HEARTBEAT_SERVICE).open()
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.get_running_loop().create_task(run_service(
        ServeOptions(dsn=DSN, store=tmp_path, schema=db.schema, namespace=bus.namespace,
                     heartbeat_interval=0.2, heartbeat_instance="r1"), ready=ready, stop=stop))
    try:
        await asyncio.wait_for(ready.wait(), 20)
        first = await probe.next()
        second = await probe.next()
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        quiet = await probe.silent()
        await probe.close()
        await bus.delete_streams()
        await bus.drain()
        await db.drop_schema()
        await db.close()
    assert (first.service, first.instance, first.interval_s) == ("mts1b-research", "r1", 0.2)
    assert second.started_at == first.started_at and second.ts > first.ts
    assert quiet  # nothing after the stop
