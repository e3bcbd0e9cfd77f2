"""The composer beats as ``mts1b-portfolio`` on
``mts.v1.operations.heartbeats.mts1b-portfolio`` from its start to its stop (real NATS
JetStream; no fund: beating does not wait for one)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

pytest.importorskip("nats", reason="the composer service needs the 'service' extra")

from mts1b_foundation import Heartbeat, parse_message
from mts1b_platform.bus import Bus, BusError
from mts1b_platform.heartbeat import heartbeat_subject
from mts1b_portfolio.service import HEARTBEAT_SERVICE, ServeOptions, run_service

pytestmark = pytest.mark.integration


async def test_the_composer_beats_while_it_serves() -> None:
    try:
        bus = await Bus.connect(namespace=f"t{uuid.uuid4().hex[:10]}", connect_timeout=2)
    except BusError as exc:
        pytest.skip(f"NATS not reachable: {exc}")
    beats: asyncio.Queue[Heartbeat] = asyncio.Queue()

    async def on_beat(msg: Any) -> None:
        await beats.put(parse_message(Heartbeat, msg.data))

    sub = await bus.nc.subscribe(bus.wire_subject(heartbeat_subject(HEARTBEAT_SERVICE)),
                                 cb=on_beat)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.get_running_loop().create_task(run_service(
        ServeOptions(namespace=bus.namespace, heartbeat_interval=0.2, heartbeat_instance="c1"),
        ready=ready, stop=stop))
    try:
        await asyncio.wait_for(ready.wait(), 30)
        first = await asyncio.wait_for(beats.get(), 10)
        second = await asyncio.wait_for(beats.get(), 10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await asyncio.sleep(0.5)  # a beat acknowledged before the stop may still be on its way
        while not beats.empty():
            beats.get_nowait()
        await asyncio.sleep(0.4)
        after_stop = beats.qsize()
        await sub.unsubscribe()
        await bus.delete_streams()
        await bus.drain()
    assert (first.service, first.instance, first.interval_s) == ("mts1b-portfolio", "c1", 0.2)
    assert second.started_at == first.started_at and second.ts > first.ts
    assert after_stop == 0
