"""mts1b-quantkit: the canonical home of MTS1B's quant primitives.

Submodules (import the one you need):

* :mod:`mts1b_quantkit.factors` - factor registry, ``evaluate``, look-ahead guard, primitives
* :mod:`mts1b_quantkit.metrics` - Sharpe, Sortino, drawdown, CAGR, ... (empyrical conventions)
* :mod:`mts1b_quantkit.analytics` - information coefficient, quantile returns, turnover, decay
* :mod:`mts1b_quantkit.portfolio` - HRP, Black-Litterman, mean-variance, ERC, covariance
* :mod:`mts1b_quantkit.cv` - walk-forward, purged k-fold, combinatorial purged CV
* :mod:`mts1b_quantkit.sizing` - scores to weights (``{"method": ..., ...}`` specs)
"""

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
