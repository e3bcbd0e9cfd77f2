"""What is installed: every plugin of every extension point, whether it loads, what it declares.

Why: a plugin that fails to import is otherwise noticed only when something asks for it by
name (the OMS at start-up, ``mts <group>``). ``mts1b-pluginsdk list`` shows them all at once,
with the distribution that registered each and its capability manifest.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from mts1b_foundation.plugins import (
    EXTENSION_POINTS,
    Capabilities,
    PluginError,
    PluginLoadError,
    capabilities_of,
    entry_points_of,
    load_entry_point,
)

__all__ = ["InstalledPlugin", "installed_plugins"]


@dataclass(frozen=True)
class InstalledPlugin:
    """One entry point: where it comes from and, when loaded, whether it loaded."""

    kind: str
    name: str
    group: str
    value: str
    distribution: str
    version: str
    legacy_group: bool
    """Registered under a group's former name (read for one more release)."""
    error_type: str | None = None
    """The error's type when it failed to load (or declared an invalid manifest)."""
    capabilities: Capabilities | None = None


def _dist(ep: Any) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "?", "?"
    return str(dist.metadata["Name"]), str(dist.version)


def installed_plugins(*, load: bool = True,
                      kinds: list[str] | None = None) -> list[InstalledPlugin]:
    """Every installed plugin, sorted by kind and name.

    ``load``: import each one to report failures and read its manifest (``False``: metadata
    only, nothing imported). ``kinds``: only these extension points (default: all).
    """
    unknown = sorted(set(kinds or ()) - set(EXTENSION_POINTS))
    if unknown:
        raise PluginError(f"unknown plugin kind {unknown[0]!r}; known: "
                          f"{', '.join(sorted(EXTENSION_POINTS))}", field="kind",
                          value=unknown[0])
    found: list[InstalledPlugin] = []
    for kind in sorted(kinds or EXTENSION_POINTS):
        point = EXTENSION_POINTS[kind]
        for name, ep in sorted(entry_points_of(point).items()):
            group = str(getattr(ep, "group", point.group))
            distribution, version = _dist(ep)
            error: str | None = None
            caps: Capabilities | None = None
            if load:
                try:
                    with warnings.catch_warnings():  # the listing itself says it is legacy
                        warnings.simplefilter("ignore", DeprecationWarning)
                        caps = capabilities_of(load_entry_point(ep, group=point.group))
                except PluginLoadError as exc:
                    error = exc.failure.error_type
                except PluginError:
                    error = "PluginError"
            found.append(InstalledPlugin(
                kind=kind, name=name, group=group, value=str(getattr(ep, "value", "?")),
                distribution=distribution, version=version,
                legacy_group=group in point.legacy_groups, error_type=error, capabilities=caps))
    return found
