"""The Coinbase adapter behind the broker service over the real NATS at MTS_NATS_URL passes
the conformance kit (fault checks included) against the local Coinbase stand-in."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlparse

import pytest

pytest.importorskip("coinbase", reason="needs the coinbase extra (coinbase-advanced-py)")

from mts1b_brokers.conformance import CHECKS, BrokerHarness, run_check
from mts1b_brokers.remote import RemoteBroker
from mts1b_brokers.service import BrokerService
from mts1b_brokers.testing.coinbase_harness import coinbase_harness
from mts1b_platform.bus import Bus

URL = os.environ.get("MTS_NATS_URL", "nats://127.0.0.1:4222")


def _reachable() -> bool:
    parsed = urlparse(URL.split(",")[0])
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 4222), 1):
            return True
    except OSError:
        return False


pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not _reachable(), reason=f"no NATS at {URL}")]


@pytest.fixture
async def namespace() -> AsyncIterator[str]:
    ns = "cbs" + uuid.uuid4().hex[:10]
    yield ns
    bus = await Bus.connect(url=URL, namespace=ns)
    await bus.delete_streams()
    await bus.drain()


@pytest.mark.parametrize("check", sorted(CHECKS))
async def test_coinbase_passes_over_nats(check: str, namespace: str) -> None:
    base = coinbase_harness()

    async def make() -> BrokerHarness:
        h = await base()
        bus = await Bus.connect(url=URL, namespace=namespace)
        service = BrokerService(h.broker, bus, follow_market_data=False)
        await service.start()

        async def cleanup() -> None:
            await service.stop()
            await bus.drain()
            if h.cleanup is not None:
                await h.cleanup()

        return BrokerHarness(broker=RemoteBroker("coinbase", url=URL, namespace=namespace),
                             account_id=h.account_id, driver=h.driver, faults=h.faults,
                             instrument=h.instrument, price=h.price, settle=0.3,
                             cleanup=cleanup)

    await run_check(check, make)
