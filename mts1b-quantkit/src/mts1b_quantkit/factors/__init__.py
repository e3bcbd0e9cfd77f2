"""Factors: the registry, the ``evaluate`` helper, the look-ahead guard and the primitives.

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
    discover,
    get,
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
    rolling_max,
    rolling_mean,
    rolling_min,
    rolling_std,
    rolling_sum,
    rsi,
    shift,
    sma,
    winsorize,
    zscore_cross_sectional,
)

list = list_factors  # the seeds' name: mts1b_quantkit.factors.list()

# Built-in factors register themselves on import (after the registry exists).
from mts1b_quantkit.factors import _builtin  # noqa: E402, F401

__all__ = [
    "ENTRY_POINT_GROUP",
    "MACD",
    "Bollinger",
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
    "rolling_min",
    "rolling_std",
    "rolling_sum",
    "rsi",
    "shift",
    "sma",
    "unregister",
    "winsorize",
    "zscore_cross_sectional",
]

