"""The array kernels on their own: rolling means, per-asset accounts, the engine."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mts1b_GPUbacktester.kernels import (
    cost_rates,
    ffill_rows,
    per_asset_context,
    per_asset_log_growth,
    rolling_mean_stack,
)
from mts1b_GPUbacktester.sim import CostModel, SimInputs, simulate


def _walk(t_len: int, a_len: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 20.0 * np.exp(np.cumsum(rng.normal(0, 0.02, (t_len, a_len)), axis=0))


def test_rolling_mean_stack_equals_pandas_rolling_with_nans() -> None:
    x = _walk(120, 4)
    x[10, 1] = np.nan
    x[50:53, 2] = np.nan
    windows = [1, 5, 20]
    got = rolling_mean_stack(x, windows)
    for k, w in enumerate(windows):
        want = pd.DataFrame(x).rolling(w).mean().to_numpy()
        np.testing.assert_allclose(got[k], want, rtol=1e-12, atol=0, equal_nan=True)


def test_rolling_mean_stack_lag1_matches_the_migration_guide_loop() -> None:
    x = _walk(80, 3)
    x[30, 0] = np.nan
    got = rolling_mean_stack(x, [7], lag=1, min_periods=1)[0]
    with np.errstate(invalid="ignore", divide="ignore"), pytest.warns(RuntimeWarning):
        want = np.array([x[max(0, t - 7):t].mean(axis=0) for t in range(len(x))])
    np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)


def test_ffill_rows() -> None:
    valid = np.array([[False, True], [True, False], [False, False], [True, True]])
    np.testing.assert_array_equal(ffill_rows(valid), [[-1, 0], [1, 0], [1, 0], [3, 3]])


def test_cost_rates_follow_vectorbt_slippage_then_fees() -> None:
    buy, sell = cost_rates(0.001, 0.002)
    assert buy == pytest.approx(1.002 * 1.001 - 1)
    assert sell == pytest.approx(1 - 0.998 * 0.999)


def _single_asset_sim(price: np.ndarray, signal: np.ndarray, *, shift: int, fee: float,
                      exec_price: np.ndarray | None = None) -> np.ndarray:
    t_len = price.shape[0]
    ex = (price if exec_price is None else exec_price)[:, None]
    inp = SimInputs(exec_price=ex, mark_price=pd.Series(price).ffill().to_numpy()[:, None],
                    close=price[:, None], targets=signal[None, :, None].astype(float),
                    rebalance=np.ones(t_len, bool), in_universe=np.ones((t_len, 1), bool),
                    delist_row=np.array([t_len]), shift=shift)
    return simulate(inp, CostModel(commission=fee), initial_nav=1.0).nav[0]


@pytest.mark.parametrize("shift", [0, 1])
def test_per_asset_closed_form_equals_the_engine(shift: int) -> None:
    close = _walk(250, 5)
    opens = close * np.exp(np.random.default_rng(9).normal(0, 0.01, close.shape))
    stack = rolling_mean_stack(close, [5, 20])
    signal = stack[0] > stack[1]
    ex = close if shift == 0 else opens
    ctx = per_asset_context(ex, close, shift=shift, buy_rate=0.001, sell_rate=0.001)
    growth, n_in, n_out = per_asset_log_growth(signal[None], ctx)
    for a in range(close.shape[1]):
        nav = _single_asset_sim(close[:, a], signal[:, a], shift=shift, fee=0.001,
                                exec_price=ex[:, a])
        assert np.expm1(growth[0, a]) == pytest.approx(nav[-1] - 1, abs=1e-12)
    assert np.all(n_in >= n_out) and np.all(n_in - n_out <= 1)


def test_per_asset_no_trade_on_nan_price_keeps_the_position() -> None:
    close = np.array([10.0, 11.0, np.nan, 12.0, 13.0])
    signal = np.array([True, True, False, False, False])[None, :, None]
    ctx = per_asset_context(close[:, None], close[:, None], shift=0, buy_rate=0.0,
                            sell_rate=0.0)
    growth, n_in, n_out = per_asset_log_growth(signal, ctx)
    # bought at 10, could not sell on the NaN day, sold at 12 the day after
    assert np.expm1(growth[0, 0]) == pytest.approx(12 / 10 - 1)
    assert (n_in[0, 0], n_out[0, 0]) == (1, 1)


def test_per_asset_delisted_account_is_closed_at_the_last_price() -> None:
    close = np.array([10.0, 11.0, 9.0, np.nan, np.nan])
    signal = np.ones((1, 5, 1), bool)
    ctx = per_asset_context(close[:, None], close[:, None], shift=0, buy_rate=0.01,
                            sell_rate=0.01)
    growth, n_in, n_out = per_asset_log_growth(signal, ctx)
    assert np.expm1(growth[0, 0]) == pytest.approx(9 / 10 * 0.99 / 1.01 - 1)
    assert (n_in[0, 0], n_out[0, 0]) == (1, 1)


def test_simulate_batches_combos_independently() -> None:
    close = _walk(150, 3)
    t_len, a_len = close.shape
    rng = np.random.default_rng(0)
    targets = rng.uniform(0, 1, (4, t_len, a_len))
    targets /= targets.sum(axis=2, keepdims=True)
    base = dict(exec_price=close, mark_price=close, close=close,
                rebalance=np.ones(t_len, bool), in_universe=np.ones((t_len, a_len), bool),
                delist_row=np.full(a_len, t_len), shift=1)
    costs = CostModel(commission=0.0005)
    together = simulate(SimInputs(targets=targets, **base), costs).nav
    for c in range(4):
        alone = simulate(SimInputs(targets=targets[c:c + 1], **base), costs).nav[0]
        np.testing.assert_allclose(together[c], alone, rtol=1e-13)


def _all_in(t_len: int, a_len: int, plans: list[list[tuple[int, int | None]]]) -> np.ndarray:
    """``(len(plans), T, A)`` targets: each combo all in one asset (or cash: None) from each
    plan's row on. One asset at weight 1 does not drift, so daily rebalances between switches
    leave only float residue: the quiet bars simulate skips."""
    targets = np.zeros((len(plans), t_len, a_len))
    for c, plan in enumerate(plans):
        for (row, asset), (until, _) in zip(plan, [*plan[1:], (t_len, None)], strict=True):
            if asset is not None:
                targets[c, row:until, asset] = 1.0
    return targets


# fill reasons: 0 rebalance, 1 carry (an order left from an earlier decision), 2 universe exit,
# 3 delisting; with daily rebalances every order is a rebalance one
@pytest.mark.parametrize(("shift", "schedule", "participation", "reasons"),
                         [(0, "daily", None, {0, 2, 3}), (1, "daily", None, {0, 2, 3}),
                          (1, "weekly", None, {0, 1, 2, 3}), (1, "daily", 0.01, {0, 2, 3})])
def test_skipping_quiet_bars_changes_no_bit(monkeypatch: pytest.MonkeyPatch, shift: int,
                                            schedule: str, participation: float | None,
                                            reasons: set[int]) -> None:
    """The reference engine's quiet-bar fast-forward against its plain bar loop: identical
    records."""
    from mts1b_GPUbacktester import sim_reference as sim

    t_len, a_len = 400, 5
    close = _walk(t_len, a_len, seed=11)
    price = close * np.exp(np.random.default_rng(2).normal(0, 0.004, close.shape))
    price[44:52, 1] = np.nan                       # no trade for a few days: orders wait
    close[300:, 3] = np.nan                        # delisted at row 299
    price[300:, 3] = np.nan
    in_universe = np.ones((t_len, a_len), bool)
    in_universe[150:220, 2] = False                # leaves the universe and comes back
    rebalance = np.ones(t_len, bool) if schedule == "daily" else np.arange(t_len) % 5 == 0
    # combo 0 buys asset 1 while it has no price (carry), holds asset 2 when it leaves the
    # universe (exit) and asset 3 when it delists; the others switch now and then
    targets = _all_in(t_len, a_len, [[(0, 0), (42, 1), (100, 2), (200, 3), (330, 4)],
                                     [(0, 4), (150, None), (260, 0)],
                                     [(0, 2), (90, None), (120, 2)]])
    inp = SimInputs(exec_price=price, mark_price=pd.DataFrame(close).ffill().to_numpy(),
                    close=close, targets=targets, rebalance=rebalance, in_universe=in_universe,
                    delist_row=np.array([t_len, t_len, t_len, 299, t_len]), shift=shift,
                    start=12, volume=np.full((t_len, a_len), 1e5))
    costs = CostModel(commission=0.001, slippage=0.0002, participation=participation)
    skipped: list[int] = []
    real_skip = sim._skip_quiet

    def counting(*args):  # type: ignore[no-untyped-def]
        skipped.append(real_skip(*args))
        return skipped[-1]

    monkeypatch.setattr(sim, "_skip_quiet", counting)
    fast = simulate(inp, costs, initial_nav=1e5, record_weights=True, record_fills=True,
                    engine="reference")
    assert sum(skipped) > t_len // 2               # the fast path did the most of the work
    monkeypatch.setattr(sim, "_skip_quiet", lambda *args: 0)   # every bar through the loop
    plain = simulate(inp, costs, initial_nav=1e5, record_weights=True, record_fills=True,
                     engine="reference")
    for name in ("nav", "commission", "slippage", "borrow", "traded", "weights"):
        a, b = getattr(fast, name), getattr(plain, name)
        assert a.tobytes() == b.tobytes(), name    # bit for bit, signed zeros included
    assert fast.fills is not None and plain.fills is not None
    assert len(fast.fills) == len(plain.fills) > 5
    for col in ("row", "asset", "shares", "price", "commission", "slippage", "reason"):
        assert getattr(fast.fills, col).tobytes() == getattr(plain.fills, col).tobytes(), col
    assert set(plain.fills.reason.tolist()) == reasons
