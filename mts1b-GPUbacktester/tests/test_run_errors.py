"""What a new user ran into (issue #16): unknown keyword arguments surfaced as internal
TypeErrors, range errors showed warm-up-shifted dates, and ``universe("us-large-cap", n=50)``
worked in ``build_panel`` but not in ``run_single``."""

from __future__ import annotations

import numpy as np
import pytest
from mts1b_datalake import Store, build_panel, universe
from mts1b_foundation import UniversePanel
from mts1b_GPUbacktester import (
    BacktestConfigError,
    run_ladder,
    run_single,
    run_walk_forward,
    run_weights,
)
from mts1b_GPUbacktester.spec import RunSpec


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    from mts1b_datalake.synthetic import install_demo_market

    return install_demo_market(tmp_path_factory.mktemp("store"), n_assets=40,
                               start="2016-01-01", end="2019-12-31")


# -- unknown keyword arguments --------------------------------------------------------------
def test_unknown_keyword_is_a_config_error_listing_the_accepted_ones(panel: UniversePanel
                                                                    ) -> None:
    w = np.full(panel.shape, 1 / 6)
    with pytest.raises(BacktestConfigError) as info:
        run_single(weights=w, universe=panel, cost_bp=5)  # type: ignore[call-arg]
    err = info.value
    assert not isinstance(err, TypeError)
    assert "run_single() got unknown keyword argument 'cost_bp'" in str(err)
    assert "did you mean 'cost_bps'?" in str(err)
    accepted = err.context["accepted"]
    assert accepted[0] == "cost_bps"  # the close match first, then every other keyword
    assert {"factor", "params", "universe", "start", "end", "weights", "store", "spec",
            "rebal", "trade_on", "band", "calendar", "periods_per_year"} <= set(accepted)
    assert err.context["field"] == "keywords" and err.context["value"] == ["cost_bp"]


@pytest.mark.parametrize("call", [
    lambda p: run_weights(p, np.zeros(p.shape), rebalance="weekly"),
    lambda p: run_ladder("f_sma_cross", {"p_fast": [5]}, universe=p, rebalance="weekly"),
    lambda p: run_walk_forward("f_sma_cross", {"p_fast": [5]}, universe=p, rebalance="weekly"),
    lambda p: RunSpec(rebalance="weekly"),
], ids=["run_weights", "run_ladder", "run_walk_forward", "RunSpec"])
def test_every_entry_point_refuses_unknown_keywords_the_same_way(panel: UniversePanel,
                                                                 call: object) -> None:
    with pytest.raises(BacktestConfigError, match="unknown keyword argument 'rebalance'; "
                       "did you mean 'rebal'") as info:
        call(panel)  # type: ignore[operator]
    assert info.value.context["accepted"][0] == "rebal"


def test_a_keyword_with_no_close_match_still_lists_all(panel: UniversePanel) -> None:
    with pytest.raises(BacktestConfigError, match="Accepted: ") as info:
        run_single(weights=np.zeros(panel.shape), universe=panel, zzz=1)  # type: ignore[call-arg]
    assert "did you mean" not in str(info.value)
    assert info.value.context["accepted"] == sorted(info.value.context["accepted"])


# -- the user's own dates -------------------------------------------------------------------
def test_start_after_end_names_the_dates_given(store: Store) -> None:
    with pytest.raises(BacktestConfigError) as info:
        run_single(factor="f_sma_cross", universe="us-large-cap", start="2018-01-01",
                   end="2014-01-01", store=store)
    assert str(info.value).endswith("start 2018-01-01 is after end 2014-01-01")
    assert "2016-11-27" not in str(info.value)  # the warm-up-shifted start of old
    assert info.value.context == {"field": "start", "value": "2018-01-01",
                                  "end": "2014-01-01"}


def test_range_errors_name_the_dates_given(store: Store, panel: UniversePanel) -> None:
    w = np.zeros(panel.shape)
    with pytest.raises(BacktestConfigError, match="start 2021-06-01 is after end 2021-01-01"):
        run_single(weights=w, universe=panel, start="2021-06-01", end="2021-01-01")
    with pytest.raises(BacktestConfigError, match="start 2030-01-01 is after the last date"):
        run_single(weights=w, universe=panel, start="2030-01-01")
    with pytest.raises(BacktestConfigError, match="start is not a date: '2018-02-30'"):
        run_single(factor="f_sma_cross", universe="us-large-cap", start="2018-02-30",
                   store=store)
    # no data at all in the range: the message leads with the dates given, then says which
    # warm-up window was loaded
    with pytest.raises(BacktestConfigError) as info:
        run_single(factor="f_sma_cross", universe=["SPY"], start="1995-01-01",
                   end="1995-06-30", store=store)
    message = str(info.value)
    assert "from start 1995-01-01 to end 1995-06-30" in message
    assert "loaded from 1993-11-27, 400 days of warm-up" in message
    assert info.value.context["start"] == "1995-01-01"


# -- every universe form build_panel takes --------------------------------------------------
@pytest.mark.parametrize("form", ["name", "list", "tuple", "universe-object"])
def test_run_single_takes_every_universe_form_build_panel_takes(store: Store, form: str
                                                                ) -> None:
    names = [s for s in store.symbols() if s != "SPY"][:2]
    given: object = {"name": "us-large-cap", "list": ["SPY", *names], "tuple": ("SPY", *names),
                     "universe-object": universe("us-large-cap", n=10)}[form]
    res = run_single(factor="f_sma_cross", params={"p_fast": 5, "p_slow": 20},
                     universe=given, start="2017-01-01", end="2017-12-31", store=store,
                     backend="numpy")
    # the panel run_single loads: 400 days of warm-up before start
    direct = build_panel(given, "2015-11-28", "2017-12-31", store=store)  # type: ignore[arg-type]
    assert res.symbols == direct.symbols
    assert str(res.equity.index[0].date()) == "2017-01-03"  # the first session >= start
    assert res.calendar == "XNYS" and res.periods_per_year == 252.0
    if form == "universe-object":
        assert res.config["universe"] == "us-large-cap(n=10)"
        assert int((res.target_weights > 0).sum(axis=1).max()) <= 10


def test_a_bad_universe_is_a_config_error_from_the_same_reader(store: Store) -> None:
    for bad, needle in ((42, "not int"), ({"SPY": 1}, "not dict"),
                        ("us-larg-cap", "unknown universe 'us-larg-cap'"), ([], "at least one")):
        with pytest.raises(BacktestConfigError, match=needle) as info:
            run_single(factor="f_sma_cross", universe=bad, start="2017-01-01", store=store)
        assert info.value.context["field"] == "universe"
