"""mts1b-brokers: broker adapters behind ``BrokerProtocol``.

- :class:`PaperClient`: a deterministic simulated venue (bars and quotes, every order type and
  time in force of the wire format, participation limits, latency/slippage/commission models,
  cash and positions per account).
- :func:`get_broker` / :func:`available_brokers`: the ``mts1b.brokers`` entry-point registry.
- :mod:`mts1b_brokers.conformance`: the checks every broker adapter must pass.
- :class:`BrokerService` / :class:`RemoteBroker`: a broker served over NATS, and its client.
"""

from mts1b_brokers.errors import BrokerConfigError, BrokerNotFound, RejectReason
from mts1b_brokers.models import (
    BpsCommission,
    BpsSlippage,
    FixedLatency,
    NoCommission,
    NoSlippage,
    PerShareCommission,
    RandomLatency,
    RandomTickSlippage,
)
from mts1b_brokers.paper import PaperClient
from mts1b_brokers.registry import (
    ENTRY_POINT_GROUP,
    available_brokers,
    get_broker,
    register_broker,
)

__version__ = "0.1.0"

__all__ = [
    "ENTRY_POINT_GROUP",
    "BpsCommission",
    "BpsSlippage",
    "BrokerConfigError",
    "BrokerNotFound",
    "BrokerService",
    "FixedLatency",
    "NoCommission",
    "NoSlippage",
    "PaperClient",
    "PerShareCommission",
    "RandomLatency",
    "RandomTickSlippage",
    "RejectReason",
    "RemoteBroker",
    "__version__",
    "available_brokers",
    "get_broker",
    "register_broker",
]


def __getattr__(name: str) -> object:
    # The NATS parts import nats-py and the platform bus only when asked for.
    if name == "BrokerService":
        from mts1b_brokers.service import BrokerService

        return BrokerService
    if name == "RemoteBroker":
        from mts1b_brokers.remote import RemoteBroker

        return RemoteBroker
    raise AttributeError(f"module 'mts1b_brokers' has no attribute {name!r}")
