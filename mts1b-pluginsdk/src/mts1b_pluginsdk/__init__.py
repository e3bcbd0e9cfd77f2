"""mts1b-pluginsdk: write, test and ship an MTS1B plugin.

The extension points, their loader and the capability manifest live in
:mod:`mts1b_foundation.plugins` (every library that loads plugins builds on foundation); this
package re-exports them for plugin authors and adds what only authors need: plugin projects
generated from a copier template (:func:`new_project`, :func:`update_project`), the list of
installed plugins with their load status and manifests (:func:`installed_plugins`), and the
brokers conformance kit as a pytest plugin (``pytest --mts-conformance``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mts1b_foundation.plugins import (
        ALERT_SINKS,
        BROKERS,
        COMMANDS,
        CONFORMANCE,
        EXTENSION_POINTS,
        FACTORS,
        MARKET_DATA,
        Capabilities,
        ExtensionPoint,
        LoadReport,
        PluginError,
        PluginFailure,
        PluginLoadError,
        capabilities_of,
        entry_points_of,
        load_entry_point,
        load_plugins,
    )

    from mts1b_pluginsdk.conformance import ConformanceSkip, ConformanceSuite, broker_suite
    from mts1b_pluginsdk.inventory import InstalledPlugin, installed_plugins
    from mts1b_pluginsdk.scaffold import KINDS, ScaffoldError, new_project, update_project

# Resolved on first use (PEP 562): the pytest plugin of this package is loaded by every pytest
# run where the package is installed, and importing foundation (pydantic, numpy) there would
# cost each run about a second for nothing unless --mts-conformance is given.
_HOMES = {
    **dict.fromkeys(
        ("ALERT_SINKS", "BROKERS", "COMMANDS", "CONFORMANCE", "EXTENSION_POINTS", "FACTORS",
         "MARKET_DATA", "Capabilities", "ExtensionPoint", "LoadReport", "PluginError",
         "PluginFailure", "PluginLoadError", "capabilities_of", "entry_points_of",
         "load_entry_point", "load_plugins"), "mts1b_foundation.plugins"),
    **dict.fromkeys(("ConformanceSkip", "ConformanceSuite", "broker_suite"),
                    "mts1b_pluginsdk.conformance"),
    **dict.fromkeys(("InstalledPlugin", "installed_plugins"), "mts1b_pluginsdk.inventory"),
    **dict.fromkeys(("KINDS", "ScaffoldError", "new_project", "update_project"),
                    "mts1b_pluginsdk.scaffold"),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'mts1b_pluginsdk' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
    "ALERT_SINKS",
    "BROKERS",
    "COMMANDS",
    "CONFORMANCE",
    "EXTENSION_POINTS",
    "FACTORS",
    "KINDS",
    "MARKET_DATA",
    "Capabilities",
    "ConformanceSkip",
    "ConformanceSuite",
    "ExtensionPoint",
    "InstalledPlugin",
    "LoadReport",
    "PluginError",
    "PluginFailure",
    "PluginLoadError",
    "ScaffoldError",
    "__version__",
    "broker_suite",
    "capabilities_of",
    "entry_points_of",
    "installed_plugins",
    "load_entry_point",
    "load_plugins",
    "new_project",
    "update_project",
]
