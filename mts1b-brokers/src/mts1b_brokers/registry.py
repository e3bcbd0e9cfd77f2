"""Find brokers by name through the ``mts1b.brokers`` entry-point group.

Why entry points: the OMS must get "a broker" without importing any broker library, and a
plugin (IBKR, Coinbase, ...) installed later must appear without a code change here. A
distribution registers ``name = "package.module:Factory"`` where ``Factory(**config)`` returns
an object satisfying ``BrokerProtocol``; this library registers ``paper``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mts1b_foundation import BrokerProtocol
from mts1b_foundation.plugins import BROKERS, entry_points_of, load_entry_point
from mts1b_foundation.protocols import missing_members

from mts1b_brokers.errors import BrokerNotFound

__all__ = ["ENTRY_POINT_GROUP", "available_brokers", "get_broker", "register_broker"]

ENTRY_POINT_GROUP = BROKERS.group

_local: dict[str, Callable[..., Any]] = {}


def register_broker(name: str, factory: Callable[..., Any]) -> None:
    """Register a factory in this process (tests, notebooks); entry points are for packages."""
    _local[name] = factory


def _entry_points() -> dict[str, Any]:
    return entry_points_of(BROKERS)


def available_brokers() -> list[str]:
    """Names ``get_broker`` accepts: installed entry points plus in-process registrations."""
    names = set(_entry_points()) | set(_local)
    if "paper" not in names:  # source checkouts without installed metadata still have paper
        names.add("paper")
    return sorted(names)


def _factory(name: str) -> Callable[..., Any]:
    if name in _local:
        return _local[name]
    eps = _entry_points()
    if name in eps:
        loaded: Callable[..., Any] = load_entry_point(eps[name])  # PluginLoadError if broken
        return loaded
    if name == "paper":
        from mts1b_brokers.paper import PaperClient

        return PaperClient
    raise BrokerNotFound(
        f"no broker named {name!r}; available: {', '.join(available_brokers())} "
        f"(brokers register in the {ENTRY_POINT_GROUP!r} entry-point group)",
        name=name, available=available_brokers(),
    )


def get_broker(name: str, /, **config: Any) -> BrokerProtocol:
    """Build the broker registered as ``name`` with ``config``; ``BrokerNotFound`` if unknown.

    The paper broker's factory also receives ``name`` (so several paper venues can run side by
    side) unless ``config`` sets it.
    """
    factory = _factory(name)
    if name == "paper":
        config.setdefault("name", name)
    broker = factory(**config)
    if not isinstance(broker, BrokerProtocol):
        missing = missing_members(broker, BrokerProtocol)
        raise BrokerNotFound(f"broker {name!r} does not satisfy BrokerProtocol; missing: "
                             f"{', '.join(missing)}", name=name, missing=missing)
    return broker
