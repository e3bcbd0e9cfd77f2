"""A small dense convex QP solver: scipy's SLSQP, then an exact active-set polish.

    minimize   1/2 z' H z + c' z
    subject to E z = e,  G z <= h,  lb <= z <= ub

SLSQP finds the solution to ~1e-8 and, with it, which bounds and inequalities are active. The
polish then solves the KKT system of the equality-constrained problem on that active set exactly,
adding violated constraints / dropping constraints with a wrong-signed multiplier until the KKT
conditions hold (a few iterations at most from SLSQP's warm start). The answer is therefore exact
to rounding, and the same on every machine, which lets the tests compare optimizers tightly.
Feasibility is checked first with a linear program so that impossible constraints give an
:class:`~mts1b_quantkit.errors.InfeasibleError` rather than a solver failure.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import numpy.typing as npt
from scipy import optimize

from mts1b_quantkit.errors import InfeasibleError, OptimizationError

FloatArray = npt.NDArray[np.float64]

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


def _feasible_point(qp: QP, what: str) -> FloatArray:
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


def _kkt(qp: QP, lower: FloatArray, upper: FloatArray, g_act: FloatArray
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


def _polish(qp: QP, z0: FloatArray, max_iter: int = 50) -> FloatArray | None:
    scale = 1.0 + np.abs(z0).max(initial=0.0)
    act_tol = 1e-7 * scale
    lower = (z0 - qp.lb) <= act_tol
    upper = ((qp.ub - z0) <= act_tol) & ~lower
    g_act = (qp.h - qp.G @ z0) <= act_tol if qp.G.size else np.zeros(0, dtype=bool)
    feas_tol = 1e-12 * scale
    mult_tol = 1e-10 * (1.0 + np.abs(qp.H).max(initial=0.0) + np.abs(qp.c).max(initial=0.0))
    for _ in range(max_iter):
        z, lam = _kkt(qp, lower, upper, g_act)
        # primal feasibility: add the most violated constraint
        viol_lb = qp.lb - z
        viol_ub = z - qp.ub
        viol_g = qp.G @ z - qp.h if qp.G.size else np.zeros(0)
        worst = max(viol_lb.max(initial=-np.inf), viol_ub.max(initial=-np.inf),
                    viol_g.max(initial=-np.inf))
        if worst > feas_tol:
            if viol_lb.max(initial=-np.inf) == worst:
                lower[int(np.argmax(viol_lb))] = True
            elif viol_ub.max(initial=-np.inf) == worst:
                upper[int(np.argmax(viol_ub))] = True
            else:
                g_act[int(np.argmax(viol_g))] = True
            continue
        # dual feasibility: drop the constraint with the most wrong-signed multiplier
        me, mg = qp.e.size, int(g_act.sum())
        nl, nu = int(lower.sum()), int(upper.sum())
        lam_g = lam[me:me + mg]
        lam_l = lam[me + mg:me + mg + nl]
        lam_u = lam[me + mg + nl:me + mg + nl + nu]
        candidates = []
        if mg and lam_g.min() < -mult_tol:
            candidates.append((lam_g.min(), "g", int(np.flatnonzero(g_act)[np.argmin(lam_g)])))
        if nl and lam_l.max() > mult_tol:
            candidates.append((-lam_l.max(), "l", int(np.flatnonzero(lower)[np.argmax(lam_l)])))
        if nu and lam_u.min() < -mult_tol:
            candidates.append((lam_u.min(), "u", int(np.flatnonzero(upper)[np.argmin(lam_u)])))
        if not candidates:
            if qp.E.size and np.abs(qp.E @ z - qp.e).max() > 1e-10 * scale:
                return None
            return np.clip(z, qp.lb, qp.ub)
        _, kind, idx = min(candidates)
        {"g": g_act, "l": lower, "u": upper}[kind][idx] = False
    return None  # pragma: no cover - not reached from a good warm start


def solve_qp(qp: QP, *, what: str = "the portfolio problem") -> FloatArray:
    """Solve ``qp``; :class:`InfeasibleError` if no point meets the constraints."""
    x0 = _feasible_point(qp, what)
    scale = float(np.abs(np.diag(qp.H)).max(initial=0.0)) or 1.0
    h_s, c_s = qp.H / scale, qp.c / scale
    cons = []
    if qp.E.size:
        cons.append({"type": "eq", "fun": lambda z: qp.E @ z - qp.e, "jac": lambda z: qp.E})
    if qp.G.size:
        cons.append({"type": "ineq", "fun": lambda z: qp.h - qp.G @ z, "jac": lambda z: -qp.G})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = optimize.minimize(
            lambda z: 0.5 * z @ h_s @ z + c_s @ z, x0, jac=lambda z: h_s @ z + c_s,
            method="SLSQP", bounds=list(zip(qp.lb, qp.ub, strict=True)), constraints=cons,
            options={"ftol": 1e-15, "maxiter": 2000},
        )
    z = np.asarray(res.x, dtype=np.float64)
    polished = _polish(QP(h_s, c_s, qp.E, qp.e, qp.G, qp.h, qp.lb, qp.ub), z)
    if polished is not None:
        return polished
    if not res.success:
        raise OptimizationError(f"the solver failed on {what}: {res.message}",
                                field="solver", value=str(res.message))
    return z  # pragma: no cover - polish succeeds whenever SLSQP does in practice
