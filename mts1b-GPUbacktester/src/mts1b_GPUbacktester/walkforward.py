"""Walk-forward optimisation: choose parameters in sample, record the out-of-sample result.

For each split of a :mod:`mts1b_quantkit.cv` splitter over the trading days, the grid is run
as a ladder on the training days, the combination with the best ``objective`` is chosen, and
that combination is backtested on the test days (its factor sees all history up to each
day, never the future). The out-of-sample record is the test days' returns chained together;
each test fold starts from cash, so a fold's first trades are charged to it.

Every ladder and every out-of-sample run trades under one
:class:`~mts1b_GPUbacktester.spec.RunSpec` (built once from the keyword settings or ``spec=``),
and the chained record is annualised with the panel calendar's periods per year.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Unpack

import numpy as np
import numpy.typing as npt

from mts1b_GPUbacktester.data import resolve_universe
from mts1b_GPUbacktester.engine import run_single
from mts1b_GPUbacktester.errors import BacktestConfigError
from mts1b_GPUbacktester.ladder import run_ladder
from mts1b_GPUbacktester.result import BacktestResult
from mts1b_GPUbacktester.spec import DEFAULT_PERIODS_PER_YEAR, RunSettings, RunSpec

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["WalkForwardResult", "run_walk_forward"]


@dataclass
class WalkForwardResult:
    """``folds``: one row per split (dates, chosen parameters, in-sample objective,
    out-of-sample metrics). ``returns``: the chained out-of-sample daily returns.
    ``results``: the out-of-sample :class:`BacktestResult` of each fold. ``spec``: the
    settings every run used; ``periods_per_year``: what :attr:`metrics` annualise with."""

    folds: pd.DataFrame
    returns: pd.Series
    results: list[BacktestResult]
    objective: str
    spec: RunSpec | None = None
    periods_per_year: float = DEFAULT_PERIODS_PER_YEAR

    @property
    def equity(self) -> pd.Series:
        import pandas as pd
        from mts1b_quantkit import metrics as qm

        return pd.Series(1.0 + np.asarray(qm.cum_returns(self.returns.to_numpy())),
                         index=self.returns.index, name="oos_equity")

    @property
    def metrics(self) -> dict[str, float]:
        """quantkit's summary of the out-of-sample returns, annualised with
        :attr:`periods_per_year`."""
        from mts1b_quantkit import metrics as qm

        return qm.summary(self.returns.to_numpy(), periods_per_year=self.periods_per_year)


def _splits(cv: Any, n: int) -> Iterable[tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]]:
    for train, test in cv.split(np.arange(n)):
        yield np.asarray(train, dtype=np.intp), np.asarray(test, dtype=np.intp)


#: ``run_walk_forward``'s own arguments (beside the settings of a RunSpec)
_RUN_WF_ARGS = ("factor", "grid", "universe", "start", "end", "cv", "n_splits", "objective",
                "constraint", "store", "progress", "executor")


def run_walk_forward(factor: Callable[..., Any] | str, grid: Mapping[str, Sequence[Any]], *,
                     universe: Any, start: Any = None, end: Any = None, cv: Any = None,
                     n_splits: int = 5, objective: str = "sharpe",
                     constraint: Callable[[dict[str, Any]], bool] | None = None,
                     store: Any = None, progress: bool = False, executor: str = "local",
                     spec: RunSpec | None = None,
                     **settings: Unpack[RunSettings]) -> WalkForwardResult:
    """Walk-forward optimisation of ``factor`` over ``grid``.

    ``cv`` is any splitter with ``split(X) -> (train_idx, test_idx)`` over the trading days
    (default: ``mts1b_quantkit.cv.WalkForward(n_splits=n_splits)``). ``objective`` is a
    column of the ladder table (``"sharpe"``, ``"cagr"``, ``"calmar"``...; higher is better).
    The settings (``spec=`` and/or keyword arguments: ``rebal``, ``sizing``, ``cost_bps``,
    ``fill``, ``trade_on``, ``warmup_days``...; see
    :class:`~mts1b_GPUbacktester.spec.RunSpec`) apply to both the in-sample ladders and the
    out-of-sample runs; any other keyword is a BacktestConfigError listing the accepted ones.
    """
    run = RunSpec.build(spec, settings, where="run_walk_forward", also=_RUN_WF_ARGS)
    if cv is None:
        from mts1b_quantkit.cv import WalkForward

        cv = WalkForward(n_splits=n_splits)
    panel, row0 = resolve_universe(universe, start, end, warmup_days=run.warmup_days,
                                   store=store, calendar=run.calendar)
    ppy, _ = run.periods_per_year_for(panel)
    dates = panel.dates
    n = len(dates) - row0
    folds: list[dict[str, Any]] = []
    results: list[BacktestResult] = []
    for k, (train, test) in enumerate(_splits(cv, n)):
        if train.size == 0 or test.size == 0:
            continue
        tr0, tr1 = row0 + int(train.min()), row0 + int(train.max())
        te0, te1 = row0 + int(test.min()), row0 + int(test.max())
        if te0 <= tr1:
            raise BacktestConfigError(
                f"fold {k}: the test days must follow the training days (train ends "
                f"{dates[tr1]}, test starts {dates[te0]})", field="cv", value=repr(cv))
        ladder = run_ladder(factor, grid, universe=panel.until(dates[tr1]), start=dates[tr0],
                            constraint=constraint, progress=progress, executor=executor,
                            spec=run)
        if objective not in ladder.table:
            raise BacktestConfigError(f"objective {objective!r} is not a ladder column "
                                      f"({list(ladder.table.columns)})", field="objective",
                                      value=objective)
        pos = ladder.table[objective].idxmax()
        params = {name: _plain(ladder.table[name].loc[pos]) for name in grid}
        best = ladder.table.loc[pos]
        oos = run_single(factor=factor, params=params, universe=panel.until(dates[te1]),
                         start=dates[te0], spec=run)
        results.append(oos)
        folds.append({"fold": k, "train_start": dates[tr0], "train_end": dates[tr1],
                      "test_start": dates[te0], "test_end": dates[te1], **params,
                      f"is_{objective}": float(best[objective]),
                      "oos_sharpe": oos.sharpe, "oos_total_return": oos.total_return,
                      "oos_max_drawdown": oos.max_drawdown})
    if not results:
        raise BacktestConfigError("the splitter produced no usable fold", field="cv",
                                  value=repr(cv))
    import pandas as pd  # the folds table and the chained returns are pandas objects

    returns = pd.concat([r.returns for r in results])
    returns = returns[~returns.index.duplicated(keep="first")]
    return WalkForwardResult(folds=pd.DataFrame(folds), returns=returns.rename("oos_returns"),
                             results=results, objective=objective, spec=run,
                             periods_per_year=ppy)


def _plain(value: Any) -> Any:
    """numpy scalars from a DataFrame row back to Python ints/floats."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value
