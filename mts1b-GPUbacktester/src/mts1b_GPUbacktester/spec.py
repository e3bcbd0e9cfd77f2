"""``RunSpec``: how a backtest trades, as one frozen object validated when it is made.

Why one object: ``run_single``, ``run_weights``, ``run_ladder``, ``run_walk_forward`` and the CLI
each took the same dozen settings (fill, rebalance, trading rule, costs, caps, borrow, capital,
backend, calendar...), with their own defaults, checks and conversions. A :class:`RunSpec` holds
them once: every entry point builds one (from its keyword arguments, or takes ``spec=``), checks
happen at construction (a typo fails before any data is loaded, naming the field and the value),
basis points become rates in one place (:func:`bps_to_rate`, through :meth:`RunSpec.cost_model`),
the result keeps the spec it ran with (``result.spec``) and the tearsheet renders it.

What is *not* in the spec: what is backtested (factor, parameters, weights, universe, dates,
store) and how a ladder is executed (grid, mode, tiles, executor).

Annualisation: returns are measured per row of the panel, and a year holds 252 rows of an
equity exchange, 260 of the ``24/5`` FX calendar and 365 of the ``24/7`` crypto one.
:meth:`RunSpec.periods_per_year_for` takes ``periods_per_year`` when given, else the panel's
(the datalake sets it from the calendar), else that of ``calendar``, else 252; metrics, borrow
accrual and the tearsheet all use the one number.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import numpy.typing as npt

from mts1b_GPUbacktester.errors import BacktestConfigError

if TYPE_CHECKING:
    from mts1b_foundation import UniversePanel

    from mts1b_GPUbacktester.sim import CostModel

__all__ = [
    "BACKENDS",
    "DEFAULT_PERIODS_PER_YEAR",
    "DEFAULT_SIZING",
    "RunSettings",
    "RunSpec",
    "Slippage",
    "bps_to_rate",
    "reject_unknown",
]

FloatArray = npt.NDArray[np.float64]

#: the seeds' sizing: long the assets with a positive score, equal weights, fully invested
DEFAULT_SIZING: Mapping[str, Any] = MappingProxyType({"method": "equal_weight_long",
                                                      "gross": 1.0})

#: rows per year when neither the spec, the panel nor a calendar says otherwise (an equity
#: exchange's trading days)
DEFAULT_PERIODS_PER_YEAR = 252.0

#: the values of ``backend``
BACKENDS: tuple[str, ...] = ("auto", "numba", "numpy", "cupy")

_REBAL_NAMES = ("daily", "weekly", "monthly")


def bps_to_rate(bps: Any) -> Any:
    """Basis points to a fraction of notional (``10`` -> ``0.001``), scalar or array: the one
    place the backtester divides by 1e4."""
    return bps / 1e4


@dataclass(frozen=True)
class Slippage:
    """A parsed slippage setting: ``bps`` fixed, plus square-root impact ``impact_k`` over a
    ``window`` of sessions (``None``: no impact model)."""

    bps: float = 0.0
    impact_k: float = 0.0
    window: int | None = None

    @property
    def rate(self) -> float:
        """The fixed part as a fraction of the price."""
        return float(bps_to_rate(self.bps))


DELISTINGS = ("sale", "payout")
"""What :attr:`RunSpec.delisting` may be."""


class RunSettings(TypedDict, total=False):
    """The keyword arguments that build a :class:`RunSpec` (its fields, for type checkers:
    ``run_single(..., **settings: Unpack[RunSettings])``)."""

    rebal: str | Sequence[Any]
    trade_on: str
    band: float
    fill: str
    sizing: Mapping[str, Any] | str | None
    cost_bps: float | Mapping[str, float]
    slippage: float | Mapping[str, Any] | None
    participation: float | None
    borrow_rate: float | Mapping[str, float] | None
    delisting: str
    initial_nav: float
    backend: str
    calendar: str | None
    periods_per_year: float | None
    benchmark: Any
    warmup_days: int
    lookahead_check: bool


def _fail(name: str, message: str, value: Any) -> BacktestConfigError:
    shown = value if isinstance(value, int | float | str | bool | type(None)) else \
        repr(value)[:200]
    return BacktestConfigError(f"{name}: {message}; got {value!r}"[:600], field=name,
                               value=shown)


def _number(name: str, value: Any, *, low: float | None = 0.0, low_open: bool = False,
            high: float | None = None) -> float:
    """``value`` as a finite float in the allowed range, else a BacktestConfigError naming
    ``name`` (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise _fail(name, "must be a number", value)
    out = float(value)
    if not math.isfinite(out):
        raise _fail(name, "must be finite", value)
    if low is not None and (out <= low if low_open else out < low):
        raise _fail(name, f"must be {'>' if low_open else '>='} {low:g}", value)
    if high is not None and out > high:
        raise _fail(name, f"must be <= {high:g}", value)
    return out


def _rates(name: str, value: Any, *, optional: bool) -> float | Mapping[str, float] | None:
    """A scalar or a ``{symbol: number}`` mapping of finite numbers >= 0 (``None`` allowed
    when ``optional``); mappings are copied and frozen."""
    if value is None and optional:
        return None
    if isinstance(value, Mapping):
        out: dict[str, float] = {}
        for key, v in value.items():
            if not isinstance(key, str) or not key:
                raise _fail(name, "keys must be symbols", key)
            out[key] = _number(f"{name}[{key!r}]", v)
        return MappingProxyType(out)
    return _number(name, value)


def _parse_slippage(value: Any) -> Slippage:
    """``None`` | bps as a number | ``{"model": "fixed", "bps": 5}`` |
    ``{"model": "sqrt", "k": 1.0, "window": 20, "bps": 0}``."""
    if value is None:
        return Slippage()
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - {"model", "bps", "k", "window"})
        if unknown:
            raise _fail("slippage", f"unknown keys {unknown} (known: model, bps, k, window)",
                        dict(value))
        model = value.get("model", "fixed")
        bps = _number("slippage['bps']", value.get("bps", 0.0))
        if model == "fixed":
            return Slippage(bps=bps)
        if model == "sqrt":
            window = value.get("window", 20)
            if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 2:
                raise _fail("slippage['window']", "must be an integer >= 2 (sessions)", window)
            return Slippage(bps=bps, impact_k=_number("slippage['k']", value.get("k", 1.0)),
                            window=int(window))
        raise _fail("slippage", "model must be 'fixed' or 'sqrt'", model)
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise _fail("slippage", "must be None, a number of bps or a dict", value)
    return Slippage(bps=_number("slippage", value))


def _rebal(value: Any) -> str | tuple[np.datetime64, ...]:
    if isinstance(value, str):
        if value not in _REBAL_NAMES:
            raise _fail("rebal", "must be 'daily', 'weekly', 'monthly' or a sequence of dates",
                        value)
        return value
    if not isinstance(value, Sequence | np.ndarray) or isinstance(value, bytes):
        raise _fail("rebal", "must be 'daily', 'weekly', 'monthly' or a sequence of dates",
                    value)
    from mts1b_foundation import MtsError, to_day

    try:
        days = sorted({to_day(d) for d in value})
    except (MtsError, TypeError, ValueError) as exc:
        raise _fail("rebal", f"dates are not dates ({exc})", value) from exc
    if not days:
        raise _fail("rebal", "an empty sequence of dates never rebalances", value)
    return tuple(days)


def _sizing(value: Any) -> Mapping[str, Any]:
    if value is None:
        return DEFAULT_SIZING
    spec = {"method": value} if isinstance(value, str) else value
    if not isinstance(spec, Mapping) or not isinstance(spec.get("method"), str):
        raise _fail("sizing", "must be a quantkit sizing spec {'method': name, ...} or a "
                    "method name", value)
    from mts1b_quantkit.errors import SizingError
    from mts1b_quantkit.sizing import get_sizer

    try:
        get_sizer(spec["method"])
    except SizingError as exc:
        raise _fail("sizing", exc.message, dict(spec)) from exc
    return MappingProxyType(dict(spec))


def _benchmark(value: Any) -> Any:
    if value is None or value is False:
        return value
    if isinstance(value, str) and value:
        return value
    pd = sys.modules.get("pandas")  # a Series can only be given if pandas is loaded
    if pd is not None and isinstance(value, pd.Series):
        return value
    raise _fail("benchmark", "must be None (the universe's equal weight), 'equal_weight', a "
                "symbol, a pandas Series of prices, or False for none", value)


def _plain(value: Any) -> Any:
    """A setting as plain JSON-able Python (mappings as dicts, dates as ISO strings)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.datetime64):
        return str(value.astype("datetime64[D]"))
    if value is not None and not isinstance(value, bool | int | float | str):
        return f"{type(value).__name__}({getattr(value, 'name', None) or ''})"
    return value


@dataclass(frozen=True, kw_only=True, repr=False)
class RunSpec:
    """How a backtest trades: every setting ``run_single`` and friends share.

    Fields (defaults are the seeds'):

    ``rebal``
        ``"daily" | "weekly" | "monthly"`` or a sequence of dates (kept sorted, as
        ``datetime64[D]``): when target weights are read.
    ``trade_on``, ``band``
        the trading rule on those dates: ``"schedule"`` trades every asset back to its target,
        ``"signal_change"`` only assets whose target changed (positions otherwise drift);
        ``band`` (an absolute weight drift >= 0) trades only (or also) assets that drifted
        further than it. See :func:`mts1b_GPUbacktester.sim.simulate`.
    ``fill``
        ``"next_open"`` (default), ``"close"`` or ``"next_close"``.
    ``sizing``
        a quantkit sizing spec (``{"method": "equal_weight_long", "gross": 1.0}``).
    ``cost_bps``
        commission in basis points of notional, a number or ``{symbol: bps}``.
    ``slippage``
        ``None``, fixed bps, or ``{"model": "sqrt", "k": 1.0, "window": 20, "bps": 0}``.
    ``participation``
        cap on a fill as a fraction of the bar's volume, in ``(0, 1]``; ``None``: no cap.
    ``borrow_rate``
        annual borrow cost on short market value, a number or ``{symbol: rate}``, accrued per
        row at ``rate / periods_per_year``.
    ``delisting``
        what happens to a position in an asset whose prices stop before the end: ``"sale"``
        (default) sells it at its last close paying ``cost_bps`` and slippage, as a forced
        sale; ``"payout"`` pays it out at that close with no cost, as a corporate action
        (zipline's auto-close, and the paper venue of ``mts1b-brokers``).
    ``initial_nav``
        starting cash (> 0).
    ``backend``
        ``"auto" | "numba" | "numpy" | "cupy"``.
    ``calendar``
        the rows' calendar when the universe is loaded from the datalake (``None``: by asset
        class, see ``mts1b_datalake.build_panel``); with a panel, it must agree with the
        panel's own.
    ``periods_per_year``
        rows per year for annualising and borrow; ``None``: from the panel / calendar.
    ``benchmark``
        ``None`` (the universe's equal-weight return), ``"equal_weight"``, a symbol, a pandas
        Series of prices, or ``False``.
    ``warmup_days``
        calendar days of history loaded before ``start`` for the factor's look-back.
    ``lookahead_check``
        run quantkit's look-ahead guard on the factor first.

    Construction validates every field and raises :class:`BacktestConfigError` whose
    ``context`` names the field and the value; mappings are copied and frozen. Use
    :meth:`replace` (or ``dataclasses.replace``) for a changed copy; it is validated too.
    """

    rebal: str | tuple[np.datetime64, ...] = "daily"
    trade_on: str = "schedule"
    band: float = 0.0
    fill: str = "next_open"
    sizing: Mapping[str, Any] = field(default_factory=lambda: DEFAULT_SIZING)
    cost_bps: float | Mapping[str, float] = 10.0
    slippage: float | Mapping[str, Any] | None = None
    participation: float | None = None
    borrow_rate: float | Mapping[str, float] | None = None
    delisting: str = "sale"
    initial_nav: float = 100_000.0
    backend: str = "auto"
    calendar: str | None = None
    periods_per_year: float | None = None
    benchmark: Any = None
    warmup_days: int = 400
    lookahead_check: bool = False
    _slip: Slippage = field(init=False, repr=False, compare=False, default=Slippage())

    def __post_init__(self) -> None:
        from mts1b_GPUbacktester.data import check_fill
        from mts1b_GPUbacktester.sim import check_trade_rule

        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        put("rebal", _rebal(self.rebal))
        trade_on, band = check_trade_rule(self.trade_on, self.band)
        put("trade_on", trade_on)
        put("band", band)
        if not isinstance(self.fill, str):
            raise _fail("fill", "must be 'next_open', 'close' or 'next_close'", self.fill)
        check_fill(self.fill)
        put("sizing", _sizing(self.sizing))
        put("cost_bps", _rates("cost_bps", self.cost_bps, optional=False))
        slip = _parse_slippage(self.slippage)
        put("_slip", slip)
        if isinstance(self.slippage, Mapping):
            put("slippage", MappingProxyType(dict(self.slippage)))
        elif self.slippage is not None:
            put("slippage", slip.bps)
        if self.participation is not None:
            put("participation", _number("participation", self.participation, low=0.0,
                                         low_open=True, high=1.0))
        put("borrow_rate", _rates("borrow_rate", self.borrow_rate, optional=True))
        if self.delisting not in DELISTINGS:
            raise _fail("delisting", f"must be one of {DELISTINGS}", self.delisting)
        put("initial_nav", _number("initial_nav", self.initial_nav, low_open=True))
        if self.backend not in BACKENDS:
            raise _fail("backend", f"must be one of {BACKENDS}", self.backend)
        if self.calendar is not None and (not isinstance(self.calendar, str)
                                          or not self.calendar):
            raise _fail("calendar", "must be a calendar name ('XNYS', '24/5', '24/7', ...) "
                        "or None", self.calendar)
        if self.periods_per_year is not None:
            put("periods_per_year", _number("periods_per_year", self.periods_per_year,
                                            low_open=True))
        put("benchmark", _benchmark(self.benchmark))
        if isinstance(self.warmup_days, bool) or not isinstance(
                self.warmup_days, int | np.integer) or self.warmup_days < 0:
            raise _fail("warmup_days", "must be an integer >= 0 (calendar days)",
                        self.warmup_days)
        put("warmup_days", int(self.warmup_days))
        if not isinstance(self.lookahead_check, bool | np.bool_):
            raise _fail("lookahead_check", "must be True or False", self.lookahead_check)
        put("lookahead_check", bool(self.lookahead_check))

    def __hash__(self) -> int:
        # the generated hash would fail on the frozen mappings: hash their plain form instead
        return hash(repr(sorted(self.to_dict().items())))

    def __repr__(self) -> str:
        """The settings that differ from the defaults, as plain values."""
        plain, default = self.to_dict(), _defaults()
        shown = ", ".join(f"{k}={v!r}" for k, v in plain.items() if default.get(k, k) != v)
        return f"RunSpec({shown})"

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def settings(cls) -> tuple[str, ...]:
        """The names of the settings, in field order."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.init)

    @classmethod
    def build(cls, spec: RunSpec | None = None, settings: Mapping[str, Any] | None = None, *,
              where: str = "RunSpec", also: Iterable[str] = ()) -> RunSpec:
        """``spec`` (default: the defaults) with ``settings`` applied on top, validated.

        Unknown names in ``settings`` raise :class:`BacktestConfigError` listing every
        accepted keyword of ``where`` (the settings plus ``also``), close matches first: this
        is how the entry points turn a misspelt keyword into an answer, never a TypeError.
        """
        given = dict(settings or {})
        names = cls.settings()
        reject_unknown(given, [*names, *also, "spec"] if where != "RunSpec" else names, where,
                       known=names)
        if spec is not None and not isinstance(spec, RunSpec):
            raise _fail("spec", "must be a RunSpec (or None)", spec)
        if spec is None:
            return cls(**given)
        return spec.replace(**given) if given else spec

    def replace(self, **changes: Any) -> RunSpec:
        """A copy with ``changes`` applied and validated (unknown names are refused)."""
        reject_unknown(changes, self.settings(), "RunSpec.replace")
        return dataclasses.replace(self, **changes)

    # -- what the engine needs --------------------------------------------------------------
    @property
    def slippage_model(self) -> Slippage:
        """The parsed slippage setting."""
        return self._slip

    @property
    def commission_bps(self) -> float | None:
        """``cost_bps`` when it is one number for every asset, else ``None``."""
        return None if isinstance(self.cost_bps, Mapping) else float(self.cost_bps)

    def cost_model(self, symbols: Sequence[str], *,
                   periods_per_year: float = DEFAULT_PERIODS_PER_YEAR
                   ) -> tuple[CostModel, int | None]:
        """The engine's :class:`~mts1b_GPUbacktester.sim.CostModel` for ``symbols`` (the
        panel's columns), and the impact window (``None`` without an impact model).

        Basis points become rates here and only here; a ``{symbol: value}`` setting becomes an
        ``(A,)`` array (0 for symbols it does not name; a symbol outside ``symbols`` is an
        error).
        """
        from mts1b_GPUbacktester.sim import CostModel

        comm = _per_asset(self.cost_bps, symbols, "cost_bps")
        slip = self._slip
        model = CostModel(commission=bps_to_rate(np.asarray(comm)), slippage=slip.rate,
                          impact_k=slip.impact_k, participation=self.participation,
                          borrow=_per_asset(self.borrow_rate, symbols, "borrow_rate"),
                          periods_per_year=periods_per_year,
                          delisting_costs=self.delisting == "sale")
        return model, slip.window

    def periods_per_year_for(self, panel: UniversePanel) -> tuple[float, str]:
        """``(periods per year, where it came from)`` for a run on ``panel``: the spec's
        ``periods_per_year``, else the panel's, else that of ``calendar`` (or the panel's
        calendar), else :data:`DEFAULT_PERIODS_PER_YEAR`.

        A ``calendar`` that differs from the panel's own is an error: the rows are the panel's.
        """
        own = getattr(panel, "calendar", None)
        if self.calendar is not None and own is not None and own != self.calendar:
            raise _fail("calendar", f"the panel's rows follow the {own!r} calendar; build the "
                        f"panel on {self.calendar!r} or leave calendar unset", self.calendar)
        if self.periods_per_year is not None:
            return self.periods_per_year, "periods_per_year"
        panel_ppy = getattr(panel, "periods_per_year", None)
        if panel_ppy is not None:
            return float(panel_ppy), f"the panel's calendar ({own})" if own else "the panel"
        calendar = self.calendar or own
        if calendar is not None:
            from mts1b_datalake.calendar import periods_per_year

            return float(periods_per_year(calendar)), f"calendar {calendar}"
        return DEFAULT_PERIODS_PER_YEAR, "default (no calendar stated)"

    # -- description ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every setting as plain Python (JSON-able; a benchmark Series as its name)."""
        return {name: _plain(getattr(self, name)) for name in self.settings()}

    def describe(self) -> list[tuple[str, str]]:
        """``(setting, value)`` rows in words, for the tearsheet and the CLI."""
        rebal = self.rebal if isinstance(self.rebal, str) else (
            f"{len(self.rebal)} dates ({self.rebal[0]}..{self.rebal[-1]})")
        slip = self._slip
        slip_text = "none" if not (slip.bps or slip.impact_k) else ", ".join(
            [f"{slip.bps:g} bps fixed"] * bool(slip.bps or not slip.impact_k)
            + [f"sqrt impact k={slip.impact_k:g} over {slip.window} sessions"]
            * bool(slip.impact_k))
        bench = self.benchmark
        return [
            ("fill", self.fill),
            ("rebalance", rebal),
            ("trade on", self.trade_on),
            ("band", f"{self.band:g}" + (" (absolute weight drift)" if self.band else "")),
            ("sizing", ", ".join(f"{k}={v}" for k, v in self.sizing.items())),
            ("commission", _bps_text(self.cost_bps)),
            ("slippage", slip_text),
            ("participation cap", "none" if self.participation is None
             else f"{self.participation:.0%} of volume"),
            ("borrow", "none" if self.borrow_rate is None else _rate_text(self.borrow_rate)),
            ("initial NAV", f"{self.initial_nav:,.0f}"),
            ("backend (asked)", self.backend),
            ("calendar (asked)", self.calendar or "by asset class"),
            ("periods per year (asked)", "from the calendar" if self.periods_per_year is None
             else f"{self.periods_per_year:g}"),
            ("benchmark", "universe equal weight" if bench is None or bench == "equal_weight"
             else "none" if bench is False else str(_plain(bench))),
            ("warm-up", f"{self.warmup_days} days"),
            ("look-ahead check", "on" if self.lookahead_check else "off"),
        ]


def _refuse_unknown_fields(init: Any) -> Any:
    """Wrap the dataclass ``__init__`` so a misspelt field is a BacktestConfigError listing the
    accepted names (close matches first), not a TypeError."""

    @functools.wraps(init)
    def checked(self: RunSpec, *args: Any, **kwargs: Any) -> None:
        if args:
            raise BacktestConfigError(f"RunSpec takes keyword arguments only ({len(args)} "
                                      f"positional given)", field="args", value=len(args))
        reject_unknown(kwargs, RunSpec.settings(), "RunSpec")
        init(self, **kwargs)

    return checked


RunSpec.__init__ = _refuse_unknown_fields(RunSpec.__init__)  # type: ignore[method-assign]


@functools.cache
def _defaults() -> dict[str, Any]:
    """The default settings as plain values (what ``repr`` leaves out), from the field
    defaults: building a spec here would import quantkit when this module is imported."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(RunSpec):
        if not f.init:
            continue
        factory: Any = f.default_factory
        value = f.default if factory is dataclasses.MISSING else factory()
        out[f.name] = _plain(value)
    return out


def _bps_text(value: float | Mapping[str, float]) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {v:g} bps" for k, v in value.items()) + " (others 0)"
    return f"{value:g} bps"


def _rate_text(value: float | Mapping[str, float]) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {v:.2%}" for k, v in value.items()) + " a year (others 0)"
    return f"{value:.2%} a year"


def _per_asset(value: float | Mapping[str, float] | None, symbols: Sequence[str],
               name: str) -> float | FloatArray:
    """A scalar setting as it is, a ``{symbol: value}`` one as an ``(A,)`` array in the order
    of ``symbols`` (0 where not named)."""
    if value is None:
        return 0.0
    if not isinstance(value, Mapping):
        return float(value)
    unknown = sorted(set(value) - set(symbols))
    if unknown:
        raise _fail(name, "names symbols outside the universe", unknown)
    return np.array([float(value.get(s, 0.0)) for s in symbols], dtype=np.float64)


def reject_unknown(given: Mapping[str, Any], accepted: Iterable[str], where: str, *,
                   known: Iterable[str] | None = None) -> None:
    """Raise :class:`BacktestConfigError` if ``given`` has a key outside ``known`` (default:
    ``accepted``), listing every accepted name, the close matches (difflib) first."""
    allowed = set(accepted if known is None else known)
    bad = sorted(k for k in given if k not in allowed)
    if not bad:
        return
    names = sorted(set(accepted))
    close: list[str] = []
    for name in bad:
        for match in difflib.get_close_matches(name, names, n=3, cutoff=0.6):
            if match not in close:
                close.append(match)
    ordered = close + [n for n in names if n not in close]
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    plural = "s" if len(bad) > 1 else ""
    raise BacktestConfigError(
        f"{where}() got unknown keyword argument{plural} {', '.join(map(repr, bad))}{hint} "
        f"Accepted: {', '.join(ordered)}", field="keywords", value=bad, accepted=ordered)
