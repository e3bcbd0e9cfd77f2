"""mts1b-GPUbacktester: vectorized backtests of factors on panels, on numpy or cupy.

>>> from mts1b_GPUbacktester import run_single                       # doctest: +SKIP
>>> from mts1b_quantkit.factors import get                           # doctest: +SKIP
>>> result = run_single(factor=get("f_sma_cross"), params={"p_fast": 20, "p_slow": 50},
...                     universe="us-large-cap", start="2014-01-01", end="2024-01-01",
...                     rebal="daily", sizing={"method": "equal_weight_long", "gross": 1.0},
...                     cost_bps=10)                                 # doctest: +SKIP
>>> result.sharpe, result.cagr, result.max_drawdown                  # doctest: +SKIP
>>> result.report("tearsheet.html")                                  # doctest: +SKIP

How a run trades (fill, rebalance, ``trade_on``/``band``, costs, calendar, ...) is one frozen
:class:`RunSpec`; the functions build it from their keyword arguments or take ``spec=``:

>>> from mts1b_GPUbacktester import RunSpec                          # doctest: +SKIP
>>> spec = RunSpec(rebal="weekly", trade_on="signal_change", cost_bps=5)  # doctest: +SKIP
>>> run_single(factor="f_sma_cross", universe=["SPY"], start="2015-01-01",
...            spec=spec)                                            # doctest: +SKIP

The names below are imported lazily, on first attribute access (as ``mts1b_platform`` does), so
``import mts1b_GPUbacktester`` costs next to nothing: the CLI's ``--help``, a process that only
reads ``__version__`` or a ladder worker never pays for modules it does not use. The modules
themselves import pandas, scipy and the datalake only inside the functions that need them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from mts1b_GPUbacktester.backend import Backend, cupy_status, resolve_backend
    from mts1b_GPUbacktester.engine import run_single, run_weights
    from mts1b_GPUbacktester.errors import (
        BackendUnavailable,
        BacktestConfigError,
        BacktestError,
    )
    from mts1b_GPUbacktester.ladder import (
        LadderResult,
        expand_grid,
        run_ladder,
        sma_cross_ladder,
    )
    from mts1b_GPUbacktester.result import BacktestResult
    from mts1b_GPUbacktester.spec import RunSpec
    from mts1b_GPUbacktester.walkforward import WalkForwardResult, run_walk_forward

#: public name -> the submodule that defines it
_EXPORTS: dict[str, str] = {
    "Backend": "backend",
    "cupy_status": "backend",
    "resolve_backend": "backend",
    "run_single": "engine",
    "run_weights": "engine",
    "BackendUnavailable": "errors",
    "BacktestConfigError": "errors",
    "BacktestError": "errors",
    "LadderResult": "ladder",
    "expand_grid": "ladder",
    "run_ladder": "ladder",
    "sma_cross_ladder": "ladder",
    "BacktestResult": "result",
    "RunSpec": "spec",
    "WalkForwardResult": "walkforward",
    "run_walk_forward": "walkforward",
}

__all__ = [
    "Backend",
    "BackendUnavailable",
    "BacktestConfigError",
    "BacktestError",
    "BacktestResult",
    "LadderResult",
    "RunSpec",
    "WalkForwardResult",
    "__version__",
    "cupy_status",
    "expand_grid",
    "resolve_backend",
    "run_ladder",
    "run_single",
    "run_walk_forward",
    "run_weights",
    "sma_cross_ladder",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mts1b_GPUbacktester' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"mts1b_GPUbacktester.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
