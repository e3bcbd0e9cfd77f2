"""Position sizing: from factor scores ``(T, A)`` to target weights ``(T, A)``.

A sizing *spec* names a method and its parameters, as the seeds write it::

    size(scores, {"method": "equal_weight_long", "gross": 1.0})
    size(scores, {"method": "kelly_voltarget_12", "max_weight": 0.1}, returns=daily_returns)
    size(scores, "rank_weighted")            # a bare name uses the defaults

Methods (each a registered sizer; :func:`register_sizer` adds more):

=========================  ========================================================================
``equal_weight_long``      equal weights on the assets with ``score > threshold`` (default 0)
``equal_weight_long_short`` equal weights long ``score > threshold``, short ``score < -threshold``;
                           dollar neutral (``net=0``) unless ``net`` is given
``rank_weighted``          weights proportional to the demeaned cross-sectional rank (long/short);
                           ``long_only=True``: proportional to the rank itself
``score_weighted``         weights proportional to the score (long/short)
``kelly_voltarget``        score-weighted book, levered to ``kelly_fraction`` x the Kelly leverage
                           ``mu / sigma^2`` of its trailing returns, capped at the leverage that
                           gives ``target_vol`` annual volatility (needs ``returns``)
``kelly_voltarget_12``     ``kelly_voltarget`` with ``target_vol = 0.12``
=========================  ========================================================================

Parameters every method accepts: ``gross`` (sum of absolute weights per date, default 1.0; for
the Kelly methods it is a cap on leverage, not a target), ``net`` (long minus short exposure, for
long/short methods: the long leg gets ``(gross + net) / 2``, the short leg ``(gross - net) / 2``;
without ``net``, ``rank_weighted`` is neutral by construction and ``score_weighted`` keeps the
scores' own balance),
and ``max_weight`` (cap on each ``|w|``; the excess is redistributed pro rata to uncapped names of
the same leg, so a leg keeps its total unless every name in it is capped).

NaN scores, and assets outside ``mask``, get weight 0. Dates with no eligible asset are all 0.
An unknown method or parameter, or an invalid value, raises :class:`SizingError` naming it.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import threading
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from mts1b_quantkit._labels import align_frame
from mts1b_quantkit._xp import as_float_array
from mts1b_quantkit.errors import SizingError
from mts1b_quantkit.factors.primitives import rank_cross_sectional

__all__ = [
    "COMMON_PARAMS",
    "Sizer",
    "get_sizer",
    "kelly_voltarget",
    "list_sizers",
    "register_sizer",
    "size",
]

FloatArray = npt.NDArray[np.float64]
COMMON_PARAMS = ("gross", "net", "max_weight")


@dataclasses.dataclass(frozen=True)
class Sizer:
    """A registered method: ``func(scores, *, returns, **params) -> raw (T, A) weights``.

    ``scale_to_gross``: the raw weights only give the shape and ``size`` rescales each date to
    ``gross`` (per leg when ``net`` is given); otherwise they are final and ``gross`` caps them.
    ``long_short``: whether ``net`` is meaningful; ``default_net``: the ``net`` used when the
    spec gives none (``None``: scale the whole book to ``gross`` as the raw weights lie).
    ``needs_returns``: ``returns`` is required.
    """

    name: str
    func: Callable[..., FloatArray]
    scale_to_gross: bool = True
    long_short: bool = True
    needs_returns: bool = False
    default_net: float | None = None

    @functools.cached_property
    def params(self) -> tuple[str, ...]:
        """The method's own keyword-only parameters. Read from the signature once per sizer
        (``size`` asks on every call, and ``inspect.signature`` is slow)."""
        sig = inspect.signature(self.func)
        return tuple(p.name for p in sig.parameters.values()
                     if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "returns")


_sizers: dict[str, Sizer] = {}
_lock = threading.RLock()


def register_sizer(name: str, *, replace: bool = False, scale_to_gross: bool = True,
                   long_short: bool = True, needs_returns: bool = False,
                   default_net: float | None = None
                   ) -> Callable[[Callable[..., FloatArray]], Callable[..., FloatArray]]:
    """Decorator registering a sizing method under ``name`` (a second registration of a name is
    an error unless ``replace=True``). The function takes ``scores`` (``(T, A)`` float64, NaN =
    not eligible) plus keyword-only parameters (and ``returns`` if it needs them)."""
    if not isinstance(name, str) or not name.isidentifier():
        raise SizingError(f"sizer names must be identifiers; got {name!r}", field="name",
                          value=repr(name))

    def decorator(func: Callable[..., FloatArray]) -> Callable[..., FloatArray]:
        with _lock:
            if name in _sizers and not replace:
                raise SizingError(f"sizing method {name!r} is already registered; pass "
                                  "replace=True to replace it", field="name", value=name)
            _sizers[name] = Sizer(name, func, scale_to_gross, long_short, needs_returns,
                                  default_net)
        return func

    return decorator


def get_sizer(name: str) -> Sizer:
    """The registered :class:`Sizer` called ``name``."""
    with _lock:
        sizer = _sizers.get(name)
    if sizer is None:
        raise SizingError(f"unknown sizing method {name!r}; known: {list_sizers()}",
                          field="method", value=name)
    return sizer


def list_sizers() -> list[str]:
    """Sorted names of the registered sizing methods."""
    with _lock:
        return sorted(_sizers)


# -- helpers --------------------------------------------------------------------------------------
def _float_param(value: Any, name: str, method: str, *, low: float | None = None,
                 low_open: bool = False, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise SizingError(f"sizing parameter {name!r} of {method!r} must be a number; got "
                          f"{value!r}", field=name, value=repr(value), method=method)
    v = float(value)
    bad = not math.isfinite(v)
    if low is not None:
        bad |= v <= low if low_open else v < low
    if high is not None:
        bad |= v > high
    if bad:
        rng = f"{'(' if low_open else '['}{low if low is not None else '-inf'}, " \
              f"{high if high is not None else 'inf'}]"
        raise SizingError(f"sizing parameter {name!r} of {method!r} must be in {rng}; got "
                          f"{value!r}", field=name, value=v, method=method)
    return v


def _scale_legs(raw: FloatArray, long_total: float, short_total: float) -> FloatArray:
    pos = np.where(raw > 0, raw, 0.0)
    neg = np.where(raw < 0, -raw, 0.0)
    sp = pos.sum(axis=1, keepdims=True)
    sn = neg.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (np.where(sp > 0, pos / sp, 0.0) * long_total
               - np.where(sn > 0, neg / sn, 0.0) * short_total)
    return np.asarray(out)


def _scale_gross(raw: FloatArray, gross: float) -> FloatArray:
    """Each row scaled to ``gross`` (rows summing to 0 or NaN are 0). Worked in one new array,
    in place, with the same operations as ``where(total > 0, raw / total * gross, 0)``: a
    backtest's peak memory is set here (issue #16 counts panel-sized arrays)."""
    total = np.abs(raw).sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        out: FloatArray = np.divide(raw, total)
        out *= gross
    out[~(total > 0)[:, 0]] = 0.0
    return out


def _cap_leg(w: FloatArray, cap: float) -> FloatArray:
    """Cap non-negative weights at ``cap`` per name, redistributing the excess pro rata to the
    uncapped names of each row until none exceeds the cap (or all are capped)."""
    w = w.copy()
    total = w.sum(axis=1, keepdims=True)
    for _ in range(w.shape[1] + 1):
        over = w > cap * (1 + 1e-12)
        if not over.any():
            break
        capped = w >= cap * (1 - 1e-12)
        w = np.where(capped, cap, w)
        free = np.where(capped, 0.0, w)
        free_sum = free.sum(axis=1, keepdims=True)
        remaining = np.maximum(total - cap * capped.sum(axis=1, keepdims=True), 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.where(capped, cap, np.where(free_sum > 0, free / free_sum * remaining, 0.0))
    return np.minimum(w, cap)


def _apply_cap(w: FloatArray, cap: float) -> FloatArray:
    pos = _cap_leg(np.where(w > 0, w, 0.0), cap)
    neg = _cap_leg(np.where(w < 0, -w, 0.0), cap)
    return pos - neg


# -- built-in methods ------------------------------------------------------------------------------
@register_sizer("equal_weight_long", long_short=False)
def _equal_weight_long(scores: FloatArray, *, threshold: float = 0.0) -> FloatArray:
    with np.errstate(invalid="ignore"):
        return np.where(scores > threshold, 1.0, 0.0)


@register_sizer("equal_weight_long_short", default_net=0.0)
def _equal_weight_long_short(scores: FloatArray, *, threshold: float = 0.0) -> FloatArray:
    with np.errstate(invalid="ignore"):
        return np.where(scores > threshold, 1.0, np.where(scores < -threshold, -1.0, 0.0))


@register_sizer("rank_weighted")
def _rank_weighted(scores: FloatArray, *, long_only: bool = False) -> FloatArray:
    ranks = rank_cross_sectional(scores, pct=False)
    if long_only:
        return np.where(np.isnan(ranks), 0.0, ranks)
    n = (~np.isnan(ranks)).sum(axis=1, keepdims=True)
    centred = ranks - (n + 1) / 2.0
    return np.where(np.isnan(centred), 0.0, centred)


@register_sizer("score_weighted")
def _score_weighted(scores: FloatArray) -> FloatArray:
    return np.where(np.isnan(scores), 0.0, scores)


def kelly_voltarget(scores: FloatArray, returns: FloatArray, *, target_vol: float = 0.12,
                    kelly_fraction: float = 1.0, lookback: int = 63,
                    periods_per_year: float = 252) -> FloatArray:
    """Kelly-sized, volatility-capped book (``(T, A)`` weights; leverage >= 0).

    On each date ``t`` the direction is the score-weighted book ``d = s / sum|s|``. Its returns
    over the trailing ``lookback`` rows ending at ``t`` (``returns[t]`` is the return into date
    ``t``, known at ``t``; NaN counts as 0) give a mean ``mu`` and variance ``sigma^2``
    (``ddof=1``). The leverage is ``min(kelly_fraction * mu / sigma^2,
    target_vol / (sigma * sqrt(periods_per_year)))``, and 0 when ``mu <= 0`` or before
    ``lookback`` rows of returns exist.
    """
    t_len = scores.shape[0]
    r = np.where(np.isnan(returns), 0.0, returns)
    direction = _scale_gross(np.where(np.isnan(scores), 0.0, scores), 1.0)
    lev = np.zeros(t_len)
    if t_len >= lookback and lookback >= 2:
        windows = np.lib.stride_tricks.sliding_window_view(r, lookback, axis=0)  # (T-L+1, A, L)
        port = np.einsum("tal,ta->tl", windows, direction[lookback - 1:])
        mu = port.mean(axis=1)
        var = port.var(axis=1, ddof=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            kelly = kelly_fraction * mu / var
            vol_cap = target_vol / np.sqrt(var * periods_per_year)
            lev_tail = np.where((mu > 0) & (var > 0), np.minimum(kelly, vol_cap), 0.0)
        lev[lookback - 1:] = lev_tail
    return np.asarray(direction * lev[:, None])


@register_sizer("kelly_voltarget", scale_to_gross=False, needs_returns=True)
def _kelly_voltarget(scores: FloatArray, *, returns: FloatArray, target_vol: float = 0.12,
                     kelly_fraction: float = 1.0, lookback: int = 63,
                     periods_per_year: float = 252) -> FloatArray:
    return kelly_voltarget(scores, returns, target_vol=target_vol, kelly_fraction=kelly_fraction,
                           lookback=lookback, periods_per_year=periods_per_year)


@register_sizer("kelly_voltarget_12", scale_to_gross=False, needs_returns=True)
def _kelly_voltarget_12(scores: FloatArray, *, returns: FloatArray, kelly_fraction: float = 1.0,
                        lookback: int = 63, periods_per_year: float = 252) -> FloatArray:
    return kelly_voltarget(scores, returns, target_vol=0.12, kelly_fraction=kelly_fraction,
                           lookback=lookback, periods_per_year=periods_per_year)


_CHECKS: dict[str, dict[str, Any]] = {
    "threshold": {"low": 0.0},
    "target_vol": {"low": 0.0, "low_open": True},
    "kelly_fraction": {"low": 0.0, "low_open": True},
    "periods_per_year": {"low": 0.0, "low_open": True},
}


# -- entry point -----------------------------------------------------------------------------------
def size(scores: Any, spec: Mapping[str, Any] | str, *, mask: Any = None,
         returns: Any = None) -> FloatArray:
    """Target weights ``(T, A)`` for ``scores`` ``(T, A)`` under a sizing ``spec``.

    ``spec`` is ``{"method": name, **params}`` or just the method name. ``mask`` (``(T, A)``
    bools, e.g. ``panel.mask``) excludes assets; ``returns`` (``(T, A)`` per-period asset
    returns) is needed by the Kelly methods. See the module docstring for methods and parameters.
    When ``scores`` and ``mask`` or ``returns`` are all DataFrames they are matched by dates and
    asset labels (an error names any that differ); the weights are in ``scores``' order.
    """
    if isinstance(spec, str):
        spec = {"method": spec}
    if not isinstance(spec, Mapping):
        raise SizingError(f"sizing spec must be a mapping or a method name; got {spec!r}",
                          field="spec", value=repr(spec))
    params = dict(spec)
    method = params.pop("method", None)
    if not isinstance(method, str):
        raise SizingError(f"sizing spec needs a 'method' name; got {spec!r}", field="method",
                          value=repr(method))
    sizer = get_sizer(method)
    if mask is not None:
        mask = align_frame(mask, scores, "mask", SizingError, like_name="scores")
    if returns is not None:
        returns = align_frame(returns, scores, "returns", SizingError, like_name="scores")
    s = as_float_array(scores)
    if s.ndim == 1:
        s = s[None, :]
    if s.ndim != 2:
        raise SizingError(f"scores must be (T, A); got shape {s.shape}", field="scores",
                          value=s.shape)
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != s.shape:
            raise SizingError(f"mask has shape {m.shape}, scores {s.shape}", field="mask",
                              value=m.shape)
        s = np.where(m, s, np.nan)
    gross = _float_param(params.pop("gross", 1.0), "gross", method, low=0.0, low_open=True)
    net_raw = params.pop("net", None)
    cap_raw = params.pop("max_weight", None)
    net = None if net_raw is None else _float_param(net_raw, "net", method, low=-gross,
                                                    high=gross)
    cap = None if cap_raw is None else _float_param(cap_raw, "max_weight", method, low=0.0,
                                                    low_open=True)
    if net is not None and not sizer.long_short and net != gross:
        raise SizingError(f"sizing method {method!r} is long-only: net must equal gross "
                          f"({gross}); got {net}", field="net", value=net, method=method)
    if net is not None and not sizer.scale_to_gross:
        raise SizingError(f"sizing method {method!r} sets its own leverage; 'net' is not "
                          "supported", field="net", value=net, method=method)
    if net is None and sizer.scale_to_gross:
        net = sizer.default_net
    allowed = sizer.params
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise SizingError(
            f"unknown parameter(s) {unknown} for sizing method {method!r}; it accepts "
            f"{sorted([*COMMON_PARAMS, *allowed])}",
            field=unknown[0], value=unknown, method=method,
        )
    for key, value in params.items():
        if key in _CHECKS:
            params[key] = _float_param(value, key, method, **_CHECKS[key])
        elif key == "lookback" and (isinstance(value, bool) or not isinstance(value, int)
                                    or value < 2):
                raise SizingError(f"sizing parameter 'lookback' of {method!r} must be an integer "
                                  f">= 2; got {value!r}", field="lookback", value=repr(value),
                                  method=method)
    kwargs: dict[str, Any] = dict(params)
    if sizer.needs_returns:
        if returns is None:
            raise SizingError(f"sizing method {method!r} needs returns=(T, A) asset returns",
                              field="returns", method=method)
        r = as_float_array(returns)
        if r.ndim == 1:
            r = r[None, :]
        if r.shape != s.shape:
            raise SizingError(f"returns has shape {r.shape}, scores {s.shape}", field="returns",
                              value=r.shape, method=method)
        kwargs["returns"] = r
    raw = np.asarray(sizer.func(s, **kwargs), dtype=np.float64)
    if raw.shape != s.shape:
        raise SizingError(f"sizing method {method!r} returned shape {raw.shape}, expected "
                          f"{s.shape}", field="method", value=method)
    # zero where the score or the sizer's value is missing, in place when ``raw`` is the
    # sizer's own new array (a sizer may return its input or a view: then copied first), and
    # the scores dropped first: one (T, A) array less at what is a backtest's peak
    fresh = (raw.flags.owndata and raw.flags.writeable
             and all(raw is not other for other in (s, scores, kwargs.get("returns"))))
    missing = np.isnan(s)
    del s
    if not fresh:
        raw = raw.copy()
    missing |= np.isnan(raw)
    raw[missing] = 0.0
    del missing
    if sizer.scale_to_gross:
        if net is None:
            w = _scale_gross(raw, gross)
        else:
            w = _scale_legs(raw, (gross + net) / 2.0, (gross - net) / 2.0)
    else:
        total = np.abs(raw).sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.where(total > gross, raw / total * gross, raw)
    if cap is not None:
        w = _apply_cap(w, cap)
    return np.asarray(w, dtype=np.float64)
