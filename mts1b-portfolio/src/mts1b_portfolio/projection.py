"""The fund step's solver: the exact Euclidean projection onto a fund's constraints.

The problem, over the ``n`` symbols of one composition (float64 vectors of shape ``(n,)``,
weights as fractions of the fund's capital, no NaN anywhere: the caller has checked):

    minimise    0.5 * ||w - t||^2
    subject to  lo <= w <= hi                  per-name caps (lo <= 0 <= hi)
                sum |w_i| <= G                 gross
                L <= sum w_i <= U              net
                sum |w_i - w0_i| <= T          turnover against the current weights ``w0``

Why our own solver: a general QP solver (cvxpy with Clarabel, the reference of the tests) takes
about a second on 3,000 names; this structure needs far less. Only three constraints couple the
names. With their multipliers ``alpha`` (gross), ``beta`` (net) and ``gamma`` (turnover) fixed,
the Lagrangian separates into one convex function of one variable per name,

    0.5 * (w - (t_i - beta))^2 + alpha * |w| + gamma * |w - w0_i|,   lo_i <= w <= hi_i,

whose minimiser has a closed form (:func:`coordinate_minimisers`): a soft-threshold with two
kinks (0 and ``w0_i``), then a clip to the box. The dual function of the three multipliers is
concave and piecewise quadratic (the primal is a strictly convex QP), so a projected Newton
ascent on it (:func:`project`) lands on the exact optimum of each quadratic piece and stops
after a handful of steps, each O(n). At the optimum the primal point is the projection.

Feasibility is decided before solving, in closed form: :func:`static_conflict` (caps, gross
and net alone) and :func:`min_turnover` (the least turnover that reaches the caps, gross and net
from ``w0``); the composer falls back when either says no. So the solver only meets feasible
problems; if it still fails to converge it says so (``converged=False``) and the composer falls
back too, never raises.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "Problem",
    "Projection",
    "coordinate_minimisers",
    "min_turnover",
    "project",
    "project_l1_ball",
    "static_conflict",
]

FloatArray = npt.NDArray[np.float64]

TOLERANCE = 1e-12
"""Constraint residual (in weight units) at which the dual ascent stops; the turnover after the
final trim is within ``T + 1e-12`` (the contract is ``T + 1e-9``)."""
MAX_ITERATIONS = 200
_MAX_HALVINGS = 60
_STALL = 8


@dataclass(frozen=True)
class Problem:
    """One projection problem. Vectors have shape ``(n,)``; a bound of ``inf`` (or ``-inf``
    for ``net_lo``) is no bound."""

    target: FloatArray
    current: FloatArray
    lo: FloatArray
    hi: FloatArray
    gross: float = math.inf
    net_lo: float = -math.inf
    net_hi: float = math.inf
    turnover: float = math.inf


@dataclass(frozen=True)
class Projection:
    """The solver's answer: the weights, the multipliers, and how it got there."""

    weights: FloatArray
    alpha: float
    beta: float
    gamma: float
    iterations: int
    converged: bool


def coordinate_minimisers(a: FloatArray, current: FloatArray, alpha: float, gamma: float,
                          lo: FloatArray, hi: FloatArray) -> FloatArray:
    """Per name, ``argmin_w 0.5 (w - a)^2 + alpha |w| + gamma |w - current|`` on ``[lo, hi]``.

    The objective is convex with kinks at ``k1 = min(0, w0)`` and ``k2 = max(0, w0)``. Right
    of ``k2`` both absolute values slope up, so the stationary point there is
    ``a - alpha - gamma``; left of ``k1`` it is ``a + alpha + gamma``; between the kinks the
    slopes are ``sign(w0)`` and ``-sign(w0)``, giving ``a - (alpha - gamma) sign(w0)``, clipped
    to the kinks. A one-dimensional convex function restricted to an interval is minimised by
    clipping its free minimiser, hence the final clip.
    """
    k1 = np.minimum(current, 0.0)
    k2 = np.maximum(current, 0.0)
    right = a - (alpha + gamma)
    left = a + (alpha + gamma)
    middle = np.clip(a - (alpha - gamma) * np.sign(current), k1, k2)
    w = np.where(right > k2, right, np.where(left < k1, left, middle))
    return np.clip(w, lo, hi)


def static_conflict(p: Problem) -> str | None:
    """Why no weights satisfy the caps, gross and net together, or ``None`` when some do.

    With ``0`` inside every box, the largest net any weights reach is ``min(G, sum hi)`` and
    the smallest ``max(-G, sum lo)``; the net interval must meet ``[smallest, largest]``.
    Returns ``"NET_FLOOR_UNREACHABLE"`` or ``"NET_CEILING_UNREACHABLE"``.
    """
    highest = min(p.gross, float(p.hi.sum()))
    lowest = max(-p.gross, float(p.lo.sum()))
    if p.net_lo > highest + TOLERANCE:
        return "NET_FLOOR_UNREACHABLE"
    if p.net_hi < lowest - TOLERANCE:
        return "NET_CEILING_UNREACHABLE"
    return None


def min_turnover(p: Problem) -> float:
    """The least ``sum |w - w0|`` over weights that meet the caps, gross and net (no turnover
    cap); ``inf`` when none do (:func:`static_conflict`).

    Why it is closed form: every name outside its box must first be clipped to it (that
    turnover is unavoidable, and moving further never helps). From the clipped weights ``v``
    (long mass ``P``, short mass ``N``) each unit of turnover changes the gross and the net by
    one unit each. Reducing longs (net and gross down) or shorts (net up, gross down) is always
    cheaper than adding positions, which is needed only when the net must rise above ``P``
    (cover every short, buy the rest) or fall below ``-N``. Otherwise the turnover is
    ``max(|e|, R)`` for ``e`` the net change bought by reductions (``x - y``), chosen closest to
    0 within what the net bounds and the masses allow, and ``R`` the gross reduction needed.
    """
    if static_conflict(p) is not None:
        return math.inf
    v = np.clip(p.current, p.lo, p.hi)
    unavoidable = float(np.abs(p.current - v).sum())
    longs = float(v[v > 0].sum())
    shorts = float(-v[v < 0].sum())
    net = longs - shorts
    if net + shorts < p.net_lo:  # even with every short covered the net is too low
        return unavoidable + shorts + (p.net_lo - longs)
    if net - longs > p.net_hi:  # even with every long sold the net is too high
        return unavoidable + longs + (-shorts - p.net_hi)
    gross_cut = max(0.0, longs + shorts - p.gross)
    low = max(net - p.net_hi, -shorts)
    high = min(net - p.net_lo, longs)
    if gross_cut > 0.0:
        low = max(low, gross_cut - 2.0 * shorts)
        high = min(high, 2.0 * longs - gross_cut)
    if low > high + TOLERANCE:  # cannot happen when static_conflict is None; be safe
        return math.inf
    change = min(max(0.0, low), high)
    return unavoidable + max(abs(change), gross_cut)


def project_l1_ball(delta: FloatArray, radius: float) -> FloatArray:
    """The closest vector to ``delta`` with ``sum |x| <= radius`` (soft-thresholding).

    The largest entries shrink by a common ``tau`` and the ones below ``tau`` become exactly
    0, which is what the composer's turnover fallback wants: the names whose trade is too small
    for the budget keep their holdings. Sort-based, O(n log n).
    """
    size = np.abs(delta)
    total = float(size.sum())
    if total <= radius:
        return delta.copy()
    if radius <= 0.0:
        return np.zeros_like(delta)
    ordered = np.sort(size)[::-1]
    cumulative = np.cumsum(ordered)
    ranks = np.arange(1, ordered.size + 1, dtype=np.float64)
    above = np.flatnonzero(ordered - (cumulative - radius) / ranks > 0)
    count = int(above[-1]) + 1 if above.size else 1  # a radius below the rounding of the top
    tau = max((cumulative[count - 1] - radius) / count, 0.0)
    return np.asarray(np.sign(delta) * np.maximum(size - tau, 0.0), dtype=np.float64)


@dataclass
class _State:
    alpha: float
    beta: float
    gamma: float
    w: FloatArray
    value: float
    grad: FloatArray  # (gross, net, turnover) residuals as the multipliers see them


def _evaluate(p: Problem, alpha: float, beta: float, gamma: float) -> _State:
    """The primal minimiser for given multipliers, the dual value and its (super)gradient."""
    a = p.target - beta
    w = coordinate_minimisers(a, p.current, alpha, gamma, p.lo, p.hi)
    absw = np.abs(w)
    moved = np.abs(w - p.current)
    gross = float(absw.sum())
    net = float(w.sum())
    turnover = float(moved.sum())
    value = float(0.5 * np.dot(w - p.target, w - p.target)) + beta * net
    if alpha:
        value += alpha * (gross - p.gross)
    if gamma:
        value += gamma * (turnover - p.turnover)
    if beta > 0:
        value -= beta * p.net_hi
        g_net = net - p.net_hi
    elif beta < 0:
        value -= beta * p.net_lo
        g_net = net - p.net_lo
    else:  # at the kink the supergradient is [net - U, net - L]; pick the one pointing out
        g_net = net - p.net_hi if net > p.net_hi else (net - p.net_lo if net < p.net_lo else 0.0)
    g_gross = gross - p.gross if math.isfinite(p.gross) else -math.inf
    g_turn = turnover - p.turnover if math.isfinite(p.turnover) else -math.inf
    return _State(alpha, beta, gamma, w, value, np.array([g_gross, g_net, g_turn]))


def _residual(s: _State) -> float:
    """How far the multipliers are from satisfying the optimality conditions."""
    g_gross, g_net, g_turn = (float(x) for x in s.grad)
    r_gross = abs(g_gross) if s.alpha > 0 else max(g_gross, 0.0)
    r_turn = abs(g_turn) if s.gamma > 0 else max(g_turn, 0.0)
    return max(r_gross, abs(g_net), r_turn)


def _free_set(s: _State) -> list[int]:
    """The multipliers the Newton step moves: positive ones and those whose constraint is
    violated (a slack constraint's zero multiplier stays put)."""
    g_gross, g_net, g_turn = (float(x) for x in s.grad)
    free = []
    if s.alpha > 0 or g_gross > 0:
        free.append(0)
    if s.beta != 0 or g_net != 0:
        free.append(1)
    if s.gamma > 0 or g_turn > 0:
        free.append(2)
    return free


def _curvature(p: Problem, s: _State) -> FloatArray:
    """Minus the dual Hessian on the current piece: ``sum v v^T`` over the names strictly
    inside their box and off their kinks, with ``v = (sign w, 1, sign(w - w0))``."""
    w = s.w
    free = (w > p.lo) & (w < p.hi) & (w != 0.0) & (w != p.current)
    sign_w = np.sign(w[free])
    sign_t = np.sign(w[free] - p.current[free])
    count = float(free.sum())
    sw, st, swt = float(sign_w.sum()), float(sign_t.sum()), float(np.dot(sign_w, sign_t))
    return np.array([[count, sw, swt], [sw, count, st], [swt, st, count]])


def _extent(s: _State, direction: FloatArray) -> tuple[FloatArray, float, int | None]:
    """``direction`` without the parts that would leave the multipliers' domain at once, and
    how far it may go before a multiplier reaches its bound (and which one).

    alpha and gamma stay >= 0; beta keeps its sign (the net slab's support function has its
    kink at 0: the dual is concave and smooth on each side), and from 0 it opens only towards
    the side whose bound is violated. Along the returned segment the dual is concave, so the
    line search below can trust its slope.
    """
    d = direction.copy()
    if s.alpha == 0 and d[0] < 0:
        d[0] = 0.0
    if s.gamma == 0 and d[2] < 0:
        d[2] = 0.0
    if s.beta == 0 and d[1] * float(s.grad[1]) <= 0:
        d[1] = 0.0
    limit, which = math.inf, None
    for k, value in enumerate((s.alpha, s.beta, s.gamma)):
        if value != 0 and d[k] != 0 and (value > 0) != (d[k] > 0):
            reach = -value / float(d[k])
            if reach < limit:
                limit, which = reach, k
    return d, limit, which


def project(p: Problem) -> Projection:
    """The projection of ``p.target`` onto the constraints of ``p`` (see the module docstring).

    Call only when :func:`static_conflict` is ``None`` and :func:`min_turnover` is within
    ``p.turnover``. Deterministic: the same problem gives the same bits.
    """
    s = _evaluate(p, 0.0, 0.0, 0.0)
    scale = 1.0 + float(np.abs(p.target).sum()) + float(np.abs(p.current).sum())
    best, stalled = math.inf, 0
    previous: tuple[float, float, float] | None = None
    for iteration in range(1, MAX_ITERATIONS + 1):
        residual = _residual(s)
        if residual <= TOLERANCE * scale:
            return _finish(p, s, iteration - 1, True)
        # rounding can hold the residual a few times above the tolerance (a turnover cap at
        # exactly the least turnover leaves a feasible set of one point): stop when neither
        # the residual halves nor the multipliers move, judged by the looser bound below
        still = previous is not None and max(
            abs(a - b) for a, b in zip(previous, (s.alpha, s.beta, s.gamma), strict=True)
        ) <= 1e-9 * (1.0 + abs(s.alpha) + abs(s.beta) + abs(s.gamma))
        stalled = stalled + 1 if still and residual >= 0.5 * best else 0
        best = min(best, residual)
        previous = (s.alpha, s.beta, s.gamma)
        if stalled >= _STALL:
            return _finish(p, s, iteration - 1, residual <= 1e-9 * scale)
        free = _free_set(s)
        grad = np.where(np.isfinite(s.grad), s.grad, 0.0)
        direction = np.zeros(3)
        if free:
            m = _curvature(p, s)[np.ix_(free, free)]
            m = m + np.eye(len(free)) * (1e-12 * (1.0 + float(np.trace(m))))
            try:
                direction[free] = np.linalg.solve(m, grad[free])
            except np.linalg.LinAlgError:
                direction[free] = grad[free]
            if float(np.dot(direction[free], grad[free])) <= 0:  # not an ascent direction
                direction[:] = 0.0
                direction[free] = grad[free] / (3.0 * p.target.size)
        _bound_step(p, s, direction)
        accepted = _line_search(p, s, direction)
        if accepted is None:  # no ascent along the Newton direction: fall back to gradient
            direction[:] = 0.0
            direction[free] = grad[free] / (3.0 * max(1, p.target.size))
            accepted = _line_search(p, s, direction)
        if accepted is None:
            return _finish(p, s, iteration, _residual(s) <= 1e-9 * scale)
        s = accepted
    return _finish(p, s, MAX_ITERATIONS, _residual(s) <= 1e-9 * scale)


def _bound_step(p: Problem, s: _State, direction: FloatArray) -> None:
    """Scale ``direction`` so no multiplier moves by more than twice the problem's scale.

    On a piece where few names are free the Newton system is nearly singular and its step
    enormous; multipliers beyond the largest weight or bound (plus their current values) only
    push every name onto a kink, so such a step is shortened before the line search starts.
    """
    largest = float(np.max(np.abs(direction)))
    bounds = [abs(b) for b in (p.gross, p.net_lo, p.net_hi, p.turnover) if math.isfinite(b)]
    box = np.concatenate([p.lo, p.hi])
    box = box[np.isfinite(box)]
    reach = 2.0 * (float(np.max(np.abs(p.target), initial=0.0))
                   + float(np.max(np.abs(p.current), initial=0.0))
                   + float(np.max(np.abs(box), initial=0.0)) + max(bounds, default=0.0)
                   + abs(s.alpha) + abs(s.beta) + abs(s.gamma)) + 1e-12
    if largest > reach:
        direction *= reach / largest


def _line_search(p: Problem, s: _State, direction: FloatArray) -> _State | None:
    """The most ascent along ``direction`` within the multipliers' domain (:func:`_extent`),
    found on the slope, not the value; ``None`` when there is no ascent that way.

    Why the slope: along the segment the dual is concave, so its slope decreases and the best
    step is where the slope changes sign - found by bisection, to float resolution. The dual's
    *value* near the optimum changes by less than its own rounding (a piece a nanometre wide:
    a name held between caps of +-1e-9 under a net of 1e-12), so a test on the value stalls
    where the slope still points the way. A step that reaches a bound lands exactly on it.
    """
    d, limit, which = _extent(s, direction)
    start = np.where(np.isfinite(s.grad), s.grad, 0.0)
    if float(np.dot(start, d)) <= 0:
        return None
    top = min(1.0, limit)

    def at(size: float) -> tuple[_State, float]:
        values = [s.alpha + size * float(d[0]), s.beta + size * float(d[1]),
                  s.gamma + size * float(d[2])]
        if size == limit and which is not None:
            values[which] = 0.0
        trial = _evaluate(p, max(values[0], 0.0), values[1], max(values[2], 0.0))
        grad = np.where(np.isfinite(trial.grad), trial.grad, 0.0)
        return trial, float(np.dot(grad, d))

    first = float(np.dot(start, d))
    trial, slope = at(top)
    if slope >= -1e-9 * first:  # ascending, or flat to rounding, at the end: go all the way
        return trial  # (a Newton step lands on its piece's optimum, where the slope is ~0)
    low, high, best = 0.0, top, None
    for _ in range(_MAX_HALVINGS):
        middle = 0.5 * (low + high)
        if middle in (low, high):
            break
        trial, slope = at(middle)
        if slope >= 0:
            low, best = middle, trial
        else:
            high = middle
    if high == top and which is not None and top == limit:
        # ascending all the way up to the bound, descending only at it: the slope jumps at
        # beta's kink (or a bound), so the best point is the bound itself, exactly
        return at(top)[0]
    return best


def _finish(p: Problem, s: _State, iterations: int, converged: bool) -> Projection:
    """The weights of the last multipliers, trimmed onto the gross and turnover caps.

    At convergence the residuals are rounding noise (about 1e-15 per name); the trims make the
    caps hold to the last bit that float arithmetic allows: first the gross (a scale towards 0,
    which keeps the box), then the turnover (a step back towards ``w0``).
    """
    w = s.w.copy()
    gross = float(np.abs(w).sum())
    if gross > p.gross:
        w *= p.gross / gross * (1.0 - 1e-15)
    turnover = float(np.abs(w - p.current).sum())
    if turnover > p.turnover:
        w = p.current + (w - p.current) * (p.turnover / turnover * (1.0 - 1e-15))
    return Projection(w, s.alpha, s.beta, s.gamma, iterations, converged)
