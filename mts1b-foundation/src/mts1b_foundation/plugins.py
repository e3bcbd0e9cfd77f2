"""The extension points of MTS1B and the one loader of their entry points.

Why here: the brokers registry, the market-data providers, the factor registry and the ``mts``
command line each found their plugins with a copy of the same loop, with three ways of handling
a plugin that does not import. They all build on foundation, so the loader lives here (stdlib and
pydantic only) and ``mts1b-pluginsdk`` re-exports it for plugin authors.

Naming: every group is ``mts1b.<kind>`` (:data:`EXTENSION_POINTS`). A group renamed in a release
keeps its old name in ``legacy_groups`` for one more release: entry points found only under the
old name still load, with a ``DeprecationWarning`` naming the new group.

Failure policy: a plugin that fails to import (or that its host refuses) is reported as a
:class:`PluginFailure` - its name, group, value and the error's *type* - and the other plugins of
the group keep working. The error's text and traceback go to the ``mts1b_foundation.plugins``
logger at DEBUG only: an import error may quote paths or settings a user should not see.

Capabilities: a plugin declares what it supports with a :class:`Capabilities` manifest on its
factory or instance (attribute ``capabilities``); hosts read it with :func:`capabilities_of`
instead of guessing from failures.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from mts1b_foundation.enums import AssetClass, OrderType, TimeInForce
from mts1b_foundation.errors import MtsError

__all__ = [
    "ALERT_SINKS",
    "BROKERS",
    "COMMANDS",
    "CONFORMANCE",
    "EXTENSION_POINTS",
    "FACTORS",
    "MARKET_DATA",
    "Capabilities",
    "EntryPointLike",
    "ExtensionPoint",
    "LoadReport",
    "PluginError",
    "PluginFailure",
    "PluginLoadError",
    "capabilities_of",
    "entry_points_of",
    "load_entry_point",
    "load_plugins",
]

_log = logging.getLogger(__name__)


class PluginError(MtsError, ValueError):
    """A plugin declares something invalid (a manifest of the wrong type, an unknown group)."""

    code: ClassVar[str] = "FOUNDATION.PLUGIN"


@dataclass(frozen=True)
class ExtensionPoint:
    """One kind of plugin: its entry-point group and what an entry must point at."""

    kind: str
    group: str
    provides: str
    """What the entry point's object is, in words (shown by ``mts1b-pluginsdk list``)."""
    legacy_groups: tuple[str, ...] = ()
    """Former names still read for one release, with a DeprecationWarning."""

    @property
    def groups(self) -> tuple[str, ...]:
        """The group first, then the legacy names: the order in which a name is looked up."""
        return (self.group, *self.legacy_groups)


BROKERS = ExtensionPoint(
    "brokers", "mts1b.brokers",
    "a factory: Factory(**config) returns an object satisfying BrokerProtocol")
MARKET_DATA = ExtensionPoint(
    "market_data", "mts1b.market_data",
    "a provider class or factory satisfying MarketDataProtocol (pull; streaming if its "
    "Capabilities say so)")
FACTORS = ExtensionPoint(
    "factors", "mts1b.factors",
    "a factor function f(panel, /, **params) -> (T, A) array, or a module whose import runs "
    "@register")
ALERT_SINKS = ExtensionPoint(
    "alert_sinks", "mts1b.alert_sinks",
    "a factory: Factory(**config) returns an object satisfying AlertSink")
COMMANDS = ExtensionPoint(
    "commands", "mts1b.commands", "a typer.Typer: the command group `mts <name> ...`",
    legacy_groups=("mts.commands",))
CONFORMANCE = ExtensionPoint(
    "conformance", "mts1b.conformance",
    "a harness factory for the brokers conformance kit (`pytest --mts-conformance`)")

EXTENSION_POINTS: Mapping[str, ExtensionPoint] = {
    p.kind: p for p in (BROKERS, MARKET_DATA, FACTORS, ALERT_SINKS, COMMANDS, CONFORMANCE)}
"""Every extension point by kind."""


class EntryPointLike(Protocol):
    """What the loader needs of an entry point (``importlib.metadata.EntryPoint`` has it)."""

    @property
    def name(self) -> str: ...

    def load(self) -> Any: ...


EntryPointSource = Callable[..., Iterable[Any]]
"""Where entry points come from: called as ``source(group=...)``; default
``importlib.metadata.entry_points``."""


def _legacy_of(group: str) -> ExtensionPoint | None:
    for point in EXTENSION_POINTS.values():
        if group in point.legacy_groups:
            return point
    return None


def entry_points_of(point: ExtensionPoint, *,
                    source: EntryPointSource | None = None) -> dict[str, Any]:
    """The entry points of ``point`` by name, without importing anything.

    A name registered under the current group wins over the same name under a legacy group.
    """
    find = source or metadata.entry_points
    found: dict[str, Any] = {}
    for group in point.groups:
        for ep in find(group=group):
            found.setdefault(ep.name, ep)
    return found


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that did not load: enough to find it, nothing internal."""

    name: str
    group: str
    value: str
    error_type: str

    def __str__(self) -> str:
        return (f"plugin {self.name!r} of group {self.group!r} ({self.value}) failed to load: "
                f"{self.error_type}")


class PluginLoadError(MtsError):
    """One plugin failed to load; ``failure`` says which and the error's type."""

    code: ClassVar[str] = "FOUNDATION.PLUGIN_LOAD"

    def __init__(self, failure: PluginFailure) -> None:
        super().__init__(str(failure), plugin=failure.name, group=failure.group,
                         value=failure.value, error_type=failure.error_type)
        self.failure = failure


_warned: set[tuple[str, str]] = set()


def _group_of(ep: Any, default: str) -> str:
    group = getattr(ep, "group", None)
    return group if isinstance(group, str) and group else default


def _warn_legacy(ep: Any, group: str) -> None:
    point = _legacy_of(group)
    if point is None or (group, ep.name) in _warned:
        return
    _warned.add((group, ep.name))
    warnings.warn(
        f"plugin {ep.name!r} ({getattr(ep, 'value', '?')}) is registered in the entry-point "
        f"group {group!r}, which is read for one more release only: register it in "
        f"{point.group!r}", DeprecationWarning, stacklevel=3)


def load_entry_point(ep: EntryPointLike, *, group: str = "") -> Any:
    """Import what ``ep`` points at; :class:`PluginLoadError` (type only) if that fails.

    ``group`` names the group for an entry point that does not carry one (a test double).
    """
    where = _group_of(ep, group)
    _warn_legacy(ep, where)
    try:
        return ep.load()
    except Exception as exc:  # any import-time error of a third-party package
        failure = PluginFailure(ep.name, where, str(getattr(ep, "value", "?")),
                                type(exc).__name__)
        _log.warning("%s", failure)
        _log.debug("plugin %r failed to load", ep.name, exc_info=True)
        raise PluginLoadError(failure) from exc


@dataclass
class LoadReport:
    """What :func:`load_plugins` found: the loaded objects by name and the failures."""

    plugins: dict[str, Any] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)


def load_plugins(point: ExtensionPoint, *, skip: Iterable[str] = (),
                 check: Callable[[str, Any], None] | None = None,
                 source: EntryPointSource | None = None) -> LoadReport:
    """Load every plugin of ``point``; one that fails is reported and the rest load.

    ``skip``: names not to load (a host's built-ins win). ``check(name, obj)``: the host's own
    acceptance of a loaded object; an exception from it counts as that plugin's failure (its
    type is reported). ``source``: where entry points come from (see :data:`EntryPointSource`).
    """
    report = LoadReport()
    skipped = set(skip)
    for name, ep in entry_points_of(point, source=source).items():
        if name in skipped:
            continue
        try:
            obj = load_entry_point(ep, group=point.group)
        except PluginLoadError as exc:
            report.failures.append(exc.failure)
            continue
        if check is not None:
            try:
                check(name, obj)
            except Exception as exc:  # the host refused it: report like an import failure
                failure = PluginFailure(name, _group_of(ep, point.group),
                                        str(getattr(ep, "value", "?")), type(exc).__name__)
                _log.warning("%s", failure)
                _log.debug("plugin %r refused by its host", name, exc_info=True)
                report.failures.append(failure)
                continue
        report.plugins[name] = obj
    return report


class Capabilities(BaseModel):
    """What a plugin supports, declared by the plugin (not a wire model: never sent).

    A broker declares the order types, times in force and asset classes it accepts, whether it
    pushes execution reports as a stream, and whether it can replace an order in place; a
    market-data provider sets ``streaming`` when it pushes bars or quotes. The OMS and the
    conformance kit read it with :func:`capabilities_of` instead of learning from rejections.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    order_types: frozenset[OrderType]
    time_in_force: frozenset[TimeInForce]
    asset_classes: frozenset[AssetClass]
    streaming: bool = False
    supports_replace: bool = False

    def supports(self, *, order_type: OrderType | None = None,
                 time_in_force: TimeInForce | None = None,
                 asset_class: AssetClass | None = None) -> bool:
        """Whether every given feature is declared."""
        return ((order_type is None or order_type in self.order_types)
                and (time_in_force is None or time_in_force in self.time_in_force)
                and (asset_class is None or asset_class in self.asset_classes))


def capabilities_of(plugin: object) -> Capabilities | None:
    """The manifest ``plugin`` declares in its ``capabilities`` attribute, or ``None``.

    ``plugin`` is a loaded entry point (a class or factory) or what it built (a class that
    declares it as a property answers only through an instance). A ``capabilities``
    attribute that is not a :class:`Capabilities` is a :class:`PluginError` naming its type.
    """
    declared = getattr(plugin, "capabilities", None)
    if isinstance(declared, property):  # a class whose instances answer: ask one of them
        return None
    if declared is None or isinstance(declared, Capabilities):
        return declared
    owner = plugin.__name__ if isinstance(plugin, type) else type(plugin).__name__
    raise PluginError(
        f"{owner}.capabilities is a {type(declared).__name__}, "
        "not a mts1b_foundation.plugins.Capabilities",
        field="capabilities", value=type(declared).__name__)
