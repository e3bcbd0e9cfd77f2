"""The conformance kit through the broker service: any adapter's harness, behind
:class:`~mts1b_brokers.service.BrokerService` on a real NATS, driven through
:class:`~mts1b_brokers.remote.RemoteBroker` - what the OMS sees when a broker runs as its own
process. For this project's tests and for plugin authors checking their adapter the same way.
"""

from __future__ import annotations

import dataclasses
import socket
from urllib.parse import urlparse

from mts1b_platform.bus import Bus

from mts1b_brokers.conformance import BrokerHarness, HarnessFactory
from mts1b_brokers.remote import RemoteBroker
from mts1b_brokers.service import BrokerService

__all__ = ["nats_reachable", "over_nats"]


def nats_reachable(url: str) -> bool:
    """Whether something listens at the first server of ``url`` (a test's skip condition)."""
    parsed = urlparse(url.split(",")[0])
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 4222), 1):
            return True
    except OSError:
        return False


def over_nats(base: HarnessFactory, name: str, *, url: str, namespace: str,
              settle: float = 0.3) -> HarnessFactory:
    """``base``'s harness with its broker served as ``name`` in ``namespace`` and the checks
    talking to it over NATS; ``settle``: how long a check waits before asserting that nothing
    happened (messages are on the wire, not in process)."""
    async def make() -> BrokerHarness:
        inner = await base()
        bus = await Bus.connect(url=url, namespace=namespace)
        service = BrokerService(inner.broker, bus)
        await service.start()

        async def cleanup() -> None:
            await service.stop()
            await bus.drain()
            if inner.cleanup is not None:
                await inner.cleanup()

        return dataclasses.replace(inner, broker=RemoteBroker(name, url=url, namespace=namespace),
                                   settle=settle, cleanup=cleanup)
    return make
