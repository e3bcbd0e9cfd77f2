"""The factor registry: ``@register("f_name")``, ``get``, ``list_factors`` and plugin discovery.

A factor is a pure function ``f(panel, /, **params)``. Names start with ``f_`` and are Python
identifiers. Registering a name twice is an error unless ``replace=True``: silently replacing a
factor would change every strategy that refers to it by name. The one exception is a second
registration of the *same code* (a re-run notebook cell, a reloaded module, or the migration
guide's ``f_sma_cross`` pasted verbatim): it is idempotent, because nothing changes.

Plugins: any installed distribution can ship factors through the entry-point group
``mts1b.factors``. An entry point may name a factor function (registered under the entry point's
name) or a module (imported, so its ``@register`` decorators run). Discovery happens once, on the
first ``get``/``list_factors`` call, or on ``discover(reload=True)``.
"""

from __future__ import annotations

import importlib.metadata
import threading
import warnings
from collections.abc import Callable
from types import CodeType, ModuleType
from typing import Any, TypeVar

from mts1b_quantkit.errors import FactorRegistryError, UnknownFactorError

__all__ = ["ENTRY_POINT_GROUP", "discover", "get", "list_factors", "register", "unregister"]

ENTRY_POINT_GROUP = "mts1b.factors"

F = TypeVar("F", bound=Callable[..., Any])

_registry: dict[str, Callable[..., Any]] = {}
_lock = threading.RLock()
_discovered = False
_plugin_errors: dict[str, str] = {}


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.startswith("f_") or not name.isidentifier():
        raise FactorRegistryError(
            f"factor names must be identifiers starting with 'f_'; got {name!r}",
            field="name", value=repr(name),
        )
    return name


def _same_code(a: object, b: object) -> bool:
    """True when two code objects hold the same program (line numbers and names ignored)."""
    if not (isinstance(a, CodeType) and isinstance(b, CodeType)):
        return a == b and type(a) is type(b)
    if (a.co_code, a.co_names, a.co_varnames, a.co_argcount, a.co_posonlyargcount,
            a.co_kwonlyargcount) != (b.co_code, b.co_names, b.co_varnames, b.co_argcount,
                                     b.co_posonlyargcount, b.co_kwonlyargcount):
        return False
    return len(a.co_consts) == len(b.co_consts) and all(
        _same_code(x, y) for x, y in zip(a.co_consts, b.co_consts, strict=True))


def _same_function(existing: Callable[..., Any], new: Callable[..., Any]) -> bool:
    """Re-registering identical source (a notebook re-run, a module reload, a pasted copy of a
    built-in factor) is idempotent rather than an error."""
    old = getattr(existing, "__wrapped__", existing)
    old_code, new_code = getattr(old, "__code__", None), getattr(new, "__code__", None)
    if old_code is None or new_code is None:
        return False
    return (_same_code(old_code, new_code)
            and getattr(old, "__defaults__", None) == getattr(new, "__defaults__", None)
            and getattr(old, "__kwdefaults__", None) == getattr(new, "__kwdefaults__", None))


def _add(name: str, func: Callable[..., Any], replace: bool) -> None:
    if not callable(func):
        raise FactorRegistryError(f"factor {name!r} is not callable: {func!r}", field="func",
                                  value=repr(func))
    with _lock:
        existing = _registry.get(name)
        if (existing is not None and existing is not func and not replace
                and not _same_function(existing, func)):
            where = (f"{getattr(existing, '__module__', '?')}."
                     f"{getattr(existing, '__qualname__', '?')}")
            raise FactorRegistryError(
                f"factor {name!r} is already registered (by {where}); pass replace=True to "
                "replace it", field="name", value=name,
            )
        _registry[name] = func


def register(name: str, *, replace: bool = False) -> Callable[[F], F]:
    """Decorator registering ``func`` under ``name``; returns ``func`` unchanged.

    >>> @register("f_demo_doc", replace=True)
    ... def f_demo_doc(panel, /, h=21):
    ...     return panel.close
    """
    checked = _check_name(name)

    def decorator(func: F) -> F:
        _add(checked, func, replace)
        return func

    return decorator


def unregister(name: str) -> None:
    """Remove ``name`` from the registry (for tests and notebooks); unknown names are an error."""
    with _lock:
        if name not in _registry:
            raise UnknownFactorError(f"factor {name!r} is not registered", field="name",
                                     value=name)
        del _registry[name]


def _load_entry_point(ep: importlib.metadata.EntryPoint) -> None:
    obj = ep.load()
    if isinstance(obj, ModuleType):
        return  # importing the module ran its @register decorators
    if callable(obj):
        name = _check_name(ep.name)
        with _lock:
            if _registry.get(name) is obj:
                return
        _add(name, obj, replace=False)
        return
    raise FactorRegistryError(
        f"entry point {ep.name!r} ({ep.value}) is neither a module nor a callable",
        field="entry_point", value=ep.value,
    )


def discover(*, reload: bool = False) -> dict[str, str]:
    """Load the factors of every ``mts1b.factors`` entry point (once, unless ``reload``).

    Returns ``{entry point name: error}`` for plugins that failed to load; each failure is also
    reported as a ``RuntimeWarning`` naming the plugin, and never hides the other plugins.
    """
    global _discovered
    with _lock:
        if _discovered and not reload:
            return dict(_plugin_errors)
        _discovered = True
        _plugin_errors.clear()
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                _load_entry_point(ep)
            except Exception as exc:  # a broken plugin must not take the registry down
                _plugin_errors[ep.name] = f"{type(exc).__name__}: {exc}"
                warnings.warn(
                    f"mts1b.factors plugin {ep.name!r} ({ep.value}) failed to load: {exc}",
                    RuntimeWarning, stacklevel=2,
                )
        return dict(_plugin_errors)


def get(name: str) -> Callable[..., Any]:
    """The factor function registered as ``name`` (plugins included)."""
    discover()
    with _lock:
        func = _registry.get(name)
    if func is None:
        hint = ""
        if name in _plugin_errors:
            hint = f"; its plugin failed to load: {_plugin_errors[name]}"
        raise UnknownFactorError(
            f"unknown factor {name!r}{hint}; registered: {list_factors()}",
            field="name", value=name,
        )
    return func


def list_factors() -> list[str]:
    """Sorted names of every registered factor (plugins included)."""
    discover()
    with _lock:
        return sorted(_registry)
