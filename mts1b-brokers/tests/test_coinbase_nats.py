"""The Coinbase adapter behind the broker service over the real NATS at MTS_NATS_URL passes
the conformance kit (fault checks included) against the local Coinbase stand-in."""

from __future__ import annotations

import os
from decimal import Decimal

import pytest

pytest.importorskip("coinbase", reason="needs the coinbase extra (coinbase-advanced-py)")

from mts1b_brokers import get_broker
from mts1b_brokers.conformance import CHECKS, run_check
from mts1b_brokers.remote import RemoteBroker
from mts1b_brokers.service import BrokerService
from mts1b_brokers.testing.coinbase_harness import coinbase_harness
from mts1b_brokers.testing.coinbase_server import CoinbaseServer
from mts1b_brokers.testing.coinbase_tls import new_api_key
from mts1b_brokers.testing.over_nats import nats_reachable, over_nats
from mts1b_foundation import CryptoPair, ExecType, Order, OrderType, TimeInForce
from mts1b_platform.bus import Bus

URL = os.environ.get("MTS_NATS_URL", "nats://127.0.0.1:4222")


pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not nats_reachable(URL), reason=f"no NATS at {URL}")]


@pytest.mark.parametrize("check", sorted(CHECKS))
async def test_coinbase_passes_over_nats(check: str, namespace: str) -> None:
    base = coinbase_harness()

    await run_check(check, over_nats(base, "coinbase", url=URL, namespace=namespace))



async def test_a_broker_from_the_environment_serves_over_nats(
        namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``mts mts1b-brokers serve coinbase`` builds - ``get_broker("coinbase")`` with no
    options, configured by ``MTS_BROKERS_COINBASE_*`` only - answers a submit over NATS."""
    key = new_api_key("ES256")
    async with CoinbaseServer(key) as server:
        for name, value in {"API_KEY": key.name,
                            "API_SECRET": key.secret.replace("\n", "\\n"),
                            "BASE_URL": server.base_url, "WS_URL": server.ws_url,
                            "CA_FILE": str(server.ca_file), "ACCOUNT_ID": "main"}.items():
            monkeypatch.setenv(f"MTS_BROKERS_COINBASE_{name}", value)
        venue = get_broker("coinbase")
        bus = await Bus.connect(url=URL, namespace=namespace)
        service = BrokerService(venue, bus, follow_market_data=False)
        await service.start()
        try:
            async with RemoteBroker("coinbase", url=URL, namespace=namespace) as broker:
                ack = await broker.submit(Order(
                    order_id="env-1", idempotency_key="env-1", fund_id="main",
                    strategy_id="s", instrument=CryptoPair(symbol="BTC-USD", base="BTC",
                                                           quote="USD"),
                    side="buy", quantity=Decimal(1), order_type=OrderType.LIMIT,
                    limit_price=Decimal(99), time_in_force=TimeInForce.GTC))
                assert ack.exec_type is ExecType.ACK and ack.account_id == "main"
            assert server.venue.by_client["env-1"].size == 1
        finally:
            await service.stop()
            await bus.drain()
