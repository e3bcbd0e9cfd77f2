"""Portfolio construction: the one home of HRP, Black-Litterman, mean-variance and risk parity.

Weights are ``(N,)`` float64 arrays in the order of the input assets. Covariances are ``(N, N)``
in per-period or annual units (the optimizers do not care, as long as ``mu`` uses the same
ones); estimators live in :mod:`mts1b_quantkit.covariance` and are re-exported here.
Infeasible constraints raise :class:`~mts1b_quantkit.errors.InfeasibleError`; singular or
non-PSD covariances raise :class:`~mts1b_quantkit.errors.SingularCovarianceError`.
"""

from mts1b_quantkit.covariance import (
    Shrinkage,
    check_covariance,
    corr_to_cov,
    cov_to_corr,
    exp_cov,
    ledoit_wolf,
    sample_corr,
    sample_cov,
)
from mts1b_quantkit.portfolio._bl import (
    BlackLittermanResult,
    black_litterman,
    idzorek_omega,
    market_implied_prior_returns,
    market_implied_risk_aversion,
)
from mts1b_quantkit.portfolio._erc import equal_risk_contribution, risk_contributions
from mts1b_quantkit.portfolio._hrp import HRPResult, hrp, hrp_result
from mts1b_quantkit.portfolio._mv import (
    Performance,
    efficient_return,
    efficient_risk,
    max_quadratic_utility,
    max_sharpe,
    min_variance,
    portfolio_performance,
)

__all__ = [
    "BlackLittermanResult",
    "HRPResult",
    "Performance",
    "Shrinkage",
    "black_litterman",
    "check_covariance",
    "corr_to_cov",
    "cov_to_corr",
    "efficient_return",
    "efficient_risk",
    "equal_risk_contribution",
    "exp_cov",
    "hrp",
    "hrp_result",
    "idzorek_omega",
    "ledoit_wolf",
    "market_implied_prior_returns",
    "market_implied_risk_aversion",
    "max_quadratic_utility",
    "max_sharpe",
    "min_variance",
    "portfolio_performance",
    "risk_contributions",
    "sample_corr",
    "sample_cov",
]
