"""mts1b-quantkit: the canonical home of MTS1B's quant primitives.

Submodules (import the one you need):

* :mod:`mts1b_quantkit.factors` - factor registry, ``evaluate``, look-ahead guard, primitives
* :mod:`mts1b_quantkit.metrics` - Sharpe, Sortino, drawdown, CAGR, ... (empyrical conventions)
* :mod:`mts1b_quantkit.analytics` - information coefficient, quantile returns, turnover, decay
* :mod:`mts1b_quantkit.portfolio` - HRP, Black-Litterman, mean-variance, ERC, covariance
* :mod:`mts1b_quantkit.cv` - walk-forward, purged k-fold, combinatorial purged CV
* :mod:`mts1b_quantkit.sizing` - scores to weights (``{"method": ..., ...}`` specs)

Submodules and error classes are imported lazily, on first attribute access (as
``mts1b_platform`` does): ``import mts1b_quantkit`` loads none of them, and
``from mts1b_quantkit import metrics`` loads metrics and what it needs, not the optimizers.
None of them imports scipy when it loads; the functions that need it (the optimizers, HRP's
clustering, the IC t-test) import it when called.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mts1b_quantkit import analytics, covariance, cv, factors, metrics, portfolio, sizing
    from mts1b_quantkit.errors import (
        CVError,
        FactorError,
        FactorRegistryError,
        InfeasibleError,
        MetricsError,
        OptimizationError,
        QuantkitError,
        SingularCovarianceError,
        SizingError,
        UnknownFactorError,
    )

_SUBMODULES = frozenset(
    {"analytics", "covariance", "cv", "factors", "metrics", "portfolio", "sizing"})
_ERRORS = frozenset({
    "CVError", "FactorError", "FactorRegistryError", "InfeasibleError", "MetricsError",
    "OptimizationError", "QuantkitError", "SingularCovarianceError", "SizingError",
    "UnknownFactorError",
})

__version__ = "0.1.0"

__all__ = [
    "CVError",
    "FactorError",
    "FactorRegistryError",
    "InfeasibleError",
    "MetricsError",
    "OptimizationError",
    "QuantkitError",
    "SingularCovarianceError",
    "SizingError",
    "UnknownFactorError",
    "__version__",
    "analytics",
    "covariance",
    "cv",
    "factors",
    "metrics",
    "portfolio",
    "sizing",
]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        value: Any = importlib.import_module(f"mts1b_quantkit.{name}")
    elif name in _ERRORS:
        value = getattr(importlib.import_module("mts1b_quantkit.errors"), name)
    else:
        raise AttributeError(f"module 'mts1b_quantkit' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
