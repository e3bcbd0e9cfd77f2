"""Factors: the registry, the ``evaluate`` helper, the look-ahead guard and the primitives.

The rolling windows live in :mod:`mts1b_quantkit.factors.rolling` (O(T x A), NaN policy and
precision stated there); ``register(..., ladder=LadderEvaluator(...))`` gives a factor a fast
path for parameter ladders (see :class:`LadderEvaluator`).

A factor is a pure function ``f(panel, /, **params)`` of a
:class:`~mts1b_foundation.UniversePanel`. It returns either a ``(T, A)`` array (row ``t`` may use
rows ``<= t`` only) or one cross-section ``(A,)`` for the panel's last date, which
:func:`evaluate` turns into ``(T, A)`` point in time.

>>> from mts1b_quantkit.factors import register, get, zscore_cross_sectional
>>> @register("f_doc_example", replace=True)
... def f_doc_example(panel, /, h=21):
...     return zscore_cross_sectional(panel.close[-1] / panel.close[-h] - 1)
>>> get("f_doc_example") is f_doc_example
True
"""

from mts1b_quantkit.factors._evaluate import (
    LookaheadReport,
    check_lookahead,
    evaluate,
    panel_prefix,
)
from mts1b_quantkit.factors._registry import (
    ENTRY_POINT_GROUP,
    LadderEvaluator,
    discover,
    get,
    get_ladder,
    list_factors,
    register,
    unregister,
)
from mts1b_quantkit.factors.primitives import (
    MACD,
    Bollinger,
    atr,
    bollinger,
    demean,
    ema,
    ewm_mean,
    log_returns,
    macd,
    momentum_12_1,
    neutralize,
    rank_cross_sectional,
    returns,
    rsi,
    shift,
    sma,
    winsorize,
    zscore_cross_sectional,
)
from mts1b_quantkit.factors.rolling import (
    rolling_max,
    rolling_mean,
    rolling_means,
    rolling_min,
    rolling_std,
    rolling_sum,
)

list = list_factors  # the seeds' name: mts1b_quantkit.factors.list()

# Built-in factors register themselves on import (after the registry exists).
from mts1b_quantkit.factors._builtin import sma_cross_signals  # noqa: E402

__all__ = [
    "ENTRY_POINT_GROUP",
    "MACD",
    "Bollinger",
    "LadderEvaluator",
    "LookaheadReport",
    "atr",
    "bollinger",
    "check_lookahead",
    "demean",
    "discover",
    "ema",
    "evaluate",
    "ewm_mean",
    "get",
    "get_ladder",
    "list",
    "list_factors",
    "log_returns",
    "macd",
    "momentum_12_1",
    "neutralize",
    "panel_prefix",
    "rank_cross_sectional",
    "register",
    "returns",
    "rolling_max",
    "rolling_mean",
    "rolling_means",
    "rolling_min",
    "rolling_std",
    "rolling_sum",
    "rsi",
    "shift",
    "sma",
    "sma_cross_signals",
    "unregister",
    "winsorize",
    "zscore_cross_sectional",
]

