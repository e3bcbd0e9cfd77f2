"""The run specification in ladders and walk-forward (issue #16): run_ladder and
run_walk_forward take the same settings (keyword arguments or ``spec=``) as run_single, the
portfolio ladder honours trade_on and band, and both annualise with the panel calendar's
periods per year."""

from __future__ import annotations

import numpy as np
import pytest
from mts1b_foundation import UniversePanel
from mts1b_GPUbacktester import (
    BacktestConfigError,
    RunSpec,
    expand_grid,
    run_ladder,
    run_single,
    run_walk_forward,
)
from mts1b_quantkit import metrics as qm
from mts1b_quantkit.cv import WalkForward

GRID = {"p_fast": [3, 5], "p_slow": [10, 20]}


def _on_calendar(panel: UniversePanel, calendar: str, periods: float) -> UniversePanel:
    fields = {k: panel.field(k) for k in ("open", "high", "low", "close", "volume")}
    return UniversePanel(panel.dates, panel.symbols, **fields, calendar=calendar,
                         periods_per_year=periods)


def test_portfolio_ladder_trades_and_annualises_as_run_single(panel: UniversePanel) -> None:
    crypto = _on_calendar(panel, "24/7", 365)
    spec = RunSpec(rebal="weekly", trade_on="signal_change", band=0.02, cost_bps=5,
                   backend="numpy")
    ladder = run_ladder("f_sma_cross", GRID, universe=crypto, start=crypto.dates[30],
                        progress=False, spec=spec)
    assert ladder.spec == spec and ladder.periods_per_year == 365.0
    for k, params in enumerate(expand_grid(GRID)):
        single = run_single(factor="f_sma_cross", params=params, universe=crypto,
                            start=crypto.dates[30], spec=spec)
        row = ladder.table.iloc[k]
        assert row["total_return"] == pytest.approx(single.total_return, rel=1e-12)
        assert row["sharpe"] == pytest.approx(single.sharpe, rel=1e-12)
        assert row["cagr"] == pytest.approx(single.cagr, rel=1e-12)
        assert single.periods_per_year == 365.0
    schedule = run_ladder("f_sma_cross", GRID, universe=crypto, start=crypto.dates[30],
                          progress=False, spec=spec.replace(trade_on="schedule", band=0.0))
    assert not np.allclose(schedule.table["total_return"], ladder.table["total_return"])


def test_per_asset_mode_refuses_what_its_accounts_cannot_do(panel: UniversePanel) -> None:
    for settings in ({"band": 0.02}, {"cost_bps": {"S00": 5}}, {"borrow_rate": 0.01},
                     {"slippage": {"model": "sqrt"}}):
        with pytest.raises(BacktestConfigError, match="per_asset mode") as info:
            run_ladder("f_sma_cross", GRID, universe=panel, mode="per_asset",
                       progress=False, **settings)  # type: ignore[arg-type]
        assert info.value.context["field"] == "mode"


def test_walk_forward_runs_every_fold_under_one_spec(panel: UniversePanel) -> None:
    fx = _on_calendar(panel, "24/5", 260)
    spec = RunSpec(rebal="weekly", cost_bps=2, backend="numpy")
    wf = run_walk_forward("f_sma_cross", GRID, universe=fx, start=fx.dates[20],
                          cv=WalkForward(train=120, test=50), spec=spec)
    assert wf.spec == spec and wf.periods_per_year == 260.0
    assert all(r.spec == spec and r.periods_per_year == 260.0 for r in wf.results)
    r = wf.returns.to_numpy()
    assert wf.metrics["sharpe"] == pytest.approx(float(qm.sharpe(r, periods_per_year=260)),
                                                 rel=1e-12)
