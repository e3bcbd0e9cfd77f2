"""The Coinbase adapter passes the conformance kit against the local Coinbase stand-in.

The stand-in (:mod:`mts1b_brokers.testing.coinbase_server`) speaks Coinbase Advanced Trade's
REST API over HTTPS and its user channel over WSS, verifying every JWT; the broker talks to it
through the official SDK. Every check runs with an Ed25519 key; the first ones also with ES256.
"""

from __future__ import annotations

import pytest

pytest.importorskip("coinbase", reason="needs the coinbase extra (coinbase-advanced-py)")

from mts1b_brokers.conformance import CHECKS, run_check
from mts1b_brokers.testing.coinbase_harness import coinbase_harness


@pytest.mark.parametrize("check", sorted(CHECKS))
async def test_coinbase_passes(check: str) -> None:
    await run_check(check, coinbase_harness("EdDSA"))


@pytest.mark.parametrize("check", ["submit_ack", "partial_fill"])
async def test_coinbase_passes_with_an_es256_key(check: str) -> None:
    await run_check(check, coinbase_harness("ES256"))
