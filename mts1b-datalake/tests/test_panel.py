"""build_panel: the contract the backtester codes against."""

from __future__ import annotations

import time

import numpy as np
import pytest
from mts1b_datalake import (
    EmptyRangeError,
    InvalidRangeError,
    Store,
    UnknownFieldError,
    UnknownSymbolError,
    UnknownUniverseError,
    build_panel,
    panel_info,
    universe,
)
from mts1b_datalake.calendar import trading_days
from mts1b_foundation import UniversePanel


@pytest.mark.slow
def test_full_sp500_panel_shape_and_speed(sp500_store: Store) -> None:
    symbols = sp500_store.symbols()
    build_panel(symbols[:5], "2013-02-08", "2013-03-01", store=sp500_store)  # warm caches
    t0 = time.perf_counter()
    panel = build_panel(symbols, "2013-02-08", "2018-02-07", store=sp500_store)
    seconds = time.perf_counter() - t0
    assert isinstance(panel, UniversePanel)
    assert panel.shape == (1259, 505)
    assert int(np.isfinite(panel.close).sum()) == 619_040
    assert seconds < 2.0  # the benchmark (bench/datalake_panel.py) records the real figure
    # listing mask: late starters are not members before their first bar
    col = panel.column("APTV")
    first = np.flatnonzero(panel.mask[:, col])[0]
    assert np.isnan(panel.close[:first, col]).all() and not np.isnan(panel.close[first, col])


@pytest.mark.slow
def test_values_match_the_source_rows(sp500_store: Store) -> None:
    panel = build_panel(["AAL", "AAPL"], "2013-02-08", "2013-02-12", store=sp500_store,
                        adjust="none")
    assert panel.dates.astype(str).tolist() == ["2013-02-08", "2013-02-11", "2013-02-12"]
    aal = panel.column("AAL")
    assert panel.open[0, aal] == 15.07 and panel.close[0, aal] == 14.75
    assert panel.volume[0, aal] == 8_407_500


def test_us_large_cap_mask_is_point_in_time(demo_store: Store) -> None:
    panel = build_panel("us-large-cap", "2014-01-01", "2016-12-31", store=demo_store)
    members = panel.mask.sum(axis=1)
    assert members.min() >= 95 and members.max() <= 100
    assert panel.shape[1] > 100  # membership changes over time
    assert (np.isfinite(panel.close) | ~panel.mask).mean() > 0.999
    small = build_panel(universe("us-large-cap", n=10), "2014-01-01", "2014-03-31",
                        store=demo_store)
    assert small.mask.sum(axis=1).max() == 10


def test_fields_and_extras(demo_store: Store) -> None:
    panel = build_panel(["SPY"], "2015-01-01", "2015-12-31", store=demo_store,
                        fields=("close", "returns", "dividend", "dollar_volume", "adj_factor"))
    assert np.isnan(panel.open).all() and np.isfinite(panel.close).all()
    assert panel.field_names == ("open", "high", "low", "close", "volume", "returns",
                                 "dividend", "dollar_volume", "adj_factor")
    assert (panel.dividend > 0).sum() == 4  # SPY pays quarterly
    ret = panel.returns[1:, 0]
    assert np.allclose(ret, panel.close[1:, 0] / panel.close[:-1, 0] - 1)
    with pytest.raises(ValueError, match="read-only"):
        panel.close[0, 0] = 1.0


def test_contract_errors_name_field_and_value(demo_store: Store) -> None:
    cases = [
        (dict(universe="nope"), UnknownUniverseError, "universe", "nope"),
        (dict(universe=["SPY", "NOPE1"]), UnknownSymbolError, "symbol", "NOPE1"),
        (dict(start="2016-01-01", end="2015-01-01"), InvalidRangeError, "start", "2016-01-01"),
        (dict(start="2015-01-03", end="2015-01-04"), EmptyRangeError, "start", "2015-01-03"),
        (dict(start="1990-01-02", end="1990-03-01"), EmptyRangeError, "universe", "SPY"),
        (dict(fields=("close", "vwap")), UnknownFieldError, "fields", "vwap"),
        (dict(adjust="forward"), UnknownFieldError, "adjust", "forward"),
        (dict(start="not-a-date"), InvalidRangeError, "date", "not-a-date"),
    ]
    for override, error, field, value in cases:
        kw = {"universe": ["SPY"], "start": "2015-01-01", "end": "2015-12-31", **override}
        with pytest.raises(error) as info:
            build_panel(kw.pop("universe"), kw.pop("start"), kw.pop("end"), store=demo_store,
                        **kw)
        assert info.value.context["field"] == field, override
        assert info.value.context["value"] == value, override


def test_seed_example_runs_on_a_fresh_default_store() -> None:
    """The seeds' backtest example: universe="us-large-cap", 2014-2024, after the demo installs
    into the default store (MTS_DATALAKE_ROOT points at a fresh folder in tests)."""
    from mts1b_datalake.synthetic import install_demo_market

    store = install_demo_market()
    assert store.root == Store.default().root
    panel = build_panel("us-large-cap", "2014-01-01", "2024-01-01")
    assert panel.shape[0] == len(trading_days("XNYS", "2014-01-01", "2024-01-01"))
    assert panel.mask.sum(axis=1).min() >= 95
    t0 = time.perf_counter()
    install_demo_market()  # already there: returns at once
    assert time.perf_counter() - t0 < 0.5


def test_panel_info(demo_store: Store) -> None:
    info = panel_info("us-large-cap", "2014-01-01", "2014-12-31", store=demo_store,
                      universe_params={"n": 20})
    assert info["sessions"] == 252 and info["members_max"] == 20
    assert 0.9 < info["coverage"] <= 1.0


def test_empty_default_store_says_how_to_fill_it() -> None:
    with pytest.raises(EmptyRangeError, match="install_demo_market"):
        build_panel("us-large-cap", "2014-01-01", "2014-12-31")
