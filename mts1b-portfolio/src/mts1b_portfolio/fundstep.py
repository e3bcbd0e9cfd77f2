"""The fund step: the projection of the netted weights, or a coded fallback - never a raise.

Why the decision is taken before solving: :func:`~mts1b_portfolio.projection.static_conflict`
and :func:`~mts1b_portfolio.projection.min_turnover` say in closed form whether any weights
meet the constraints, so the solver never chases an empty set, and the fallback is chosen by
a rule, not by a solver giving up.

Pinned names: a name no composed sleeve targets or holds (it belongs to a sleeve that is not
composed, such as a halted strategy, or to nobody) is not the composed sleeves' to trade: it
keeps its weight, and the gross, the net and the turnover left for the other names are what
its weight leaves. So the fund step never buys a name nobody asked for, nor hedges a halted
strategy's holdings with the others' sleeves.

The fallbacks (:class:`~mts1b_portfolio.report.Fallback`):

- the pinned names alone exceed the gross cap, or the caps, gross and net conflict among
  themselves: every name keeps its current holding;
- they can be met, but not within the turnover cap (or the solver did not converge): the fund
  trades towards the projection *without* the turnover cap, spending exactly the cap, each
  trade shrunk by the same amount (the L1-ball projection of the trades); the names whose
  trade is smaller than that amount keep their holdings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from mts1b_portfolio.projection import (
    TOLERANCE,
    Problem,
    min_turnover,
    project,
    project_l1_ball,
    static_conflict,
)
from mts1b_portfolio.report import Fallback

__all__ = ["FundStep", "fund_step"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class FundStep:
    """The fund's weights after the step, and how they were reached."""

    weights: FloatArray
    fallback: Fallback | None
    turnover_needed: float | None
    turnover_binds: bool
    iterations: int
    multipliers: tuple[float, float, float]


def _hold(problem: Problem, fallback: Fallback) -> FundStep:
    return FundStep(problem.current.copy(), fallback, None, False, 0, (0.0, 0.0, 0.0))


def _towards(problem: Problem, fallback: Fallback, needed: float) -> FundStep:
    """The turnover fallback: the cap spent on the largest trades towards the projection
    without the turnover cap."""
    free = project(replace(problem, turnover=math.inf))
    trades = project_l1_ball(free.weights - problem.current, problem.turnover)
    return FundStep(problem.current + trades, fallback, needed, True, free.iterations,
                    (free.alpha, free.beta, free.gamma))


def fund_step(problem: Problem, movable: npt.NDArray[np.bool_]) -> FundStep:
    """The weights the fund should hold (see the module docstring); ``movable`` is ``False``
    for the pinned names."""
    if movable.all():
        return _solve(problem)
    pinned = problem.current[~movable]
    gross = problem.gross - float(np.abs(pinned).sum())
    if gross < -TOLERANCE * (1.0 + float(np.abs(pinned).sum())):
        return _hold(problem, Fallback.GROSS_UNREACHABLE)
    net = float(pinned.sum())
    sub = Problem(problem.target[movable], problem.current[movable], problem.lo[movable],
                  problem.hi[movable], max(gross, 0.0), problem.net_lo - net,
                  problem.net_hi - net, problem.turnover)
    step = _solve(sub)
    weights = problem.current.copy()
    weights[movable] = step.weights
    return replace(step, weights=weights)


def _solve(problem: Problem) -> FundStep:
    """:func:`fund_step` for a problem without pinned names."""
    conflict = static_conflict(problem)
    if conflict is not None:
        return _hold(problem, Fallback(conflict))
    needed = min_turnover(problem)
    scale = 1.0 + float(np.abs(problem.current).sum())
    if needed > problem.turnover + TOLERANCE * scale:
        return _towards(problem, Fallback.TURNOVER_INFEASIBLE, needed)
    result = project(problem)
    if not result.converged:
        return _towards(problem, Fallback.SOLVER_NOT_CONVERGED, needed)
    return FundStep(result.weights, None, needed, result.gamma > 0, result.iterations,
                    (result.alpha, result.beta, result.gamma))
