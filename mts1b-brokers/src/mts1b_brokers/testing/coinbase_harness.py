"""The conformance kit's harness for :class:`~mts1b_brokers.coinbase.CoinbaseBroker`.

Each harness starts a fresh :class:`~mts1b_brokers.testing.coinbase_server.CoinbaseServer`
(the local stand-in for Coinbase: HTTPS + WSS with a test CA, JWT-verifying) with a new API
key, points the broker at it and uses the server's ``trade`` as the ``VenueDriver``. The
server stops in the harness's clean-up. No live account is involved.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from mts1b_foundation import CryptoPair

from mts1b_brokers.coinbase import CoinbaseBroker
from mts1b_brokers.conformance import BrokerHarness, HarnessFactory
from mts1b_brokers.testing.coinbase_server import CoinbaseServer
from mts1b_brokers.testing.coinbase_tls import new_api_key

__all__ = ["coinbase_harness", "coinbase_pair"]


def coinbase_pair(server: CoinbaseServer, algorithm: str = "EdDSA",
                  **broker_options: Any) -> CoinbaseBroker:
    """A broker configured for ``server`` (its key, URLs and CA), not yet connected."""
    options: dict[str, Any] = {
        "account_id": "conf", "product_ids": ["BTC-USD"], "heartbeat_timeout": 2.0,
        "reconcile_interval": 1.0, "reconnect_backoff": 0.05, "timeout": 5.0}
    options.update(broker_options)
    return CoinbaseBroker(api_key=server.key.name, api_secret=server.key.secret,
                          base_url=server.base_url, ws_url=server.ws_url,
                          ca_file=str(server.ca_file), **options)


def coinbase_harness(algorithm: str = "EdDSA", *, server_options: dict[str, Any] | None = None,
                     **broker_options: Any) -> HarnessFactory:
    """A factory of fresh (server, broker) pairs trading ``BTC-USD`` at 100 for the kit."""

    async def make() -> BrokerHarness:
        server = CoinbaseServer(new_api_key(algorithm), heartbeat_interval=0.2,
                                **(server_options or {}))
        await server.start()
        broker = coinbase_pair(server, **broker_options)
        return BrokerHarness(
            broker=broker, account_id="conf", driver=server,
            instrument=CryptoPair(symbol="BTC-USD", base="BTC", quote="USD"),
            price=Decimal(100), timeout=5.0, settle=0.3, cleanup=server.stop, faults=server)

    return make
