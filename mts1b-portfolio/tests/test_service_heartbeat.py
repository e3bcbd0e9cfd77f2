"""The composer beats as ``mts1b-portfolio`` on
``mts.v1.operations.heartbeats.mts1b-portfolio`` from its start to its stop (real NATS
JetStream; no fund: beating does not wait for one)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

pytest.importorskip("nats", reason="the composer service needs the 'service' extra")

from mts1b_platform.bus import Bus, BusError
from mts1b_platform.heartbeat import HeartbeatProbe
from mts1b_portfolio.service import HEARTBEAT_SERVICE, ServeOptions, run_service

pytestmark = pytest.mark.integration


async def test_the_composer_beats_while_it_serves() -> None:
    try:
        bus = await Bus.connect(namespace=f"t{uuid.uuid4().hex[:10]}", connect_timeout=2)
    except BusError as exc:
        pytest.skip(f"NATS not reachable: {exc}")
    probe = await HeartbeatProbe(bus, HEARTBEAT_SERVICE).open()
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.get_running_loop().create_task(run_service(
        ServeOptions(namespace=bus.namespace, heartbeat_interval=0.2, heartbeat_instance="c1"),
        ready=ready, stop=stop))
    try:
        await asyncio.wait_for(ready.wait(), 30)
        first = await probe.next()
        second = await probe.next()
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        quiet = await probe.silent()
        await probe.close()
        await bus.delete_streams()
        await bus.drain()
    assert (first.service, first.instance, first.interval_s) == ("mts1b-portfolio", "c1", 0.2)
    assert second.started_at == first.started_at and second.ts > first.ts
    assert quiet  # nothing after the stop
