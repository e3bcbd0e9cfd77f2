"""The public surface: names other libraries and the seeds import must stay put."""

from __future__ import annotations

import importlib

import mts1b_quantkit
import pytest

SURFACE = {
    "mts1b_quantkit.factors": {
        "register", "get", "list", "list_factors", "discover", "unregister", "evaluate",
        "check_lookahead", "LookaheadReport", "ENTRY_POINT_GROUP", "panel_prefix",
        "LadderEvaluator", "get_ladder", "sma_cross_signals", "rolling_means",
        "rolling_mean", "rolling_std", "rolling_sum", "rolling_min", "rolling_max", "ewm_mean",
        "returns", "log_returns", "shift", "sma", "ema", "rsi", "macd", "MACD", "bollinger",
        "Bollinger", "atr", "momentum_12_1", "zscore_cross_sectional", "rank_cross_sectional",
        "demean", "winsorize", "neutralize",
    },
    "mts1b_quantkit.factors.rolling": {
        "rolling_sum", "rolling_mean", "rolling_means", "rolling_std", "rolling_min",
        "rolling_max", "STD_RECHECK", "STD_CHUNK_CELLS", "PREFIX_CHUNK_CELLS",
        "ROW_LOOP_MIN_WIDTH",
    },
    "mts1b_quantkit.metrics": {
        "sharpe", "sortino", "max_drawdown", "drawdown_series", "cagr", "annual_return",
        "calmar", "volatility", "annual_volatility", "annualized_volatility",
        "downside_deviation", "downside_risk", "omega", "tail_ratio", "value_at_risk",
        "conditional_value_at_risk", "alpha_beta", "alpha", "beta", "excess_sharpe",
        "information_ratio", "information_coefficient", "turnover", "hit_rate",
        "probabilistic_sharpe_ratio", "deflated_sharpe_ratio", "expected_max_sharpe", "summary",
        "cum_returns", "cum_returns_final", "stability_of_timeseries", "up_capture",
        "down_capture", "up_down_capture", "roll_sharpe", "roll_sortino", "roll_volatility",
        "roll_annual_volatility", "roll_max_drawdown", "roll_alpha", "roll_beta",
        "roll_alpha_beta", "roll_up_capture", "roll_down_capture", "roll_up_down_capture",
        "aggregate_returns", "AggregatedReturns",
    },
    "mts1b_quantkit.analytics": {
        "forward_returns", "information_coefficient", "ic_summary", "quantize",
        "quantile_returns", "quantile_turnover", "factor_rank_autocorrelation",
        "factor_weights", "factor_returns", "ic_decay",
    },
    "mts1b_quantkit.covariance": {
        "sample_cov", "sample_corr", "ledoit_wolf", "exp_cov", "cov_to_corr", "corr_to_cov",
        "check_covariance", "Shrinkage",
    },
    "mts1b_quantkit.portfolio": {
        "hrp", "hrp_result", "HRPResult", "black_litterman", "BlackLittermanResult",
        "market_implied_prior_returns", "market_implied_risk_aversion", "idzorek_omega",
        "min_variance", "max_sharpe", "efficient_return", "efficient_risk",
        "max_quadratic_utility", "portfolio_performance",
        "Performance", "equal_risk_contribution", "risk_contributions", "sample_cov",
        "sample_corr", "ledoit_wolf", "exp_cov", "cov_to_corr", "corr_to_cov",
        "check_covariance", "Shrinkage",
    },
    "mts1b_quantkit.cv": {
        "walk_forward", "WalkForward", "PurgedKFold", "CombinatorialPurgedCV",
        "cross_validate", "CVResult", "SplitResult",
    },
    "mts1b_quantkit.sizing": {
        "size", "register_sizer", "get_sizer", "list_sizers", "Sizer", "kelly_voltarget",
        "COMMON_PARAMS",
    },
}


@pytest.mark.parametrize("module", sorted(SURFACE))
def test_all_matches_surface(module: str) -> None:
    mod = importlib.import_module(module)
    assert set(mod.__all__) == SURFACE[module]
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name} is in __all__ but missing"


def test_top_level() -> None:
    assert mts1b_quantkit.__version__ == "0.1.0"
    for name in mts1b_quantkit.__all__:
        assert hasattr(mts1b_quantkit, name)
    assert issubclass(mts1b_quantkit.InfeasibleError, mts1b_quantkit.QuantkitError)
    from mts1b_foundation import MtsError

    assert issubclass(mts1b_quantkit.QuantkitError, MtsError)


def test_factors_list_is_the_registry_listing() -> None:
    from mts1b_quantkit import factors

    assert factors.list is factors.list_factors
    assert {"f_sma_cross", "f_sma_cross_fast", "f_momentum_12_1"} <= set(factors.list())
