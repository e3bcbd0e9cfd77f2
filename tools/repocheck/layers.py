"""The layer order of ../shared/ARCHITECTURE.md (and docs/architecture.md).

A library may import only libraries in a strictly lower layer; same-layer imports are errors.
``pluginsdk`` sits beside the stack: it may import ``foundation`` only, and it is placed in layer
1 so that libraries from layer 2 up (brokers, for instance) may build on it.
"""

from __future__ import annotations

from collections.abc import Mapping

LAYERS: Mapping[str, int] = {
    "foundation": 0,
    "platform": 1,
    "quantkit": 1,
    "pluginsdk": 1,
    "datalake": 2,
    "brokers": 2,
    "operations": 2,
    "GPUbacktester": 3,
    "portfolio": 3,
    "oms": 3,
    "treasury": 3,
    "deploy": 3,
    "research": 4,
}

# Libraries whose allowed dependencies are narrower than "anything below".
ONLY: Mapping[str, frozenset[str]] = {"pluginsdk": frozenset({"foundation"})}


def layer_error(
    library: str,
    dependency: str,
    layers: Mapping[str, int] = LAYERS,
    only: Mapping[str, frozenset[str]] = ONLY,
) -> str | None:
    """Why ``library`` may not depend on ``dependency``, or ``None`` when it may."""
    if library not in layers:
        return f"library {library!r} has no layer: add it to tools/repocheck/layers.py"
    if dependency not in layers:
        return f"library {dependency!r} has no layer: add it to tools/repocheck/layers.py"
    if library in only and dependency not in only[library]:
        return f"{library} may depend on {sorted(only[library])} only, not on {dependency}"
    mine, theirs = layers[library], layers[dependency]
    if theirs == mine:
        return (f"{library} and {dependency} are both in layer {mine}: same-layer imports are "
                "not allowed")
    if theirs > mine:
        return (f"{library} (layer {mine}) may not depend on {dependency} (layer {theirs}), "
                "a higher layer")
    return None
