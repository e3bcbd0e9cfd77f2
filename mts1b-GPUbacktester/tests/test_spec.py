"""RunSpec: one frozen, validated run specification shared by run_single, run_weights,
run_ladder, run_walk_forward and the CLI; stored on the result and rendered by the tearsheet
(issue #16)."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import numpy as np
import pytest
from mts1b_foundation import UniversePanel
from mts1b_GPUbacktester import BacktestConfigError, run_single, run_weights
from mts1b_GPUbacktester.spec import RunSettings, RunSpec, bps_to_rate
from mts1b_quantkit import metrics as qm


def _equal(panel: UniversePanel) -> np.ndarray:
    return np.full(panel.shape, 1.0 / panel.shape[1])


def test_defaults_are_the_seeds() -> None:
    spec = RunSpec()
    assert spec.to_dict() == {
        "rebal": "daily", "trade_on": "schedule", "band": 0.0, "fill": "next_open",
        "sizing": {"method": "equal_weight_long", "gross": 1.0}, "cost_bps": 10.0,
        "slippage": None, "participation": None, "borrow_rate": None, "delisting": "sale",
        "initial_nav": 100_000.0,
        "backend": "auto", "calendar": None, "periods_per_year": None, "benchmark": None,
        "warmup_days": 400, "lookahead_check": False}


def test_the_typed_settings_are_the_spec_fields() -> None:
    """``**settings: Unpack[RunSettings]`` on every entry point lists exactly the fields."""
    assert tuple(typing.get_type_hints(RunSettings)) == RunSpec.settings()


@pytest.mark.parametrize(("settings", "field"), [
    ({"fill": "tomorrow"}, "fill"),
    ({"rebal": "hourly"}, "rebal"),
    ({"rebal": []}, "rebal"),
    ({"rebal": ["2020-13-01"]}, "rebal"),
    ({"trade_on": "always"}, "trade_on"),
    ({"band": -0.1}, "band"),
    ({"band": float("nan")}, "band"),
    ({"cost_bps": -1}, "cost_bps"),
    ({"cost_bps": {"AAA": float("inf")}}, "cost_bps['AAA']"),
    ({"slippage": {"model": "cube"}}, "slippage"),
    ({"slippage": {"model": "sqrt", "window": 1}}, "slippage['window']"),
    ({"slippage": {"bps": 1, "kk": 2}}, "slippage"),
    ({"participation": 0.0}, "participation"),
    ({"participation": 1.5}, "participation"),
    ({"borrow_rate": "2%"}, "borrow_rate"),
    ({"initial_nav": 0}, "initial_nav"),
    ({"backend": "gpu"}, "backend"),
    ({"calendar": ""}, "calendar"),
    ({"periods_per_year": 0}, "periods_per_year"),
    ({"periods_per_year": True}, "periods_per_year"),
    ({"benchmark": True}, "benchmark"),
    ({"warmup_days": -1}, "warmup_days"),
    ({"lookahead_check": "yes"}, "lookahead_check"),
    ({"sizing": {"method": "no_such_sizer"}}, "sizing"),
    ({"sizing": {"gross": 1.0}}, "sizing"),
])
def test_each_field_is_validated_at_construction(settings: dict[str, object], field: str
                                                  ) -> None:
    with pytest.raises(BacktestConfigError) as info:
        RunSpec(**settings)  # type: ignore[arg-type]
    assert info.value.context["field"] == field
    assert "value" in info.value.context


def test_frozen_copied_and_replaced_with_validation() -> None:
    per_symbol = {"AAA": 5.0}
    spec = RunSpec(cost_bps=per_symbol, rebal=["2020-01-03", "2020-01-02"], slippage=3)
    per_symbol["AAA"] = 99.0  # the spec holds its own copy
    assert spec.cost_bps == {"AAA": 5.0}
    assert spec.rebal == (np.datetime64("2020-01-02"), np.datetime64("2020-01-03"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.fill = "close"  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.cost_bps["AAA"] = 1.0  # type: ignore[index]
    changed = spec.replace(fill="close", band=0.02)
    assert (changed.fill, changed.band, spec.fill) == ("close", 0.02, "next_open")
    with pytest.raises(BacktestConfigError) as info:
        spec.replace(band=-1)
    assert info.value.context["field"] == "band"
    assert RunSpec(slippage=3) == RunSpec(slippage=3.0)
    # hashable despite its frozen mappings; repr shows what differs from the defaults
    assert hash(spec) == hash(RunSpec(cost_bps={"AAA": 5}, slippage=3.0,
                                      rebal=["2020-01-02", "2020-01-03"]))
    assert repr(RunSpec()) == "RunSpec()"
    assert repr(RunSpec(band=0.02, cost_bps=10)) == "RunSpec(band=0.02)"


def test_basis_points_become_rates_in_one_place() -> None:
    spec = RunSpec(cost_bps={"AAA": 10, "CCC": 2.5}, slippage=5, borrow_rate={"BBB": 0.03})
    costs, window = spec.cost_model(("AAA", "BBB", "CCC"), periods_per_year=365)
    assert np.array_equal(costs.commission, [0.001, 0.0, 0.00025])
    assert costs.slippage == bps_to_rate(5) == 0.0005
    assert np.array_equal(costs.borrow, [0.0, 0.03, 0.0]) and costs.periods_per_year == 365
    assert window is None
    impact = RunSpec(slippage={"model": "sqrt", "k": 0.5, "window": 10, "bps": 1})
    costs, window = impact.cost_model(("AAA",))
    assert (costs.impact_k, costs.slippage, window) == (0.5, 0.0001, 10)
    with pytest.raises(BacktestConfigError, match="outside the universe") as info:
        RunSpec(cost_bps={"ZZZ": 1}).cost_model(("AAA",))
    assert info.value.context["field"] == "cost_bps"


def test_run_single_builds_the_spec_stores_it_and_spec_kwargs_override(panel: UniversePanel
                                                                       ) -> None:
    base = RunSpec(rebal="weekly", cost_bps=3, trade_on="signal_change", backend="numpy")
    by_spec = run_single(weights=_equal(panel), universe=panel, spec=base)
    by_kwargs = run_single(weights=_equal(panel), universe=panel, rebal="weekly", cost_bps=3,
                           trade_on="signal_change", backend="numpy")
    assert by_spec.spec == by_kwargs.spec == base
    assert np.array_equal(by_spec.equity.to_numpy(), by_kwargs.equity.to_numpy())
    assert by_spec.config["trade_on"] == "signal_change" and by_spec.config["cost_bps"] == 3.0
    assert by_spec.config["universe"] == "panel" and by_spec.config["factor"] is None
    over = run_single(weights=_equal(panel), universe=panel, spec=base, cost_bps=20)
    assert over.spec == base.replace(cost_bps=20)
    assert over.cost_breakdown["commission"] > by_spec.cost_breakdown["commission"]
    weights_run = run_weights(panel, _equal(panel), spec=base, band=0.01)
    assert weights_run.spec == base.replace(band=0.01)
    with pytest.raises(BacktestConfigError, match="RunSpec") as info:
        run_single(weights=_equal(panel), universe=panel, spec={"cost_bps": 3})  # type: ignore[arg-type]
    assert info.value.context["field"] == "spec"


def test_a_panel_without_a_calendar_keeps_252_and_numbers_unchanged(panel: UniversePanel
                                                                     ) -> None:
    """Default settings on a panel that states no calendar (as on XNYS): every annualised
    number is quantkit's with its default 252 periods, bit for bit."""
    res = run_single(weights=_equal(panel), universe=panel, rebal="weekly")
    assert (res.periods_per_year, res.calendar) == (252.0, None)
    r = res.returns.to_numpy()
    assert res.sharpe == float(qm.sharpe(r)) and res.cagr == float(qm.cagr(r))
    assert res.volatility == float(qm.volatility(r)) and res.sortino == float(qm.sortino(r))
    assert res.metric("sharpe") == qm.sharpe(r)
    stated = run_single(weights=_equal(panel), universe=panel, rebal="weekly",
                        calendar="24/7")
    assert (stated.periods_per_year, stated.calendar) == (365.0, "24/7")
    assert stated.sharpe == pytest.approx(res.sharpe * np.sqrt(365 / 252), rel=1e-12)
    assert stated.metric("sharpe") == pytest.approx(stated.sharpe, rel=1e-12)


def test_the_panel_calendar_decides_and_a_different_one_is_refused() -> None:
    close = np.linspace(100, 120, 30)[:, None]
    days = np.arange("2021-01-01", "2021-01-31", dtype="datetime64[D]")
    crypto = UniversePanel(days, ["BTC"], open=close, high=close, low=close, close=close,
                           volume=np.ones_like(close), calendar="24/7", periods_per_year=365)
    res = run_single(weights=np.ones((30, 1)), universe=crypto)
    assert (res.periods_per_year, res.periods_per_year_source) == (
        365.0, "the panel's calendar (24/7)")
    forced = run_single(weights=np.ones((30, 1)), universe=crypto, periods_per_year=252)
    assert (forced.periods_per_year, forced.periods_per_year_source) == (
        252.0, "periods_per_year")
    with pytest.raises(BacktestConfigError, match="24/7") as info:
        run_single(weights=np.ones((30, 1)), universe=crypto, calendar="XNYS")
    assert info.value.context["field"] == "calendar"


def test_the_tearsheet_renders_the_spec(panel: UniversePanel, tmp_path: Path) -> None:
    res = run_single(weights=_equal(panel), universe=panel, rebal="weekly",
                     trade_on="signal_change", band=0.03, cost_bps={"S00": 7},
                     slippage={"model": "sqrt", "k": 0.5, "window": 10}, borrow_rate=0.02,
                     periods_per_year=365, backend="numpy")
    text = res.report(tmp_path / "t.html").read_text(encoding="utf-8")
    settings = text[text.index("<h2>Settings</h2>"):]
    for needle in ("trade on</td><td>signal_change", "band</td><td>0.03",
                   "commission</td><td>S00: 7 bps (others 0)",
                   "sqrt impact k=0.5 over 10 sessions", "borrow</td><td>2.00% a year",
                   "rebalance</td><td>weekly", "periods per year (asked)</td><td>365"):
        assert needle in settings, needle
    assert "periods per year</td><td>365 (periods_per_year)" in text
    assert "Rolling Sharpe (182 days)" in text  # half a year of 365-day rows
