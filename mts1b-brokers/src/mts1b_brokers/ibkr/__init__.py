"""The Interactive Brokers adapter: ``BrokerProtocol`` on ``ib_async`` (the ``ibkr`` extra).

``IbkrBroker`` is registered as ``ibkr`` in the ``mts1b.brokers`` entry-point group::

    from mts1b_brokers import get_broker
    broker = get_broker("ibkr", host="127.0.0.1", port=4002, client_id=7,
                        store="/var/lib/mts/ibkr-orders.json")

Tested only against :class:`mts1b_brokers.testing.tws.FakeTws` (server versions 176 and 178);
no live or paper IB account was used.
"""

from mts1b_brokers.ibkr.broker import IbkrBroker
from mts1b_brokers.ibkr.store import JsonFileOrderStore, MemoryOrderStore, OrderRecord, OrderStore

__all__ = ["IbkrBroker", "JsonFileOrderStore", "MemoryOrderStore", "OrderRecord", "OrderStore"]
