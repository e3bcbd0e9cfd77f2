"""A small dense convex QP solver: exact primal-dual active-set iterations, SLSQP as a fallback.

    minimize   1/2 z' H z + c' z
    subject to E z = e,  G z <= h,  lb <= z <= ub

The active-set iterations solve the KKT system of the problem with the active constraints as
equalities, so the answer is exact to rounding and certified (primal and dual feasible), the same
on every machine; that lets the tests compare the optimizers tightly. When they do not settle,
scipy's SLSQP (~1e-8) finds the active set and the iterations restart from it.
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

__all__ = ["QP", "solve_qp"]


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


def _kkt(qp: QP, lower: BoolArray, upper: BoolArray, g_act: BoolArray
         ) -> tuple[FloatArray, FloatArray]:
    n = qp.c.size
    eye = np.eye(n)
    rows = [qp.E, qp.G[g_act], eye[lower], eye[upper]]
    rhs = [qp.e, qp.h[g_act], qp.lb[lower], qp.ub[upper]]
    a = np.vstack([r.reshape(-1, n) for r in rows])
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
    return sol[:n], sol[n:]


def _active_set(qp: QP, lower: BoolArray, upper: BoolArray, g_act: BoolArray,
                max_iter: int | None = None) -> FloatArray | None:
    """Primal-dual active-set iterations (Hintermueller-Ito-Kunisch) from the given sets.

    Each step solves the KKT system with the active constraints as equalities, then activates
    every violated bound and releases every active bound whose multiplier has the wrong sign, all
    at once (coupled inequality rows: one in and one out per step). A fixed point satisfies the
    KKT conditions of the convex QP, so it is *the* optimum; the result is returned only then
    (``None`` on cycling or no convergence).
    """
    scale = 1.0 + float(np.abs(np.concatenate([qp.e, qp.h])).max(initial=0.0))
    feas_tol = 1e-12 * scale
    mult_tol = 1e-11 * (1.0 + np.abs(qp.H).max(initial=0.0) + np.abs(qp.c).max(initial=0.0))
    seen: set[bytes] = set()
    lower, upper, g_act = lower.copy(), upper.copy(), g_act.copy()
    for _ in range(max_iter if max_iter is not None else 60 + 2 * g_act.size):
        key = np.concatenate([lower, upper, g_act]).tobytes()
        if key in seen:
            return None
        seen.add(key)
        z, lam = _kkt(qp, lower, upper, g_act)
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
        if not (add_l.any() or add_u.any() or add_g.any() or drop_l.any() or drop_u.any()
                or drop_g.any()):
            if qp.E.size and np.abs(qp.E @ z - qp.e).max() > 1e-10 * scale:
                return None
            return np.clip(z, qp.lb, qp.ub)
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
    tol = 1e-7 * (1.0 + np.abs(z).max(initial=0.0))
    lower = (z - qp.lb) <= tol
    upper = ((qp.ub - z) <= tol) & ~lower
    g_act = (qp.h - qp.G @ z) <= tol if qp.G.size else np.zeros(0, dtype=bool)
    return lower, upper, g_act


def solve_qp(qp: QP, *, what: str = "the portfolio problem") -> FloatArray:
    """Solve ``qp``; :class:`InfeasibleError` if no point meets the constraints.

    First the active-set iterations from the bounds that are fixed (``lb == ub``); they converge in
    a few KKT solves on typical portfolio problems. If they cycle, SLSQP locates the active set
    and the iterations restart from there; SLSQP's own answer is the last resort.
    """
    x0 = _feasible_point(qp, what)
    scale = float(np.abs(np.diag(qp.H)).max(initial=0.0)) or 1.0
    scaled = QP(qp.H / scale, qp.c / scale, qp.E, qp.e, qp.G, qp.h, qp.lb, qp.ub, qp.pairs,
                qp.bound_like)
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
    if z is not None:
        return z
    from scipy import optimize

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
