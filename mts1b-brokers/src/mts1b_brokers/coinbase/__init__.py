"""Coinbase Advanced Trade adapter (``pip install 'mts1b-brokers[coinbase]'``).

:class:`CoinbaseBroker` implements ``BrokerProtocol`` on the official ``coinbase-advanced-py``
SDK (REST, JWT per request with an Ed25519 or ES256 key) and the ``user`` WebSocket channel;
:class:`CoinbaseConfig` is its configuration (arguments, environment, ``.env`` or Vault). It is
registered as ``coinbase`` in the ``mts1b.brokers`` entry-point group. Tested only against the
local stand-in :mod:`mts1b_brokers.testing.coinbase_server`; no live account was used.
"""

try:
    import coinbase as _sdk  # noqa: F401  (the SDK, from the extra)
except ModuleNotFoundError as missing:  # pragma: no cover - exercised in a subprocess
    # still a ModuleNotFoundError naming the SDK, so tools (and repocheck) see which
    # distribution of the extra is absent
    raise ModuleNotFoundError("the Coinbase adapter needs the coinbase extra: "
                              "pip install 'mts1b-brokers[coinbase]'",
                              name=missing.name) from None

from mts1b_brokers.coinbase.broker import CoinbaseBroker
from mts1b_brokers.coinbase.config import CoinbaseConfig

__all__ = ["CoinbaseBroker", "CoinbaseConfig"]
