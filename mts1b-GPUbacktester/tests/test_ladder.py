"""Ladders: the fast path agrees with the generic one and with run_single; tiles bound memory;
executors agree; walk-forward."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from mts1b_foundation import UniversePanel
from mts1b_GPUbacktester import (
    BacktestConfigError,
    expand_grid,
    run_ladder,
    run_single,
    run_walk_forward,
    run_weights,
)
from mts1b_quantkit.cv import WalkForward
from mts1b_quantkit.factors import evaluate, get

GRID = {"p_fast": [3, 5, 8], "p_slow": [10, 21]}


def _slow_sma_cross(panel, /, p_fast=20, p_slow=50):  # type: ignore[no-untyped-def]
    """The registered factor behind another name, so the ladder takes the generic path."""
    return get("f_sma_cross")(panel, p_fast=p_fast, p_slow=p_slow)


def test_fast_path_only_for_quantkits_own_sma_cross(panel: UniversePanel) -> None:
    from mts1b_GPUbacktester.ladder import _is_builtin_sma_cross

    assert _is_builtin_sma_cross("f_sma_cross") and _is_builtin_sma_cross(get("f_sma_cross"))
    assert _is_builtin_sma_cross("f_sma_cross_fast")

    def f_sma_cross(panel, /, p_fast=20, p_slow=50):  # type: ignore[no-untyped-def]
        return -get("f_sma_cross")(panel, p_fast=p_fast, p_slow=p_slow)

    assert not _is_builtin_sma_cross(f_sma_cross)
    assert not run_ladder(f_sma_cross, GRID, universe=panel, progress=False,
                          mode="per_asset").fast_path


def test_expand_grid_and_constraint() -> None:
    combos = expand_grid({"a": [1, 2, 3], "b": [2, 3]}, lambda c: c["a"] < c["b"])
    assert combos == [{"a": 1, "b": 2}, {"a": 1, "b": 3}, {"a": 2, "b": 3}]
    with pytest.raises(BacktestConfigError):
        expand_grid({"a": [1]}, lambda c: False)
    with pytest.raises(BacktestConfigError):
        expand_grid({"a": "abc"})


@pytest.mark.parametrize("fill", ["close", "next_open"])
def test_per_asset_fast_path_equals_generic_path_and_run_weights(panel: UniversePanel,
                                                                 fill: str) -> None:
    fast = run_ladder("f_sma_cross", GRID, universe=panel, mode="per_asset", fill=fill,
                      tile_size=4, keep="returns", progress=False, backend="numpy")
    slow = run_ladder(_slow_sma_cross, GRID, universe=panel, mode="per_asset", fill=fill,
                      keep="returns", progress=False, backend="numpy")
    assert fast.fast_path and not slow.fast_path
    assert fast.total_return is not None and slow.total_return is not None
    np.testing.assert_allclose(fast.total_return, slow.total_return, rtol=0, atol=1e-12)
    # one (combo, asset) account == run_weights on that asset alone with weight 1 when long
    k, a = 4, 2
    params = expand_grid(GRID)[k]
    long = evaluate("f_sma_cross", panel, **params)[:, a] > 0
    one = panel.select([panel.symbols[a]])
    res = run_weights(one, long[:, None].astype(float), fill=fill, backend="numpy",
                      benchmark=False)
    assert res.total_return == pytest.approx(fast.total_return[k, a], abs=1e-10)


def test_portfolio_ladder_equals_run_single_per_combo(panel: UniversePanel) -> None:
    fast = run_ladder("f_sma_cross", GRID, universe=panel, start=panel.dates[30],
                      rebal="weekly", tile_size=4, progress=False, backend="numpy")
    slow = run_ladder(_slow_sma_cross, GRID, universe=panel, start=panel.dates[30],
                      rebal="weekly", tile_size=3, progress=False, backend="numpy")
    np.testing.assert_allclose(fast.table["sharpe"], slow.table["sharpe"], rtol=1e-10)
    for k in (0, 5):
        params = expand_grid(GRID)[k]
        single = run_single(factor="f_sma_cross", params=params, universe=panel,
                            start=panel.dates[30], rebal="weekly", backend="numpy")
        row = fast.table.iloc[k]
        assert row["sharpe"] == pytest.approx(single.sharpe, rel=1e-10)
        assert row["total_return"] == pytest.approx(single.total_return, rel=1e-10)
        assert row["max_drawdown"] == pytest.approx(single.max_drawdown, rel=1e-10)
        assert row["turnover"] == pytest.approx(single.turnover, rel=1e-10)
    assert fast.best("sharpe")["sharpe"] == fast.table["sharpe"].max()


def test_process_executor_matches_local(panel: UniversePanel) -> None:
    local = run_ladder("f_sma_cross", GRID, universe=panel, mode="per_asset",
                       tile_size=2, progress=False, backend="numpy")
    pooled = run_ladder("f_sma_cross", GRID, universe=panel, mode="per_asset",
                        tile_size=2, executor="process", workers=2, progress=False,
                        backend="numpy")
    np.testing.assert_array_equal(local.table.to_numpy(), pooled.table.to_numpy())


def test_ray_executor_on_a_local_ray_cluster(panel: UniversePanel) -> None:
    ray = pytest.importorskip("ray", reason="Ray is an optional extra (mts1b-GPUbacktester[ray])")
    try:
        local = run_ladder("f_sma_cross", GRID, universe=panel, mode="per_asset",
                           progress=False, backend="numpy")
        remote = run_ladder("f_sma_cross", GRID, universe=panel, mode="per_asset",
                            tile_size=2, executor="ray", progress=False, backend="numpy",
                            ray_init={"num_cpus": 2, "include_dashboard": False,
                                      "_node_ip_address": "127.0.0.1"})
    finally:
        ray.shutdown()
    np.testing.assert_array_equal(local.table.to_numpy(), remote.table.to_numpy())


def test_tiles_bound_memory(panel_factory) -> None:  # type: ignore[no-untyped-def]
    panel = panel_factory(400, 40, seed=1)

    def peak(n_slow: int) -> int:
        grid = {"p_fast": [2, 3, 4, 5], "p_slow": list(range(10, 10 + n_slow))}
        tracemalloc.start()
        run_ladder("f_sma_cross", grid, universe=panel, mode="per_asset", tile_size=8,
                   progress=False, backend="numpy")
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, large = peak(4), peak(40)  # 16 vs 160 combinations, 8 per tile
    assert large < 1.5 * small


def test_progress_bar_reports_rate_and_eta(panel: UniversePanel, capsys) -> None:  # type: ignore[no-untyped-def]
    run_ladder("f_sma_cross", GRID, universe=panel, mode="per_asset", tile_size=2,
               progress=True, backend="numpy")
    err = capsys.readouterr().err
    assert "6/6" in err and "combo/s" in err and "<" in err  # elapsed<remaining


def test_ladder_config_errors(panel: UniversePanel) -> None:
    with pytest.raises(BacktestConfigError):
        run_ladder("f_sma_cross", GRID, universe=panel, mode="both", progress=False)
    with pytest.raises(BacktestConfigError):
        run_ladder("f_sma_cross", GRID, universe=panel, mode="per_asset", participation=0.1,
                   progress=False)
    with pytest.raises(BacktestConfigError):
        run_ladder("f_sma_cross", GRID, universe=panel, executor="dask", progress=False)


def test_walk_forward_chooses_in_sample_and_reports_out_of_sample(
        panel: UniversePanel) -> None:
    wf = run_walk_forward("f_sma_cross", GRID, universe=panel, start=panel.dates[20],
                          cv=WalkForward(train=120, test=50), rebal="weekly", backend="numpy")
    assert len(wf.folds) == 3
    assert list(wf.folds["test_start"]) == sorted(wf.folds["test_start"])
    assert (wf.folds["test_start"] > wf.folds["train_end"]).all()
    assert len(wf.returns) == 150
    assert set(wf.folds["p_fast"]) <= set(GRID["p_fast"])
    for _, fold in wf.folds.iterrows():
        ladder = run_ladder("f_sma_cross", GRID, universe=panel.until(fold["train_end"]),
                            start=fold["train_start"], rebal="weekly", progress=False,
                            backend="numpy")
        assert fold["is_sharpe"] == pytest.approx(ladder.table["sharpe"].max())
    assert np.isfinite(wf.metrics["sharpe"])
