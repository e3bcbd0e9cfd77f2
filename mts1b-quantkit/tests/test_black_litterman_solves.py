"""Black-Litterman factorises each matrix once (the parity tests against PyPortfolioOpt live in
test_portfolio.py); here on synthetic data, so it runs without the reference libraries."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from mts1b_quantkit.portfolio import black_litterman


def test_each_matrix_is_checked_and_solved_once(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    cov = np.cov(rng.normal(0.0, 0.01, size=(500, 5)), rowvar=False) * 252
    p = np.array([[1.0, -1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5, 0.0]])
    q = np.array([0.02, 0.04])
    seen: list[tuple[str, bytes]] = []
    real_solve, real_cond = np.linalg.solve, np.linalg.cond

    def solve(a: Any, b: Any) -> Any:
        seen.append(("solve", np.asarray(a).tobytes()))
        return real_solve(a, b)

    def cond(a: Any, p: Any = None) -> Any:
        seen.append(("cond", np.asarray(a).tobytes()))
        return real_cond(a, p)

    monkeypatch.setattr(np.linalg, "solve", solve)
    monkeypatch.setattr(np.linalg, "cond", cond)
    got = black_litterman(cov, pi="equal", P=p, Q=q, tau=0.05, risk_aversion=2.0)
    monkeypatch.undo()

    # two matrices (the view matrix and delta * C), each checked once and factorised once
    assert sorted(kind for kind, _ in seen) == ["cond", "cond", "solve", "solve"]
    assert len(set(seen)) == len(seen)

    # and the numbers are the textbook formulas
    prior = np.full(5, 0.2)
    om = np.diag(np.diag(0.05 * p @ cov @ p.T))
    inv = np.linalg.inv(p @ (0.05 * cov) @ p.T + om)
    post = prior + 0.05 * cov @ p.T @ inv @ (q - p @ prior)
    post_cov = cov + 0.05 * cov - 0.05 * cov @ p.T @ inv @ p @ (0.05 * cov)
    raw = np.linalg.inv(2.0 * cov) @ post
    np.testing.assert_allclose(got.returns, post, rtol=0, atol=1e-14)
    np.testing.assert_allclose(got.cov, post_cov, rtol=0, atol=1e-14)
    np.testing.assert_allclose(got.weights, raw / raw.sum(), rtol=0, atol=1e-10)
