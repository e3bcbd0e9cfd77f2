"""What a composition says about itself: turnover, crossing, names held back and why.

Why a report and not log lines: the composer is a pure function (a service logs what it
decides); the codes here are stable strings a service can alert on, and the figures are exact
Decimals computed from the same shares the orders will carry.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from mts1b_foundation import SleeveAllocation, TargetPortfolio

__all__ = ["ComposeReport", "Composition", "Fallback", "HeldBack", "HoldCode"]


class Fallback(StrEnum):
    """Why the fund step did not take the exact projection (``None`` in the report when it
    did). Each keeps trading safe instead of raising.

    - ``NET_FLOOR_UNREACHABLE`` / ``NET_CEILING_UNREACHABLE``: no weights meet the caps, the
      gross and the net together (say per-name caps of 5 % on 10 names and a net floor of
      60 %). Every name keeps its current holding.
    - ``GROSS_UNREACHABLE``: the names the composer may not move (held only by sleeves not
      composed) already exceed the gross cap. Every name keeps its current holding.
    - ``TURNOVER_INFEASIBLE``: the caps, gross and net can be met, but not within the turnover
      cap from the current holdings (the report's ``turnover_needed`` says how much it would
      take). The fund moves towards the projection without the turnover cap, spending exactly
      the cap on the largest trades (each shrunk by the same amount, :func:`~mts1b_portfolio.
      projection.project_l1_ball`); the names whose trade is smaller keep their holdings.
    - ``SOLVER_NOT_CONVERGED``: the dual ascent did not meet its tolerance in its iteration
      budget (not seen in the tests; kept so a service never raises). Handled like
      ``TURNOVER_INFEASIBLE``.
    """

    NET_FLOOR_UNREACHABLE = "NET_FLOOR_UNREACHABLE"
    NET_CEILING_UNREACHABLE = "NET_CEILING_UNREACHABLE"
    GROSS_UNREACHABLE = "GROSS_UNREACHABLE"
    TURNOVER_INFEASIBLE = "TURNOVER_INFEASIBLE"
    SOLVER_NOT_CONVERGED = "SOLVER_NOT_CONVERGED"


class HoldCode(StrEnum):
    """Why a name the sleeves want to trade is not traded (checked in this order).

    - ``INFEASIBLE``: a static fallback keeps every holding (:class:`Fallback`).
    - ``TURNOVER_CAP``: the turnover cap (exact projection or its fallback) leaves the name at
      its holding.
    - ``CONSTRAINTS``: the projection onto the gross, net and per-name caps does (the netted
      trade is undone by them).
    - ``LOT_SIZE``: the trade is less than one lot (trades are rounded towards the holding).
    - ``MIN_QUANTITY``: less than the instrument's ``min_quantity``.
    - ``MIN_TRADE``: worth less than ``Constraints.min_trade_notional``.
    """

    INFEASIBLE = "INFEASIBLE"
    TURNOVER_CAP = "TURNOVER_CAP"
    CONSTRAINTS = "CONSTRAINTS"
    LOT_SIZE = "LOT_SIZE"
    MIN_QUANTITY = "MIN_QUANTITY"
    MIN_TRADE = "MIN_TRADE"


@dataclass(frozen=True)
class HeldBack:
    """A name the netted sleeves wanted to trade that the fund does not trade.

    ``wanted``: the netted trade in shares (the sleeves' capital-weighted targets less the
    holding), rounded to 6 places (it is computed in floats: a figure to read, not to trade).
    """

    symbol: str
    code: HoldCode
    wanted: Decimal


@dataclass(frozen=True)
class ComposeReport:
    """The figures of one composition. Notionals are ``shares x price x multiplier`` in the
    fund's currency, exact; ``turnover`` is the traded notional over the capital (both legs).

    - ``gross`` / ``net``: of the composed target (after rounding), in weights.
    - ``netted_gross`` / ``netted_net``: of the capital-weighted sum of the sleeves (plus the
      holdings of sleeves not composed), before the fund step.
    - ``crossed_shares`` (per symbol), ``crossed_notional``, ``turnover_saved``: internal
      crossing - what one sleeve buys while another sells, netted away:
      ``(sum_s |sleeve trade| - |fund trade|) / 2`` shares per symbol; the turnover saved is
      twice the crossed notional (both sides' trades). ``None`` when ``current`` held shares
      without ownership (a plain mapping with holdings): the sleeves' own trades are then
      unknown.
    - ``sleeve_traded_notional``: ``sum |sleeve trade|`` at the prices (``None`` likewise).
    - ``held_back``: see :class:`HeldBack`, by symbol.
    - ``excluded``: the composed-away strategies that were given (``exclude``).
    - ``kept_sleeves``: sleeves of ``current`` not composed: not in the allocation, so the OMS
      leaves their holdings as they are.
    - ``fallback`` and ``turnover_needed`` (the least turnover that meets the caps, gross and
      net from the holdings; ``None`` when they conflict among themselves).
    - ``iterations``, ``multipliers`` (``alpha`` gross, ``beta`` net, ``gamma`` turnover):
      how the solver got there; a positive multiplier marks a binding constraint.
    """

    turnover: Decimal
    traded_notional: Decimal
    gross: Decimal
    net: Decimal
    netted_gross: float
    netted_net: float
    crossed_shares: dict[str, Decimal] | None
    crossed_notional: Decimal | None
    turnover_saved: Decimal | None
    sleeve_traded_notional: Decimal | None
    held_back: tuple[HeldBack, ...]
    excluded: tuple[str, ...]
    kept_sleeves: tuple[str, ...]
    fallback: Fallback | None
    turnover_needed: float | None
    iterations: int
    multipliers: tuple[float, float, float]


@dataclass(frozen=True)
class Composition:
    """:func:`~mts1b_portfolio.multi_sleeve.compose`'s answer: the wire target (with its
    allocation) for the OMS, and the report."""

    target: TargetPortfolio
    report: ComposeReport

    @property
    def allocation(self) -> SleeveAllocation:
        """The target's :class:`~mts1b_foundation.SleeveAllocation` (always set by compose)."""
        if self.target.allocation is None:  # compose always sets it; a hand-made one may not
            raise ValueError("this composition's target carries no allocation")
        return self.target.allocation
