"""Fixtures shared by the brokers tests that use a real NATS."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
from mts1b_platform.bus import Bus

NATS_URL = os.environ.get("MTS_NATS_URL", "nats://127.0.0.1:4222")


@pytest.fixture
async def namespace() -> AsyncIterator[str]:
    """A NATS namespace of the test's own, its streams deleted afterwards."""
    ns = "brk" + uuid.uuid4().hex[:10]
    yield ns
    bus = await Bus.connect(url=NATS_URL, namespace=ns)
    await bus.delete_streams()
    await bus.drain()
