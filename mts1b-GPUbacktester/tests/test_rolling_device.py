"""quantkit's rolling windows, which the ladder kernels use, on the cupy path (the strict CPU
stand-in): device arrays in, device arrays out, the numpy results to 1e-12, the ladder's
signals identical."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest
from mts1b_foundation import UniversePanel
from mts1b_GPUbacktester.kernels import rolling_mean_stack
from mts1b_quantkit.factors import get_ladder, rolling, sma_cross_signals


@pytest.fixture
def messy(panel: UniversePanel) -> np.ndarray:
    close = np.array(panel.close)
    close[10:13, 0] = np.nan
    close[:40, 2] = np.nan
    close[100, 3] = np.inf
    close[150:170, 4] = close[149, 4]  # stale: constant windows (the std's exact recheck)
    return close


@pytest.mark.parametrize("name", ["rolling_sum", "rolling_mean", "rolling_std", "rolling_min",
                                  "rolling_max"])
@pytest.mark.parametrize(("window", "min_periods"), [(1, None), (7, None), (30, 2)])
def test_rolling_windows_on_the_device(fake_cupy: ModuleType, messy: np.ndarray, name: str,
                                       window: int, min_periods: int | None) -> None:
    fn = getattr(rolling, name)
    want = fn(messy, window, min_periods=min_periods)
    got = fn(fake_cupy.asarray(messy), window, min_periods=min_periods)
    assert isinstance(got, fake_cupy.ndarray)
    np.testing.assert_allclose(got.get(), want, rtol=1e-12, atol=0, equal_nan=True)


def test_rolling_means_and_the_stack_on_the_device(fake_cupy: ModuleType,
                                                   messy: np.ndarray) -> None:
    windows = [1, 4, 20, 60]
    want = rolling.rolling_means(messy, windows, lag=1, min_periods=1, skipna=False)
    got = rolling.rolling_means(fake_cupy.asarray(messy), windows, lag=1, min_periods=1,
                                skipna=False)
    assert isinstance(got, fake_cupy.ndarray)
    np.testing.assert_allclose(got.get(), want, rtol=1e-12, atol=0, equal_nan=True)
    stack = rolling_mean_stack(messy, windows, lag=1, min_periods=1, xp=fake_cupy)
    assert isinstance(stack, fake_cupy.ndarray)  # a host input is moved to the device
    plain = rolling_mean_stack(messy, windows, lag=1, min_periods=1)
    np.testing.assert_allclose(stack.get(), plain, rtol=1e-12, atol=0, equal_nan=True)


def test_sma_cross_signals_and_the_evaluator_on_the_device(fake_cupy: ModuleType,
                                                           panel: UniversePanel,
                                                           messy: np.ndarray) -> None:
    pairs = [(3, 10), (5, 10), (8, 21)]
    want = sma_cross_signals(messy, pairs)(0, 3)
    got = sma_cross_signals(fake_cupy.asarray(messy), pairs)(0, 3)
    assert isinstance(got, fake_cupy.ndarray)
    np.testing.assert_array_equal(got.get(), want)
    evaluator = get_ladder("f_sma_cross")
    assert evaluator is not None

    class Block:  # what the ladder hands an evaluator: the fields on the device
        close = fake_cupy.asarray(messy)

    combos = [{"p_fast": f, "p_slow": s} for f, s in pairs]
    plain = sma_cross_signals(messy, pairs, compensated=False)(1, 3)
    np.testing.assert_array_equal(evaluator.prepare(Block(), combos)(1, 3).get(), plain)
