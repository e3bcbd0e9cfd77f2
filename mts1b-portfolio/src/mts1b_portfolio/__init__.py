"""mts1b-portfolio: several strategies in one fund, composed into one owned target.

:func:`~mts1b_portfolio.multi_sleeve.compose` nets the sleeves' weights per symbol (capital
weighted), projects the result onto the fund's constraints (gross, net, per-name caps, turnover
against the holdings) with its own exact solver, rounds the trades to lots towards the
holdings, and splits every share of the target across the sleeves - a
:class:`~mts1b_foundation.TargetPortfolio` carrying its
:class:`~mts1b_foundation.SleeveAllocation`, which the OMS trades sleeve by sleeve.

Modules: :mod:`~mts1b_portfolio.multi_sleeve` (``compose``), :mod:`~mts1b_portfolio.inputs`
(``Sleeve``, ``Constraints``), :mod:`~mts1b_portfolio.projection` (the solver),
:mod:`~mts1b_portfolio.fundstep` (feasibility and fallbacks), :mod:`~mts1b_portfolio.ownership`
(the split across sleeves), :mod:`~mts1b_portfolio.market` (prices and lots as arrays),
:mod:`~mts1b_portfolio.wire_out` (the wire models from checked parts),
:mod:`~mts1b_portfolio.report`.
"""

from __future__ import annotations

from mts1b_portfolio.errors import ComposeInputError, PortfolioError
from mts1b_portfolio.inputs import Constraints, Sleeve
from mts1b_portfolio.multi_sleeve import compose
from mts1b_portfolio.report import ComposeReport, Composition, Fallback, HeldBack, HoldCode

__version__ = "0.1.0"

__all__ = [
    "ComposeInputError",
    "ComposeReport",
    "Composition",
    "Constraints",
    "Fallback",
    "HeldBack",
    "HoldCode",
    "PortfolioError",
    "Sleeve",
    "__version__",
    "compose",
]
