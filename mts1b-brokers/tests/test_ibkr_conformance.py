"""The IBKR adapter passes the whole conformance kit, fault checks included, against FakeTws
(in process, over a real TCP socket, through ib_async 2.1.0)."""

from __future__ import annotations

import pytest
from mts1b_brokers.conformance import CHECKS, ibkr_harness, run_check


@pytest.mark.parametrize("check", sorted(CHECKS))
async def test_ibkr_passes(check: str) -> None:
    await run_check(check, ibkr_harness())
