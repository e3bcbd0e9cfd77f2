"""``BacktestResult``: what a run returns.

Every performance number comes from :mod:`mts1b_quantkit.metrics` (the one home of Sharpe,
CAGR, drawdown...); this class only holds the run's records and hands them to those functions.

The records are numpy arrays; the pandas views (``equity``, ``trades``, ...) are built on first
access, and pandas is imported only then, so a run whose caller reads only the metrics (a
ladder, the CLI's numbers) never imports it.

Annualised numbers (Sharpe, CAGR, volatility, ...) use the run's ``periods_per_year``: the rows
of a crypto panel are every day (365 a year), of an FX panel every weekday (260), of an equity
panel the exchange's sessions (252). A result states the number and where it came from.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from mts1b_GPUbacktester.sim import REASONS, FillLedger

if TYPE_CHECKING:
    import pandas as pd

    from mts1b_GPUbacktester.spec import RunSpec

__all__ = ["BacktestResult"]


def _qm() -> Any:
    """:mod:`mts1b_quantkit.metrics`, imported on first use: it pulls in scipy, which a
    ladder-only or kernel-only process never needs."""
    from mts1b_quantkit import metrics

    return metrics


def _pd() -> Any:
    """pandas, imported when the first pandas view of a result is built."""
    import pandas

    return pandas


FloatArray = npt.NDArray[np.float64]


def _annualises(fn: Any) -> bool:
    """Whether a quantkit metric takes ``periods_per_year``."""
    try:
        return "periods_per_year" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return False

_FILL_COLUMNS = ["date", "symbol", "side", "shares", "price", "notional", "commission",
                 "slippage", "reason"]


class BacktestResult:
    """The outcome of :func:`~mts1b_GPUbacktester.run_single`.

    Attributes (pandas objects are indexed by trading date, ``T`` rows from the first trading
    day):

    ``equity``
        NAV after each day's close (``pd.Series``).
    ``returns``
        daily simple returns of the NAV; the first is against ``initial_nav``.
    ``weights``
        ``(T, A)`` held weights (position value / NAV) after each close (``pd.DataFrame``);
        ``weights_array`` is the same as a numpy array.
    ``target_weights``
        ``(T, A)`` targets the sizing produced on each decision row.
    ``trades``
        the ledger: one row per fill (date, symbol, side, shares, price, notional, commission,
        slippage, reason in ``rebalance | carry | universe_exit | delisted``).
    ``costs``
        per-day commission, slippage, borrow and traded notional (``pd.DataFrame``);
        ``cost_breakdown`` has the totals.
    ``benchmark_returns``
        the benchmark's daily returns over the same days (``None`` if there is none).
    ``backend``
        ``{"backend", "reason", "device"}``: which array library ran the kernels, and why.
    ``spec``
        the :class:`~mts1b_GPUbacktester.spec.RunSpec` the run traded under (the tearsheet's
        settings table); ``config`` is its settings as plain values plus what was run
        (factor, params, universe, start, end).
    ``periods_per_year``, ``periods_per_year_source``, ``calendar``
        the rows per year every annualised number uses (252, 260, 365...), where that came
        from (the spec, the panel's calendar, or the default), and the panel's calendar.

    Metrics: ``sharpe``, ``cagr``, ``max_drawdown``, ``volatility``, ``sortino``, ``calmar``,
    ``turnover`` (mean one-way turnover per day), ``total_return`` and every key of
    :func:`mts1b_quantkit.metrics.summary` are attributes; ``metrics`` is the dict of them all.
    """

    def __init__(self, *, dates: npt.NDArray[np.datetime64], symbols: tuple[str, ...],
                 nav: FloatArray, initial_nav: float, weights: FloatArray,
                 target_weights: FloatArray, asset_returns: FloatArray,
                 fills: FillLedger, commission: FloatArray, slippage: FloatArray,
                 borrow: FloatArray, traded: FloatArray,
                 benchmark_returns: FloatArray | None, benchmark_name: str | None,
                 backend: dict[str, str | None], config: dict[str, Any],
                 spec: RunSpec | None = None, periods_per_year: float = 252.0,
                 periods_per_year_source: str = "default", calendar: str | None = None
                 ) -> None:
        self._dates = dates
        self.symbols = symbols
        self.initial_nav = float(initial_nav)
        self._nav = nav
        self.weights_array = weights
        self.target_weights_array = target_weights
        self._asset_returns = asset_returns
        self._fills = fills
        self._costs = np.stack([commission, slippage, borrow, traded], axis=1)
        self._bench = benchmark_returns
        self.benchmark_name = benchmark_name
        self.backend = backend
        self.config = config
        if spec is None:
            from mts1b_GPUbacktester.spec import RunSpec

            spec = RunSpec()
        self.spec = spec
        self.periods_per_year = float(periods_per_year)
        self.periods_per_year_source = periods_per_year_source
        self.calendar = calendar

    # -- records ------------------------------------------------------------------------------
    @functools.cached_property
    def _index(self) -> pd.DatetimeIndex:
        return _pd().DatetimeIndex(self._dates.astype("datetime64[ns]"), name="date")

    @functools.cached_property
    def _returns_array(self) -> FloatArray:
        """Daily simple returns of the NAV (the first against ``initial_nav``), as numpy."""
        prev = np.concatenate([[self.initial_nav], self._nav[:-1]])
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(prev != 0, self._nav / prev - 1.0, 0.0)

    @functools.cached_property
    def _turnover_array(self) -> FloatArray:
        return np.asarray(_qm().turnover(self.weights_array, self._asset_returns),
                          dtype=np.float64)

    @functools.cached_property
    def equity(self) -> pd.Series:
        return _pd().Series(self._nav, index=self._index, name="equity")

    @functools.cached_property
    def returns(self) -> pd.Series:
        return _pd().Series(self._returns_array, index=self._index, name="returns")

    @functools.cached_property
    def weights(self) -> pd.DataFrame:
        return _pd().DataFrame(self.weights_array, index=self._index, columns=list(self.symbols))

    @functools.cached_property
    def target_weights(self) -> pd.DataFrame:
        return _pd().DataFrame(self.target_weights_array, index=self._index,
                            columns=list(self.symbols))

    @functools.cached_property
    def trades(self) -> pd.DataFrame:
        pd = _pd()
        led = self._fills
        if not len(led):
            return pd.DataFrame({c: [] for c in _FILL_COLUMNS})
        rows, cols, qty, price = led.row, led.asset, led.shares, led.price
        comm, slip, reason = led.commission, led.slippage, led.reason
        return pd.DataFrame({
            "date": self._index[rows], "symbol": np.asarray(self.symbols, dtype=object)[cols],
            "side": np.where(qty > 0, "buy", "sell"), "shares": qty, "price": price,
            "notional": np.abs(qty * price), "commission": comm, "slippage": slip,
            "reason": np.asarray(REASONS, dtype=object)[reason],
        })

    @functools.cached_property
    def costs(self) -> pd.DataFrame:
        return _pd().DataFrame(self._costs, index=self._index,
                            columns=["commission", "slippage", "borrow", "traded"])

    @property
    def cost_breakdown(self) -> dict[str, float]:
        """Totals in currency: commission, slippage, borrow, total, and traded notional."""
        tot = self._costs.sum(axis=0)
        return {"commission": float(tot[0]), "slippage": float(tot[1]),
                "borrow": float(tot[2]), "total": float(tot[:3].sum()),
                "traded_notional": float(tot[3])}

    @property
    def benchmark_returns(self) -> pd.Series | None:
        if self._bench is None:
            return None
        return _pd().Series(self._bench, index=self._index,
                            name=self.benchmark_name or "benchmark")

    @property
    def exposure(self) -> pd.DataFrame:
        """Gross, net, long and short exposure after each close, as fractions of NAV."""
        w = np.nan_to_num(self.weights_array)
        return _pd().DataFrame({"gross": np.abs(w).sum(axis=1), "net": w.sum(axis=1),
                                "long": np.clip(w, 0, None).sum(axis=1),
                                "short": np.clip(w, None, 0).sum(axis=1)}, index=self._index)

    @functools.cached_property
    def turnover_series(self) -> pd.Series:
        """One-way turnover per day (:func:`mts1b_quantkit.metrics.turnover` of the held
        weights against the assets' close-to-close returns)."""
        return _pd().Series(self._turnover_array, index=self._index, name="turnover")

    # -- metrics ------------------------------------------------------------------------------
    @functools.cached_property
    def metrics(self) -> dict[str, float]:
        """Every headline number, all computed by :mod:`mts1b_quantkit.metrics`, annualised
        with :attr:`periods_per_year`."""
        r = self._returns_array
        qm = _qm()
        ppy = self.periods_per_year
        out: dict[str, float] = dict(
            qm.summary(r, self._bench, periods_per_year=ppy) if self._bench is not None
            else qm.summary(r, periods_per_year=ppy))
        out["cagr"] = float(qm.cagr(r, periods_per_year=ppy))
        out["volatility"] = float(qm.volatility(r, periods_per_year=ppy))
        out["total_return"] = float(qm.cum_returns_final(r))
        out["turnover"] = float(np.mean(self._turnover_array))
        out["final_nav"] = float(self._nav[-1])
        return out

    @property
    def sharpe(self) -> float:
        return self.metrics["sharpe"]

    @property
    def cagr(self) -> float:
        return self.metrics["cagr"]

    @property
    def max_drawdown(self) -> float:
        return self.metrics["max_drawdown"]

    @property
    def volatility(self) -> float:
        return self.metrics["volatility"]

    @property
    def sortino(self) -> float:
        return self.metrics["sortino"]

    @property
    def calmar(self) -> float:
        return self.metrics["calmar"]

    @property
    def turnover(self) -> float:
        return self.metrics["turnover"]

    @property
    def total_return(self) -> float:
        return self.metrics["total_return"]

    def __getattr__(self, name: str) -> float:
        # only reached for names that are not attributes: the rest of quantkit's summary
        if name.startswith("_"):
            raise AttributeError(name)
        m = self.metrics
        if name in m:
            return m[name]
        raise AttributeError(f"BacktestResult has no attribute or metric {name!r}; metrics: "
                             f"{sorted(m)}")

    def metric(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Any :mod:`mts1b_quantkit.metrics` function applied to the daily returns, e.g.
        ``result.metric("value_at_risk", cutoff=0.01)``; a function that annualises gets the
        run's :attr:`periods_per_year` unless ``periods_per_year=`` is given."""
        fn = getattr(_qm(), name, None)
        if fn is None or not callable(fn):
            raise AttributeError(f"mts1b_quantkit.metrics has no function {name!r}")
        if "periods_per_year" not in kwargs and _annualises(fn):
            kwargs["periods_per_year"] = self.periods_per_year
        return fn(self._returns_array, *args, **kwargs)

    # -- views ------------------------------------------------------------------------------
    def drawdown(self) -> pd.Series:
        """Drawdown from the running peak (:func:`mts1b_quantkit.metrics.drawdown_series`)."""
        return _pd().Series(_qm().drawdown_series(self._returns_array), index=self._index,
                            name="drawdown")

    def to_frame(self) -> pd.DataFrame:
        """One row per day: equity, returns, drawdown, exposure, turnover, costs, benchmark."""
        frame = _pd().concat([self.equity, self.returns, self.drawdown(), self.exposure,
                           self.turnover_series, self.costs], axis=1)
        if self._bench is not None:
            frame["benchmark_returns"] = self._bench
        return frame

    def report(self, path: str | Path = "tearsheet.html", *, title: str | None = None) -> Path:
        """Write the self-contained HTML tearsheet to ``path`` and return the path."""
        from mts1b_GPUbacktester.report import write_tearsheet

        return write_tearsheet(self, path, title=title)

    def summary(self) -> dict[str, float]:
        """The headline numbers as a plain dict (a copy of :attr:`metrics`)."""
        return dict(self.metrics)

    def __repr__(self) -> str:
        m = self.metrics
        first, last = self._dates[0].astype("datetime64[D]"), self._dates[-1].astype(
            "datetime64[D]")
        return (f"BacktestResult({first}..{last}, "
                f"A={len(self.symbols)}, sharpe={m['sharpe']:.2f}, cagr={m['cagr']:.2%}, "
                f"max_drawdown={m['max_drawdown']:.2%}, backend={self.backend['backend']}, "
                f"periods_per_year={self.periods_per_year:g})")
