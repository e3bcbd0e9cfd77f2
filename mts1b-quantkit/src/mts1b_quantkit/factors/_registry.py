"""The factor registry: ``@register("f_name")``, ``get``, ``list_factors`` and plugin discovery.

A factor is a pure function ``f(panel, /, **params)``. Names start with ``f_`` and are Python
identifiers. Registering a name twice is an error unless ``replace=True``: silently replacing a
factor would change every strategy that refers to it by name. The one exception is a second
registration of the *same code* (a re-run notebook cell, a reloaded module, or the migration
guide's ``f_sma_cross`` pasted verbatim): it is idempotent, because nothing changes.

A factor may also offer a fast path for parameter ladders, ``register(name, ladder=...)`` with a
:class:`LadderEvaluator`: everything a grid of its parameters shares (each moving average of a
crossover ladder, say) is computed once for all the combinations. :func:`get_ladder` returns it
for a registered factor, and only while the registered function is the one (or the same code as
the one) it was registered with, so a different factor registered under that name later never
inherits it. Ladders ask for it; nothing looks at factor names.

Plugins: any installed distribution can ship factors through the entry-point group
``mts1b.factors``. An entry point may name a factor function (registered under the entry point's
name) or a module (imported, so its ``@register`` decorators run). Discovery happens once, on the
first ``get``/``list_factors`` call, or on ``discover(reload=True)``.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import CodeType, ModuleType
from typing import Any, TypeVar

from mts1b_foundation.plugins import FACTORS, load_plugins

from mts1b_quantkit.errors import FactorRegistryError, UnknownFactorError

__all__ = [
    "ENTRY_POINT_GROUP",
    "LadderEvaluator",
    "discover",
    "get",
    "get_ladder",
    "list_factors",
    "register",
    "unregister",
]

ENTRY_POINT_GROUP = FACTORS.group

F = TypeVar("F", bound=Callable[..., Any])

#: ``values(lo, hi)``: the factor's values for ``combos[lo:hi]``, ``(hi - lo, T, A)``
LadderValues = Callable[[int, int], Any]


@dataclass(frozen=True)
class LadderEvaluator:
    """A factor's fast path for parameter ladders: many combinations of its parameters at once.

    ``prepare(panel, combos)`` is called with the panel (or, for a ``per_asset`` evaluator, a
    block of its assets: an object with the panel's fields ``close``, ``open``, ``high``,
    ``low``, ``volume``, ``mask`` and ``field(name)`` as ``(T, a)`` arrays, numpy or cupy, plus
    ``symbols`` and ``dates``) and the list of parameter dicts, each what the factor takes as
    keyword arguments. It computes what the combinations share, once, and returns a function
    ``values(lo, hi)`` giving the factor's values for ``combos[lo:hi]`` as a ``(hi - lo, T, a)``
    array in the panel's namespace: float64 values equal to the factor's for each combination,
    or booleans for a factor whose values are +1 / -1 (``True`` standing for +1), which a
    per-asset ladder then uses as they are. "Equal" up to rounding: where the factor compares
    two quantities that tie to the last bit, an evaluator that computes them another way may
    decide otherwise (the SMA crossover's evaluator keeps the plain running sum the ladders
    always used, the factor a loop over dates). A ladder calls ``values`` once per tile, with
    increasing ranges, and is done with a result (which it may modify) before the next call, so
    ``values`` may return a view of one buffer that it reuses.

    ``per_asset``: an asset's values depend on that asset's columns only (a time-series factor,
    such as a moving-average crossover), so a ladder may hand ``prepare`` blocks of assets to
    bound its memory. ``False`` (a cross-sectional factor): ``prepare`` always sees every asset.

    ``bytes_per_asset(combos, rows)``: about how many bytes ``prepare`` keeps per asset for these
    combinations over ``rows`` dates, so that a ladder sizes its asset blocks to its memory
    budget; ``None`` when it keeps nothing beyond what ``values`` returns.

    Why a hook rather than a list of known factors: the ladder needs no knowledge of any factor,
    a user's factor gets the same treatment as a built-in one, and a factor without a hook is
    simply evaluated combination by combination.
    """

    prepare: Callable[[Any, Sequence[Mapping[str, Any]]], LadderValues]
    per_asset: bool
    bytes_per_asset: Callable[[Sequence[Mapping[str, Any]], int], int] | None = None

    def __post_init__(self) -> None:
        if not callable(self.prepare):
            raise FactorRegistryError(f"LadderEvaluator.prepare must be callable; got "
                                      f"{self.prepare!r}", field="prepare",
                                      value=repr(self.prepare))
        if not isinstance(self.per_asset, bool):
            raise FactorRegistryError(f"LadderEvaluator.per_asset must be True or False; got "
                                      f"{self.per_asset!r}", field="per_asset",
                                      value=repr(self.per_asset))
        if self.bytes_per_asset is not None and not callable(self.bytes_per_asset):
            raise FactorRegistryError("LadderEvaluator.bytes_per_asset must be callable or "
                                      f"None; got {self.bytes_per_asset!r}",
                                      field="bytes_per_asset", value=repr(self.bytes_per_asset))

_registry: dict[str, Callable[..., Any]] = {}
#: name -> (the function registered with the evaluator, the evaluator)
_ladders: dict[str, tuple[Callable[..., Any], LadderEvaluator]] = {}
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


def _check_ladder(name: str, ladder: object) -> None:
    if ladder is not None and not isinstance(ladder, LadderEvaluator):
        raise FactorRegistryError(
            f"ladder for factor {name!r} must be a LadderEvaluator; got {ladder!r}",
            field="ladder", value=repr(ladder))


def _add(name: str, func: Callable[..., Any], replace: bool,
         ladder: LadderEvaluator | None = None) -> None:
    if not callable(func):
        raise FactorRegistryError(f"factor {name!r} is not callable: {func!r}", field="func",
                                  value=repr(func))
    _check_ladder(name, ladder)
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
        if ladder is not None:
            _ladders[name] = (func, ladder)


def register(name: str, *, replace: bool = False,
             ladder: LadderEvaluator | None = None) -> Callable[[F], F]:
    """Decorator registering ``func`` under ``name``; returns ``func`` unchanged.

    ``ladder``: the factor's fast path for parameter ladders (see :class:`LadderEvaluator`).
    It stays attached to this function: a different function registered under ``name`` later
    (``replace=True``) has none unless it brings its own.

    >>> @register("f_demo_doc", replace=True)
    ... def f_demo_doc(panel, /, h=21):
    ...     return panel.close
    """
    checked = _check_name(name)
    _check_ladder(checked, ladder)

    def decorator(func: F) -> F:
        _add(checked, func, replace, ladder)
        return func

    return decorator


def unregister(name: str) -> None:
    """Remove ``name`` from the registry (for tests and notebooks); unknown names are an error."""
    with _lock:
        if name not in _registry:
            raise UnknownFactorError(f"factor {name!r} is not registered", field="name",
                                     value=name)
        del _registry[name]
        _ladders.pop(name, None)


def _register_loaded(entry: str, obj: Any) -> None:
    """Register what the entry point ``entry`` loaded (the loader's ``check``)."""
    if isinstance(obj, ModuleType):
        return  # importing the module ran its @register decorators
    if callable(obj):
        name = _check_name(entry)
        with _lock:
            if _registry.get(name) is obj:
                return
        _add(name, obj, replace=False)
        return
    raise FactorRegistryError(
        f"entry point {entry!r} is neither a module nor a callable ({type(obj).__name__})",
        field="entry_point", value=entry,
    )


def discover(*, reload: bool = False) -> dict[str, str]:
    """Load the factors of every ``mts1b.factors`` entry point (once, unless ``reload``).

    Returns ``{entry point name: error type}`` for plugins that failed to load; each failure is also
    reported as a ``RuntimeWarning`` naming the plugin, and never hides the other plugins.
    """
    global _discovered
    with _lock:
        if _discovered and not reload:
            return dict(_plugin_errors)
        _discovered = True
        _plugin_errors.clear()
        # the one loader: a broken plugin is reported and must not take the registry down
        for failure in load_plugins(FACTORS, check=_register_loaded).failures:
            _plugin_errors[failure.name] = failure.error_type
            warnings.warn(str(failure), RuntimeWarning, stacklevel=2)
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


def _ladder_of(name: str, func: Callable[..., Any]) -> LadderEvaluator | None:
    entry = _ladders.get(name)
    if entry is None:
        return None
    owner, evaluator = entry
    return evaluator if owner is func or _same_function(owner, func) else None


def get_ladder(factor: Callable[..., Any] | str) -> LadderEvaluator | None:
    """The :class:`LadderEvaluator` of a factor (a registered name or function), or ``None``.

    ``None`` for a factor registered without one, for a function that is not registered, and
    for a name whose registered function is no longer the one (nor the same code as the one)
    the evaluator was registered with.
    """
    if isinstance(factor, str):
        func = get(factor)
        with _lock:
            return _ladder_of(factor, func)
    discover()
    with _lock:
        for name, func in sorted(_registry.items()):
            if func is factor:
                evaluator = _ladder_of(name, func)
                if evaluator is not None:
                    return evaluator
    return None
