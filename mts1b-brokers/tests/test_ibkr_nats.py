"""The IBKR adapter behind the broker service over the real NATS at MTS_NATS_URL passes the
conformance kit (fault checks included) against FakeTws."""

from __future__ import annotations

import os

import pytest
from mts1b_brokers.conformance import CHECKS, ibkr_harness, run_check
from mts1b_brokers.testing.over_nats import nats_reachable, over_nats

URL = os.environ.get("MTS_NATS_URL", "nats://127.0.0.1:4222")


pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not nats_reachable(URL), reason=f"no NATS at {URL}")]


@pytest.mark.parametrize("check", sorted(CHECKS))
async def test_ibkr_passes_over_nats(check: str, namespace: str) -> None:
    base = ibkr_harness()

    await run_check(check, over_nats(base, "ibkr", url=URL, namespace=namespace))
