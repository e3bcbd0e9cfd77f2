"""The public surface: the names the docs, the migration guide and other libraries import."""

from __future__ import annotations

import importlib

import mts1b_portfolio
import pytest

SURFACE = {
    "mts1b_portfolio": {
        "compose", "Sleeve", "Constraints", "Composition", "ComposeReport", "Fallback",
        "HeldBack", "HoldCode", "ComposeInputError", "PortfolioError", "__version__",
    },
    "mts1b_portfolio.multi_sleeve": {
        "compose", "Sleeve", "Constraints", "Composition", "ComposeInputError",
    },
    "mts1b_portfolio.projection": {
        "Problem", "Projection", "coordinate_minimisers", "min_turnover", "project",
        "project_l1_ball", "static_conflict",
    },
    "mts1b_portfolio.inputs": {"Constraints", "Number", "Sleeve", "check_decimal",
                               "check_float"},
    "mts1b_portfolio.report": {"Composition", "ComposeReport", "Fallback", "HeldBack",
                               "HoldCode"},
    "mts1b_portfolio.errors": {"ComposeInputError", "PortfolioError"},
    "mts1b_portfolio.fundstep": {"FundStep", "fund_step"},
    "mts1b_portfolio.ownership": {"split_trades"},
    "mts1b_portfolio.market": {"Market"},
    "mts1b_portfolio.wire_out": {"allocation_model", "exact_totals"},
}


@pytest.mark.parametrize("module", sorted(SURFACE))
def test_all_is_the_surface(module: str) -> None:
    loaded = importlib.import_module(module)
    assert set(loaded.__all__) == SURFACE[module]
    for name in loaded.__all__:
        assert hasattr(loaded, name), f"{module}.{name}"


def test_version_matches_the_distribution() -> None:
    from importlib.metadata import version

    assert mts1b_portfolio.__version__ == version("mts1b-portfolio") == "0.1.0"


def test_errors_are_mts_errors_with_stable_codes() -> None:
    from mts1b_foundation import MtsError

    assert issubclass(mts1b_portfolio.ComposeInputError, MtsError)
    assert issubclass(mts1b_portfolio.ComposeInputError, ValueError)
    assert mts1b_portfolio.ComposeInputError.code == "PORTFOLIO.BAD_INPUT"
    assert mts1b_portfolio.PortfolioError.code == "PORTFOLIO.ERROR"
