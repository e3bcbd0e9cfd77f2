"""Point-in-time universes: which symbols are in the investable set on each trading day.

A :class:`Universe` turns a store and a range of sessions into a :class:`Membership`: the symbols
and a boolean ``(T, A)`` mask. Membership on day ``t`` uses only information available before
the open of ``t`` (bars up to ``t - 1``), so a backtest that trades the universe has no
look-ahead and no survivorship shortcut: symbols that were delisted are members while they traded
and leave on their last bar.

Built-in names (see :func:`registered_universes`):

``us-large-cap``
    the top ``n`` (default 100) listed equities by trailing median dollar volume (raw close x
    volume over the previous ``lookback`` = 63 sessions), re-selected at each ``rebalance``
    (default: the first session of each month), among symbols with at least ``min_history``
    = 21 bars in the window. ``universe("us-large-cap", n=500)`` for an S&P-500-sized set.
``us-all``
    every listed equity.

A list of symbols (``["SPY"]``, a universe of one) is a :class:`StaticUniverse`: members while
listed. Register your own with :func:`register_universe`.

A universe also says, when it can without being resolved, which asset classes it draws from
(:meth:`Universe.asset_classes`): ``build_panel`` picks the panel's calendar from them (crypto
``24/7``, FX ``24/5``, equities their exchange's) when the caller gives none.
"""

from __future__ import annotations

import abc
import datetime as dt
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as _pc

from mts1b_datalake.calendar import to_day, trading_days
from mts1b_datalake.errors import UnknownFieldError, UnknownUniverseError

if TYPE_CHECKING:
    from mts1b_datalake.store import Store

pc: Any = _pc  # pyarrow.compute is untyped

__all__ = [
    "Membership",
    "StaticUniverse",
    "TopLiquidityUniverse",
    "Universe",
    "parse_universe",
    "register_universe",
    "registered_universes",
    "resolve_universe",
    "universe",
    "unregister_universe",
]


@dataclass(frozen=True)
class Membership:
    """``symbols`` (A, sorted) and ``mask`` (T, A) bool over the given sessions."""

    symbols: list[str]
    mask: np.ndarray


def listing_mask(store: Store, symbols: Sequence[str], sessions: np.ndarray) -> np.ndarray:
    """``(T, A)``: True from a symbol's first bar through its last bar (and before any
    delisting event)."""
    table = store.symbol_table().set_index("symbol").reindex(list(symbols))
    first = np.array([_day_or(v, "9999-12-31") for v in table["first_date"].tolist()],
                     dtype="datetime64[D]")
    last = np.array([_day_or(v, "0001-01-01") for v in table["last_date"].tolist()],
                    dtype="datetime64[D]")
    delist = store.events(symbols, kinds=["delisting"])
    if len(delist):
        by_sym = delist.groupby("symbol")["date"].min()
        for i, s in enumerate(symbols):
            if s in by_sym.index:
                cut = np.datetime64(by_sym[s].date(), "D") - np.timedelta64(1, "D")
                last[i] = min(last[i], cut)
    days = sessions.astype("datetime64[D]")[:, None]
    return (days >= first[None, :]) & (days <= last[None, :])


def classes_of(store: Store, symbols: Sequence[str]) -> dict[str, list[str]]:
    """``{asset class: [symbols]}`` for ``symbols`` as the store records them (a symbol it has
    no class for counts as ``equity``, as the store fills it)."""
    table = store.symbol_table()
    known = dict(zip(table["symbol"].tolist(), table["asset_class"].tolist(), strict=True))
    out: dict[str, list[str]] = {}
    for s in symbols:
        cls = known.get(s)
        out.setdefault(cls if isinstance(cls, str) and cls else "equity", []).append(s)
    return out


def _day_or(value: Any, default: str) -> np.datetime64:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return np.datetime64(default, "D")
    try:
        import pandas as pd

        if pd.isna(value):
            return np.datetime64(default, "D")
    except (TypeError, ValueError):
        pass
    return to_day(value)


def _nanmedian_columns(values: np.ndarray) -> np.ndarray:
    """Column medians ignoring NaN (sort-based: NaN sort last), NaN for empty columns."""
    ordered = np.sort(values, axis=0)
    count = np.sum(~np.isnan(values), axis=0)
    lo = np.maximum((count - 1) // 2, 0)
    hi = np.maximum(count // 2, 0)
    cols = np.arange(values.shape[1])
    med = 0.5 * (ordered[lo, cols] + ordered[hi, cols])
    return np.where(count > 0, med, np.nan)


class Universe(abc.ABC):
    """A rule that says which symbols are members on each session."""

    name: str = "universe"

    @abc.abstractmethod
    def resolve(self, store: Store, sessions: np.ndarray, *, calendar: str = "XNYS") -> (
        Membership
    ):
        """Membership over ``sessions`` (sorted ``datetime64[D]``)."""

    def asset_classes(self, store: Store) -> dict[str, list[str]] | None:
        """``{asset class: [symbols]}`` of the instruments this universe can hold, when that is
        known without resolving it (``build_panel`` picks the calendar from the classes;
        symbols are examples for error messages and may be empty); ``None`` when unknown:
        ``build_panel`` then resolves the universe on every calendar day and looks at the
        members. Override it in a custom universe to spare that extra resolution."""
        return None

    def members(self, date: Any, store: Store | None = None, *, calendar: str = "XNYS") -> (
        list[str]
    ):
        """Members on the last session on or before ``date``."""
        from mts1b_datalake.store import Store

        store = store or Store.default()
        day = to_day(date)
        days = trading_days(calendar, day - np.timedelta64(10, "D"), day)
        if not len(days):
            return []
        m = self.resolve(store, days[-1:], calendar=calendar)
        last_row: list[bool] = m.mask[-1].tolist()
        return [s for s, keep in zip(m.symbols, last_row, strict=True) if keep]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class StaticUniverse(Universe):
    """A fixed list of symbols; each is a member while listed."""

    def __init__(self, symbols: Sequence[str], name: str | None = None) -> None:
        if isinstance(symbols, str):
            symbols = [symbols]
        seen: dict[str, None] = {}
        for s in symbols:
            seen[str(s)] = None
        self.symbols = list(seen)
        if not self.symbols:
            raise UnknownFieldError("a static universe needs at least one symbol",
                                    field="universe", value=[])
        self.name = name or ",".join(self.symbols[:5]) + ("..." if len(self.symbols) > 5 else "")

    def asset_classes(self, store: Store) -> dict[str, list[str]] | None:
        """The store's class of each symbol (UnknownSymbolError naming any it lacks)."""
        store.require_symbols(self.symbols)
        return classes_of(store, self.symbols)

    def resolve(self, store: Store, sessions: np.ndarray, *, calendar: str = "XNYS") -> (
        Membership
    ):
        store.require_symbols(self.symbols)
        symbols = list(self.symbols)
        return Membership(symbols, listing_mask(store, symbols, sessions))


_REBALANCE = ("daily", "weekly", "monthly", "quarterly")


def rebalance_rows(sessions: np.ndarray, rebalance: str) -> np.ndarray:
    """Row indices of ``sessions`` where the membership is re-selected (always includes 0)."""
    if rebalance not in _REBALANCE:
        raise UnknownFieldError(f"rebalance must be one of {list(_REBALANCE)}, not "
                                f"{rebalance!r}", field="rebalance", value=rebalance)
    n = len(sessions)
    if n == 0:
        return np.array([], dtype=np.int64)
    if rebalance == "daily":
        return np.arange(n)
    days = sessions.astype("datetime64[D]")
    if rebalance == "weekly":
        key = (days.astype(np.int64) + 3) // 7  # weeks starting Monday
    elif rebalance == "monthly":
        key = days.astype("datetime64[M]").astype(np.int64)
    else:
        key = days.astype("datetime64[M]").astype(np.int64) // 3
    change = np.r_[True, key[1:] != key[:-1]]
    return np.flatnonzero(change)


class TopLiquidityUniverse(Universe):
    """Top ``n`` symbols of ``asset_class`` by trailing median dollar volume, point in time.

    At each rebalance session ``r`` the score of a symbol is the median of raw close x volume
    over the ``lookback`` sessions before ``r``; symbols with fewer than ``min_history`` bars in
    that window, no bar on the session before ``r``, or a delisting on or before ``r`` are not
    eligible. Members hold until the next rebalance, or until their last bar if they stop
    trading. ``n=None`` takes every eligible symbol.
    """

    def __init__(self, n: int | None = 100, *, lookback: int = 63, rebalance: str = "monthly",
                 min_history: int = 21, asset_class: str | Sequence[str] = "equity",
                 name: str = "us-large-cap") -> None:
        if n is not None and n < 1:
            raise UnknownFieldError(f"n must be >= 1, not {n}", field="n", value=n)
        if lookback < 1 or min_history < 1 or min_history > lookback:
            raise UnknownFieldError(
                f"need 1 <= min_history ({min_history}) <= lookback ({lookback})",
                field="lookback", value=lookback)
        rebalance_rows(np.array([], dtype="datetime64[D]"), rebalance)  # validates the name
        if rebalance not in _REBALANCE:
            raise UnknownFieldError(f"unknown rebalance {rebalance!r}", field="rebalance",
                                    value=rebalance)
        self.n = n
        self.lookback = lookback
        self.rebalance = rebalance
        self.min_history = min_history
        self.asset_class = asset_class
        self.name = name

    def __repr__(self) -> str:
        return (f"TopLiquidityUniverse(name={self.name!r}, n={self.n}, lookback={self.lookback}, "
                f"rebalance={self.rebalance!r})")

    def asset_classes(self, store: Store) -> dict[str, list[str]] | None:
        """The classes it selects from (``asset_class``), whatever the store holds."""
        classes = [self.asset_class] if isinstance(self.asset_class, str) else list(
            self.asset_class)
        return {c: [] for c in classes}

    def resolve(self, store: Store, sessions: np.ndarray, *, calendar: str = "XNYS") -> (
        Membership
    ):
        sessions = sessions.astype("datetime64[D]")
        T = len(sessions)
        candidates = store.symbols(asset_class=self.asset_class)
        if T == 0 or not candidates:
            return Membership([], np.zeros((T, 0), dtype=bool))
        # sessions before the first one, for the first look-back window
        span = int(self.lookback * 1.6) + 15
        before = trading_days(calendar, sessions[0] - np.timedelta64(span, "D"),
                              sessions[0] - np.timedelta64(1, "D"))[-self.lookback:]
        days = np.concatenate([before, sessions])
        offset = len(before)
        table = store.read_bars_arrow(candidates, days[0].astype(dt.date),
                                      days[-1].astype(dt.date), columns=["close", "volume"])
        A = len(candidates)
        dv = np.full((len(days), A), np.nan)
        if table.num_rows:
            col = pc.index_in(table["symbol"], value_set=pa.array(candidates)).to_numpy(
                zero_copy_only=False)
            day_int = table["date"].cast(pa.int32()).to_numpy(zero_copy_only=False)
            row = np.searchsorted(days.astype(np.int64), day_int)
            ok = (row < len(days)) & (days.astype(np.int64)[np.minimum(row, len(days) - 1)]
                                      == day_int)
            close = table["close"].to_numpy(zero_copy_only=False)
            vol = table["volume"].to_numpy(zero_copy_only=False)
            with np.errstate(invalid="ignore"):
                dv[row[ok], col[ok]] = close[ok] * vol[ok]
        listed = listing_mask(store, candidates, days)
        dv[~listed] = np.nan
        mask = np.zeros((T, A), dtype=bool)
        rows = rebalance_rows(sessions, self.rebalance)
        bounds = np.r_[rows, T]
        for k, r in enumerate(rows):
            at = r + offset
            window = dv[max(0, at - self.lookback):at]
            count = np.sum(~np.isnan(window), axis=0)
            traded_yesterday = ~np.isnan(dv[at - 1]) if at > 0 else np.zeros(A, dtype=bool)
            eligible = (count >= self.min_history) & traded_yesterday & listed[at]
            if not eligible.any():
                continue
            idx = np.flatnonzero(eligible)
            if self.n is not None and len(idx) > self.n:
                score = _nanmedian_columns(window[:, idx])
                order = np.lexsort((np.array(candidates, dtype=object)[idx].astype(str),
                                    -score))
                idx = idx[order[: self.n]]
            mask[r:bounds[k + 1], idx] = True
        mask &= listed[offset:]
        keep: np.ndarray = np.asarray(mask.any(axis=0), dtype=bool)
        flags = [bool(x) for x in keep]
        symbols = [s for s, k in zip(candidates, flags, strict=True) if k]
        return Membership(symbols, mask[:, keep])


# -- registry ---------------------------------------------------------------------------------
_registry: dict[str, Callable[..., Universe]] = {}
_registry_lock = threading.Lock()


def register_universe(name: str, rule: Callable[..., Universe] | Universe | Sequence[str], *,
                      replace: bool = False) -> None:
    """Register ``rule`` under ``name``: a factory ``(**params) -> Universe``, a Universe or a
    list of symbols. Re-registering a name needs ``replace=True``."""
    if not name or not isinstance(name, str):
        raise UnknownFieldError("universe name must be a non-empty string", field="name",
                                value=name)
    if isinstance(rule, Universe):
        instance = rule
        factory: Callable[..., Universe] = lambda **_: instance  # noqa: E731
    elif callable(rule):
        factory = rule
    else:
        symbols = list(rule)
        factory = lambda **_: StaticUniverse(symbols, name=name)  # noqa: E731
    with _registry_lock:
        if name in _registry and not replace:
            raise UnknownFieldError(f"universe {name!r} is already registered (pass "
                                    f"replace=True)", field="name", value=name)
        _registry[name] = factory


def unregister_universe(name: str) -> None:
    with _registry_lock:
        _registry.pop(name, None)


def registered_universes() -> list[str]:
    return sorted(_registry)


def universe(name: str, **params: Any) -> Universe:
    """The registered universe ``name``, built with ``params`` (e.g. ``n=50``)."""
    try:
        factory = _registry[name]
    except KeyError:
        raise UnknownUniverseError(
            f"unknown universe {name!r}; registered: {registered_universes()} (or pass a list "
            f"of symbols)", field="universe", value=name) from None
    try:
        built = factory(**params)
    except TypeError as exc:
        raise UnknownFieldError(f"universe {name!r} does not take {sorted(params)}: {exc}",
                                field="params", value=sorted(params)) from exc
    if params and built.name == name:
        shown = ",".join(f"{k}={v}" for k, v in sorted(params.items()))
        built.name = f"{name}({shown})"
    return built


def parse_universe(text: str) -> str | list[str]:
    """A command line's universe argument: a registered name (or any lower-case word, so an
    unknown name is reported as one), else comma-separated symbols (``"SPY"``,
    ``"BTC-USD,ETH-USD"``). Both the datalake's and the backtester's commands read it so."""
    if text in registered_universes() or ("," not in text and text.islower()):
        return text
    return [s.strip() for s in text.split(",") if s.strip()]


def resolve_universe(spec: str | Sequence[str] | Universe,
                     params: Mapping[str, Any] | None = None) -> Universe:
    """A Universe from a registered name, a list of symbols, or a Universe."""
    if isinstance(spec, Universe):
        return spec
    if isinstance(spec, str):
        return universe(spec, **dict(params or {}))
    if isinstance(spec, Sequence):
        return StaticUniverse(list(spec))
    raise UnknownUniverseError(f"universe must be a name, a list of symbols or a Universe, "
                               f"not {type(spec).__name__}", field="universe", value=repr(spec))


register_universe("us-large-cap", lambda n=100, lookback=63, rebalance="monthly",
                  min_history=21: TopLiquidityUniverse(n, lookback=lookback, rebalance=rebalance,
                                                       min_history=min_history,
                                                       name="us-large-cap"))
register_universe("us-all", lambda lookback=21, rebalance="monthly", min_history=1:
                  TopLiquidityUniverse(None, lookback=lookback, rebalance=rebalance,
                                       min_history=min_history, name="us-all"))
