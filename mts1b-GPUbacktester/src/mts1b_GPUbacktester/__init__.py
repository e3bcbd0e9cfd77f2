"""mts1b-GPUbacktester: vectorized backtests of factors on panels, on numpy or cupy.

>>> from mts1b_GPUbacktester import run_single                       # doctest: +SKIP
>>> from mts1b_quantkit.factors import get                           # doctest: +SKIP
>>> result = run_single(factor=get("f_sma_cross"), params={"p_fast": 20, "p_slow": 50},
...                     universe="us-large-cap", start="2014-01-01", end="2024-01-01",
...                     rebal="daily", sizing={"method": "equal_weight_long", "gross": 1.0},
...                     cost_bps=10)                                 # doctest: +SKIP
>>> result.sharpe, result.cagr, result.max_drawdown                  # doctest: +SKIP
>>> result.report("tearsheet.html")                                  # doctest: +SKIP
"""

from mts1b_GPUbacktester.backend import Backend, cupy_status, resolve_backend
from mts1b_GPUbacktester.engine import run_single, run_weights
from mts1b_GPUbacktester.errors import BackendUnavailable, BacktestConfigError, BacktestError
from mts1b_GPUbacktester.ladder import LadderResult, expand_grid, run_ladder, sma_cross_ladder
from mts1b_GPUbacktester.result import BacktestResult
from mts1b_GPUbacktester.walkforward import WalkForwardResult, run_walk_forward

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "BackendUnavailable",
    "BacktestConfigError",
    "BacktestError",
    "BacktestResult",
    "LadderResult",
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
