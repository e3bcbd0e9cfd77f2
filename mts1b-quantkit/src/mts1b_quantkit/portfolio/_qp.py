"""A small dense convex QP solver: exact primal-dual active-set iterations, SLSQP as a fallback.

    minimize   1/2 z' H z + c' z
    subject to E z = e,  G z <= h,  lb <= z <= ub

The active-set iterations solve the KKT system of the problem with the active constraints as
equalities, so the answer is exact to rounding and certified (primal and dual feasible), the same
on every machine; that lets the tests compare the optimizers tightly. When they do not settle,
scipy's SLSQP (~1e-8) finds the active set and the iterations restart from it, so both paths
give the same optimum to rounding. Degenerate vertices (active constraints that are linearly
dependent, e.g. a gross cap met exactly by the budget and the short bounds) are handled by leaving
the dependent rows out of the KKT system and checking the multipliers' signs over all of them.
Feasibility is checked first with a linear program so that impossible constraints give an
:class:`~mts1b_quantkit.errors.InfeasibleError` rather than a solver failure.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import numpy.typing as npt

from mts1b_quantkit.errors import InfeasibleError, OptimizationError

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

__all__ = ["QP", "active_sets", "linear_minimum", "solve_qp"]


@dataclasses.dataclass
class QP:
    H: FloatArray
    c: FloatArray
    E: FloatArray
    e: FloatArray
    G: FloatArray
    h: FloatArray
    lb: FloatArray
    ub: FloatArray
    # (i, j) rows: z_i and z_j are the long and short halves of one weight (w = z_i - z_j, both
    # >= 0); at most one of them is left free, which keeps the KKT systems nonsingular
    pairs: npt.NDArray[np.intp] = dataclasses.field(
        default_factory=lambda: np.zeros((0, 2), dtype=np.intp))
    # rows of G that behave like bounds (one asset against a scale variable): they may switch
    # all at once in the active-set iterations; the other rows switch one at a time
    bound_like: BoolArray | None = None


def _feasible_point(qp: QP, what: str) -> FloatArray:
    from scipy import optimize

    n = qp.c.size
    res = optimize.linprog(
        np.zeros(n), A_ub=qp.G if qp.G.size else None, b_ub=qp.h if qp.h.size else None,
        A_eq=qp.E if qp.E.size else None, b_eq=qp.e if qp.e.size else None,
        bounds=list(zip(qp.lb, qp.ub, strict=True)), method="highs",
    )
    if res.status == 2:
        raise InfeasibleError(f"the constraints of {what} cannot all be met", field="constraints")
    if not res.success:  # pragma: no cover - highs reports infeasible/unbounded explicitly
        raise OptimizationError(f"feasibility check for {what} failed: {res.message}",
                                field="constraints")
    return np.asarray(res.x, dtype=np.float64)


def linear_minimum(qp: QP, what: str) -> float:
    """``min c'z`` over ``qp``'s constraints (its ``H`` ignored), by HiGHS; ``-inf`` when
    unbounded, :class:`InfeasibleError` when nothing is feasible."""
    from scipy import optimize

    res = optimize.linprog(
        qp.c, A_ub=qp.G if qp.G.size else None, b_ub=qp.h if qp.h.size else None,
        A_eq=qp.E if qp.E.size else None, b_eq=qp.e if qp.e.size else None,
        bounds=list(zip(qp.lb, qp.ub, strict=True)), method="highs",
    )
    if res.status == 2:
        raise InfeasibleError(f"the constraints of {what} cannot all be met", field="constraints")
    if res.status == 3:
        return -np.inf
    if not res.success:  # pragma: no cover - highs reports infeasible/unbounded explicitly
        raise OptimizationError(f"the linear program of {what} failed: {res.message}",
                                field="constraints")
    return float(res.fun)


def _independent(rows: FloatArray) -> BoolArray:
    """Which rows to keep so that the kept ones are linearly independent, earlier rows first.

    Gram-Schmidt in row order (projected twice, which is enough in floating point): a row is kept
    when a part of it, more than 1e-9 of its norm, lies outside the span of the rows kept so far.
    """
    keep = np.zeros(rows.shape[0], dtype=bool)
    basis = np.zeros((0, rows.shape[1]))
    for i, row in enumerate(rows):
        norm = float(np.linalg.norm(row))
        rest = row - basis.T @ (basis @ row)
        rest = rest - basis.T @ (basis @ rest)
        left = float(np.linalg.norm(rest))
        if norm > 0.0 and left > 1e-9 * norm:
            keep[i] = True
            basis = np.vstack([basis, rest / left])
    return keep


def _kkt(qp: QP, lower: BoolArray, upper: BoolArray, g_act: BoolArray
         ) -> tuple[FloatArray, FloatArray, bool]:
    """Minimiser and multipliers with the given constraints held as equalities.

    At a degenerate vertex the active constraints are linearly dependent (for example a gross
    cap that is exactly the budget plus twice the short bounds at their limits), so the KKT
    matrix is singular and a plain solve returns huge, meaningless multipliers. The dependent
    rows are therefore left out of the system (bounds first, then equality rows, then inequality
    rows, in order); they hold anyway wherever the kept rows do, and their multipliers are 0.
    ``lam`` is laid out as ``[E, G[g_act], lower, upper]`` whatever was left out; the flag says
    whether anything was (the multipliers are then one choice among many).
    """
    n = qp.c.size
    eye = np.eye(n)
    free = ~lower & ~upper
    coupled = np.vstack([qp.E.reshape(-1, n), qp.G[g_act].reshape(-1, n)])
    # rank [coupled; bound rows] = number of bounds + rank of coupled on the free variables
    keep = _independent(coupled[:, free])
    rows = [coupled[keep], eye[lower], eye[upper]]
    rhs = [np.concatenate([qp.e, qp.h[g_act]])[keep], qp.lb[lower], qp.ub[upper]]
    a = np.vstack(rows)
    b = np.concatenate(rhs)
    m = a.shape[0]
    k = np.zeros((n + m, n + m))
    k[:n, :n] = qp.H
    k[:n, n:] = a.T
    k[n:, :n] = a
    r = np.concatenate([-qp.c, b])
    try:
        sol = np.linalg.solve(k, r)
        if not np.isfinite(sol).all():
            raise np.linalg.LinAlgError
    except np.linalg.LinAlgError:
        sol = np.linalg.lstsq(k, r, rcond=None)[0]
    lam = np.zeros(keep.size + int(lower.sum()) + int(upper.sum()))
    lam[np.concatenate([keep, np.ones(lam.size - keep.size, dtype=bool)])] = sol[n:]
    return sol[:n], lam, not keep.all()


def _dual_feasible(qp: QP, z: FloatArray, lower: BoolArray, upper: BoolArray, tight: BoolArray,
                   tol: float) -> bool:
    """Whether multipliers of the right signs exist for the constraints that hold with equality.

    ``H z + c + E'l_e + G_tight'l_g - l_lo + l_up = 0`` with ``l_g, l_lo, l_up >= 0`` (``l_e``
    free, as ``E'`` and ``-E'`` columns), solved as a nonnegative least-squares problem. At a
    degenerate vertex the multipliers are not unique and the ones ``_kkt`` picked may have a
    wrong sign while others do not; a primal feasible ``z`` with such multipliers is the optimum.
    ``tight`` must leave out rows with slack at ``z`` (a working-set row that ``_kkt`` left out
    need not hold with equality), or their multipliers would break complementary slackness.
    """
    from scipy.optimize import nnls

    n = qp.c.size
    eye = np.eye(n)
    cols = np.vstack([qp.E.reshape(-1, n), -qp.E.reshape(-1, n), qp.G[tight].reshape(-1, n),
                      -eye[lower], eye[upper]]).T
    target = -(qp.H @ z + qp.c)
    x = nnls(cols, target)[0]
    return bool(np.abs(cols @ x - target).max(initial=0.0) <= tol)


def _only_largest(masks: list[BoolArray], scores: list[FloatArray]) -> list[BoolArray]:
    """Keep only the one entry, over all ``masks``, whose score is largest."""
    best, where = -np.inf, (-1, -1)
    for i, (mask, score) in enumerate(zip(masks, scores, strict=True)):
        if mask.any():
            j = int(np.argmax(np.where(mask, score, -np.inf)))
            if score[j] > best:
                best, where = float(score[j]), (i, j)
    out = [np.zeros_like(mask) for mask in masks]
    if where[0] >= 0:
        out[where[0]][where[1]] = True
    return out


def _active_set(qp: QP, lower: BoolArray, upper: BoolArray, g_act: BoolArray,
                max_iter: int | None = None, *, single: bool = False) -> FloatArray | None:
    """Primal-dual active-set iterations (Hintermueller-Ito-Kunisch) from the given sets.

    Each step solves the KKT system with the active constraints as equalities, then activates
    every violated bound and releases every active bound whose multiplier has the wrong sign, all
    at once (coupled inequality rows: one in and one out per step). A fixed point satisfies the
    KKT conditions of the convex QP, so it is *the* optimum; the result is returned only then
    (``None`` on cycling or no convergence). When ``_kkt`` had to leave dependent rows out, a
    feasible point whose multipliers look wrong-signed is accepted if other multipliers of the
    right signs exist (:func:`_dual_feasible`): that is still the KKT conditions, just not the
    multipliers ``_kkt`` happened to pick.

    ``single``: change one constraint per step instead (the most violated one in, or when none
    is violated the most wrong-signed one out). Slower, but it settles where switching many
    bounds at once cycles: problems with split variables whose halves both sit at a bound (a
    transaction cost where a weight stays at its previous value) are the usual case.
    """
    scale = 1.0 + float(np.abs(np.concatenate([qp.e, qp.h])).max(initial=0.0))
    feas_tol = 1e-12 * scale
    mult_tol = 1e-11 * (1.0 + np.abs(qp.H).max(initial=0.0) + np.abs(qp.c).max(initial=0.0))
    seen: set[bytes] = set()
    lower, upper, g_act = lower.copy(), upper.copy(), g_act.copy()
    limit = 60 + 2 * (g_act.size + lower.size) * (4 if single else 1)
    for _ in range(max_iter if max_iter is not None else limit):
        key = np.concatenate([lower, upper, g_act]).tobytes()
        if key in seen:
            return None
        seen.add(key)
        z, lam, degenerate = _kkt(qp, lower, upper, g_act)
        if not np.isfinite(z).all():
            return None
        me, mg, nl = qp.e.size, int(g_act.sum()), int(lower.sum())
        lam_g = np.zeros(g_act.size)
        lam_g[g_act] = lam[me:me + mg]
        lam_l = np.zeros(lower.size)
        lam_l[lower] = lam[me + mg:me + mg + nl]
        lam_u = np.zeros(upper.size)
        lam_u[upper] = lam[me + mg + nl:]
        gz = qp.G @ z if qp.G.size else np.zeros(0)
        add_l = ~lower & (z < qp.lb - feas_tol)
        add_u = ~upper & (z > qp.ub + feas_tol)
        # coupled rows change one at a time (the most violated in, the most wrong-signed out):
        # switching many of them at once can cycle; bounds and bound-like rows switch together
        batch = qp.bound_like if qp.bound_like is not None else np.zeros_like(g_act)
        add_g = ~g_act & batch & (gz > qp.h + feas_tol)
        drop_g = g_act & batch & (lam_g < -mult_tol)
        excess = np.where(~g_act & ~batch, gz - qp.h, -np.inf)
        if excess.size and excess.max() > feas_tol:
            add_g[int(np.argmax(excess))] = True
        wrong = np.where(g_act & ~batch, lam_g, np.inf)
        if wrong.size and wrong.min() < -mult_tol:
            drop_g[int(np.argmin(wrong))] = True
        drop_l = lower & (lam_l > mult_tol)  # a lower bound pushing the wrong way
        drop_u = upper & (lam_u < -mult_tol)
        feasible = not (add_l.any() or add_u.any() or add_g.any())
        if feasible and (drop_l.any() or drop_u.any() or drop_g.any()) and degenerate:
            # a wrong sign may only reflect which dependent row _kkt left out: look further
            tight = g_act & (gz >= qp.h - feas_tol)
            wrong_sign = not _dual_feasible(qp, z, lower, upper, tight,
                                            mult_tol * (1.0 + float(np.abs(z).max())))
        else:
            wrong_sign = bool(drop_l.any() or drop_u.any() or drop_g.any())
        if feasible and not wrong_sign:
            # rows _kkt left out as dependent hold only if they agree with the kept ones
            if qp.E.size and np.abs(qp.E @ z - qp.e).max() > 1e-10 * scale:
                return None
            if gz.size and (gz - qp.h).max() > 1e-10 * scale:
                return None
            return np.clip(z, qp.lb, qp.ub)
        if single:
            if add_l.any() or add_u.any() or add_g.any():
                add_l, add_u, add_g = _only_largest(
                    [add_l, add_u, add_g], [qp.lb - z, z - qp.ub, gz - qp.h])
                drop_l, drop_u, drop_g = (np.zeros_like(drop_l), np.zeros_like(drop_u),
                                          np.zeros_like(drop_g))
            else:
                drop_l, drop_u, drop_g = _only_largest(
                    [drop_l, drop_u, drop_g], [lam_l, -lam_u, -lam_g])
        lower = (lower & ~drop_l) | add_l
        upper = ((upper & ~drop_u) | add_u) & ~lower
        g_act = (g_act & ~drop_g) | add_g
        if qp.pairs.size:
            long_, short = qp.pairs[:, 0], qp.pairs[:, 1]
            both_free = ~lower[long_] & ~lower[short]
            keep_long = z[long_] - z[short] >= 0
            lower[short[both_free & keep_long]] = True
            lower[long_[both_free & ~keep_long]] = True
    return None



def _sets_at(qp: QP, z: FloatArray) -> tuple[BoolArray, BoolArray, BoolArray]:
    """The constraints active at an approximate optimum (SLSQP's, good to ~1e-8).

    Where the gross cap does not bind, any split ``w = long - short`` of a weight is optimal,
    and SLSQP may return one with both halves positive that fills the cap: read there, the cap
    and both halves' bounds would look wrong. Each pair is first lowered by the same amount
    until one half is at its lower bound; ``w``, the objective and every other row stay as
    they were.
    """
    z = z.copy()
    if qp.pairs.size:
        long_, short = qp.pairs[:, 0], qp.pairs[:, 1]
        down = np.maximum(np.minimum(z[long_] - qp.lb[long_], z[short] - qp.lb[short]), 0.0)
        z[long_] -= down
        z[short] -= down
    tol = 1e-7 * (1.0 + np.abs(z).max(initial=0.0))
    lower = (z - qp.lb) <= tol
    upper = ((qp.ub - z) <= tol) & ~lower
    g_act = (qp.h - qp.G @ z) <= tol if qp.G.size else np.zeros(0, dtype=bool)
    return lower, upper, g_act


Sets = tuple[BoolArray, BoolArray, BoolArray]


def active_sets(qp: QP, z: FloatArray) -> Sets:
    """The constraints active at a solution ``z`` of ``qp``: a warm start for a neighbouring
    problem (the same constraints, a slightly different objective)."""
    return _sets_at(qp, z)


def solve_qp(qp: QP, *, what: str = "the portfolio problem", warm: Sets | None = None,
             feasible: bool = False) -> FloatArray:
    """Solve ``qp``; :class:`InfeasibleError` if no point meets the constraints.

    First the active-set iterations from the bounds that are fixed (``lb == ub``); they converge in
    a few KKT solves on typical portfolio problems. If they cycle, SLSQP locates the active set
    and the iterations restart from there; SLSQP's own answer is the last resort.

    ``warm``: the active sets of a neighbouring problem's solution (:func:`active_sets`), tried
    first; a sequence of problems that differ only in their objective (a parameter search)
    then settles in one or two KKT solves each. ``feasible``: the caller already knows the
    constraints can be met, so the linear program that checks it is skipped unless SLSQP needs
    its starting point.
    """
    scale = float(np.abs(np.diag(qp.H)).max(initial=0.0)) or 1.0
    scaled = QP(qp.H / scale, qp.c / scale, qp.E, qp.e, qp.G, qp.h, qp.lb, qp.ub, qp.pairs,
                qp.bound_like)
    if warm is not None:
        z_warm = _active_set(scaled, *warm)
        if z_warm is not None:
            return z_warm
    x0 = None if feasible else _feasible_point(qp, what)
    start = qp.lb == qp.ub
    if qp.pairs.size:
        start[qp.pairs[:, 1]] = True  # start from the long side of each split weight
    empty_g = np.zeros(qp.h.size, dtype=bool)
    batch = qp.bound_like is not None and bool(qp.bound_like.any())
    # switching bound-like rows together settles in a few steps or not at all: give up early
    z = _active_set(scaled, start, np.zeros_like(start), empty_g, 40 if batch else None)
    if z is None and batch:
        careful = dataclasses.replace(scaled, bound_like=None)  # every row one at a time
        z = _active_set(careful, start, np.zeros_like(start), empty_g)
    if z is None:  # one constraint per step
        z = _active_set(dataclasses.replace(scaled, bound_like=None), start,
                        np.zeros_like(start), empty_g, single=True)
    if z is not None:
        return z
    from scipy import optimize

    if x0 is None:
        x0 = _feasible_point(qp, what)
    cons = []
    if qp.E.size:
        cons.append({"type": "eq", "fun": lambda z: qp.E @ z - qp.e, "jac": lambda z: qp.E})
    if qp.G.size:
        cons.append({"type": "ineq", "fun": lambda z: qp.h - qp.G @ z, "jac": lambda z: -qp.G})
    h_s, c_s = scaled.H, scaled.c
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = optimize.minimize(
            lambda z: 0.5 * z @ h_s @ z + c_s @ z, x0, jac=lambda z: h_s @ z + c_s,
            method="SLSQP", bounds=list(zip(qp.lb, qp.ub, strict=True)), constraints=cons,
            options={"ftol": 1e-15, "maxiter": 2000},
        )
    z_slsqp = np.asarray(res.x, dtype=np.float64)
    polished = _active_set(scaled, *_sets_at(scaled, z_slsqp))
    if polished is not None:
        return polished
    if not res.success:
        raise OptimizationError(f"the solver failed on {what}: {res.message}",
                                field="solver", value=str(res.message))
    return z_slsqp  # pragma: no cover - the active-set polish succeeds from SLSQP's answer
