"""A broker service beats as ``mts1b-brokers-<name>`` while it serves, not before its start
nor after its stop; one embedded without an interval does not beat (real NATS JetStream)."""

from __future__ import annotations

import os
from decimal import Decimal

import pytest
from mts1b_brokers.paper import PaperClient
from mts1b_brokers.service import BrokerService, heartbeat_service
from mts1b_brokers.testing.over_nats import nats_reachable
from mts1b_platform.bus import Bus
from mts1b_platform.heartbeat import HeartbeatProbe

URL = os.environ.get("MTS_NATS_URL", "nats://127.0.0.1:4222")

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not nats_reachable(URL), reason=f"no NATS at {URL}")]


async def test_a_served_broker_beats_with_its_name(namespace: str) -> None:
    assert heartbeat_service("paper-hb") == "mts1b-brokers-paper-hb"
    async with await Bus.connect(url=URL, namespace=namespace) as bus, \
            HeartbeatProbe(bus, "mts1b-brokers-paper-hb") as probe:
        venue = PaperClient(name="paper-hb", accounts={"a1": Decimal(1000)})
        async with BrokerService(venue, bus, heartbeat_interval=0.2,
                                 heartbeat_instance="b1") as service:
            first = await probe.next()
            second = await probe.next()
            assert service.heartbeat is not None and service.heartbeat.failed == 0
        assert await probe.silent()  # nothing after the stop
    assert (first.service, first.instance, first.interval_s) == (
        "mts1b-brokers-paper-hb", "b1", 0.2)
    assert second.started_at == first.started_at and second.ts > first.ts


async def test_an_embedded_service_without_an_interval_does_not_beat(namespace: str) -> None:
    async with await Bus.connect(url=URL, namespace=namespace) as bus, \
            HeartbeatProbe(bus, "mts1b-brokers-paper-quiet") as probe:
        venue = PaperClient(name="paper-quiet", accounts={"a1": Decimal(1000)})
        async with BrokerService(venue, bus) as service:
            assert await probe.silent(in_flight=0, window=0.3)
            assert service.heartbeat is None
