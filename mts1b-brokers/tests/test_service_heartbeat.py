"""A broker service beats as ``mts1b-brokers-<name>`` while it serves, not before its start
nor after its stop; one embedded without an interval does not beat (real NATS JetStream)."""

from __future__ import annotations

import asyncio
import os
from decimal import Decimal
from typing import Any

import pytest
from mts1b_brokers.paper import PaperClient
from mts1b_brokers.service import BrokerService, heartbeat_service
from mts1b_brokers.testing.over_nats import nats_reachable
from mts1b_foundation import Heartbeat, parse_message
from mts1b_platform.bus import Bus
from mts1b_platform.heartbeat import heartbeat_subject

URL = os.environ.get("MTS_NATS_URL", "nats://127.0.0.1:4222")

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not nats_reachable(URL), reason=f"no NATS at {URL}")]


async def _listen(bus: Bus, service: str) -> tuple[asyncio.Queue[Heartbeat], Any]:
    beats: asyncio.Queue[Heartbeat] = asyncio.Queue()

    async def on_beat(msg: Any) -> None:
        await beats.put(parse_message(Heartbeat, msg.data))

    sub = await bus.nc.subscribe(bus.wire_subject(heartbeat_subject(service)), cb=on_beat)
    return beats, sub


async def test_a_served_broker_beats_with_its_name(namespace: str) -> None:
    assert heartbeat_service("paper-hb") == "mts1b-brokers-paper-hb"
    async with await Bus.connect(url=URL, namespace=namespace) as bus:
        beats, sub = await _listen(bus, "mts1b-brokers-paper-hb")
        venue = PaperClient(name="paper-hb", accounts={"a1": Decimal(1000)})
        async with BrokerService(venue, bus, heartbeat_interval=0.2,
                                 heartbeat_instance="b1") as service:
            first = await asyncio.wait_for(beats.get(), 10)
            second = await asyncio.wait_for(beats.get(), 10)
            assert service.heartbeat is not None and service.heartbeat.failed == 0
        await asyncio.sleep(0.5)  # a beat acknowledged before the stop may still be on its way
        while not beats.empty():
            beats.get_nowait()
        await asyncio.sleep(0.5)
        assert beats.empty()  # nothing after the stop
        await sub.unsubscribe()
    assert (first.service, first.instance, first.interval_s) == (
        "mts1b-brokers-paper-hb", "b1", 0.2)
    assert second.started_at == first.started_at and second.ts > first.ts


async def test_an_embedded_service_without_an_interval_does_not_beat(namespace: str) -> None:
    async with await Bus.connect(url=URL, namespace=namespace) as bus:
        beats, sub = await _listen(bus, "mts1b-brokers-paper-quiet")
        venue = PaperClient(name="paper-quiet", accounts={"a1": Decimal(1000)})
        async with BrokerService(venue, bus) as service:
            await asyncio.sleep(0.3)
            assert service.heartbeat is None
        await sub.unsubscribe()
    assert beats.empty()
