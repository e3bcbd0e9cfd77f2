"""strategy_weights / panel_for on the synthetic demo market (always) and the real S&P 500 file
in /work/shared/data (skipped when absent): the FAQ's momentum_v3, equality with quantkit's own
evaluate + size, no look-ahead, the Decimal targets, and every bad input named."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mts1b_datalake import Store
from mts1b_datalake.synthetic import install_demo_market
from mts1b_foundation import StrategySpec, UniversePanel
from mts1b_quantkit.factors import evaluate, register, returns, unregister
from mts1b_quantkit.sizing import size
from mts1b_research.errors import ResearchInputError
from mts1b_research.targets import WEIGHT_PLACES, panel_for, strategy_weights

DATA = Path(os.environ.get("MTS1B_SHARED_DATA", "/work/shared/data"))
SP500 = DATA / "sp500_5yr_cnuge" / "all_stocks_5yr.csv.gz"
DEMO_END = dt.date(2024, 12, 31)
LOOKBACK = 252 + 60 + 5 + 1  # h_long + statistics window + horizon + the first return


def momentum_v3(**changes: Any) -> StrategySpec:
    """The FAQ's strategy: 12-1 momentum on us-large-cap, Kelly sized at 12 % volatility."""
    fields: dict[str, Any] = {
        "name": "momentum_v3", "factor": "f_momentum_12_1",
        "params": {"h_long": 252, "h_skip": 21}, "universe": "us-large-cap",
        "sizing": {"method": "kelly_voltarget_12"}, "rebalance": "close-15m", "horizon": 5,
    }
    fields.update(changes)
    return StrategySpec(**fields)


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return install_demo_market(tmp_path_factory.mktemp("demo-lake"))


@pytest.fixture(scope="session")
def demo_panel(demo_store: Store) -> UniversePanel:
    return panel_for(momentum_v3(), demo_store, DEMO_END, lookback_sessions=LOOKBACK)


@pytest.fixture(scope="session")
def sp500_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    if not SP500.exists():
        pytest.skip(f"real market data not found at {SP500} (set MTS1B_SHARED_DATA)")
    from mts1b_datalake.providers import LongCsvProvider

    store = Store(tmp_path_factory.mktemp("sp500-lake"))
    store.ingest(LongCsvProvider(SP500), qc=False)
    return store


def quantkit_weights(panel: UniversePanel, factor: str, params: dict[str, Any],
                     sizing: dict[str, Any]) -> np.ndarray:
    """What quantkit itself gives: evaluate, then size with the mask and daily returns."""
    scores = evaluate(factor, panel, **params)
    w = size(scores, sizing, mask=panel.mask, returns=returns(panel.close, 1))
    return np.nan_to_num(np.where(panel.mask, w, 0.0), nan=0.0)


def rounded(weight: float) -> Decimal:
    return Decimal(repr(float(weight))).quantize(Decimal("1e-8"))


def test_panel_for_gives_the_last_sessions_up_to_end(demo_panel: UniversePanel) -> None:
    assert len(demo_panel) == LOOKBACK
    assert demo_panel.dates[-1] == np.datetime64("2024-12-31")
    assert demo_panel.calendar == "XNYS"
    assert demo_panel.mask.any(axis=1).all()
    assert demo_panel.mask.sum(axis=1).max() <= 100  # us-large-cap's default n


@pytest.mark.parametrize("sessions", [1, 5, 63, 2500])
def test_panel_for_gives_exactly_the_sessions_asked(demo_store: Store, sessions: int) -> None:
    spec = momentum_v3(universe=["SPY"])
    panel = panel_for(spec, demo_store, dt.date(2024, 12, 29), lookback_sessions=sessions)
    assert len(panel) == sessions  # ten years of holidays are inside the widened range
    assert panel.dates[-1] == np.datetime64("2024-12-27")  # the last session on or before end


def test_faq_momentum_v3_equals_quantkit_on_the_demo(demo_panel: UniversePanel) -> None:
    spec = momentum_v3()
    got = strategy_weights(spec, demo_panel)
    want = quantkit_weights(demo_panel, "f_momentum_12_1", {"h_long": 252, "h_skip": 21},
                            {"method": "kelly_voltarget_12"})
    assert got.strategy == "momentum_v3" and got.version == 1
    assert got.as_of == dt.date(2024, 12, 31) and got.as_of_index == LOOKBACK - 1
    assert got.symbols == demo_panel.symbols
    assert len(got.dates) == LOOKBACK and got.dates[-1] == got.as_of
    assert got.history.shape == want.shape
    np.testing.assert_array_equal(got.history, want)
    assert not got.history.flags.writeable
    # the sessions the 60-session statistics need all carry weights
    assert (np.abs(got.history[-66:]).sum(axis=1) > 0).all()
    expected = {s: rounded(w) for s, w in zip(demo_panel.symbols, want[-1], strict=True)
                if rounded(w) != 0}
    assert dict(got.targets) == expected
    assert len(expected) > 50
    assert Decimal("0.5") < got.gross <= Decimal("1.00000100")  # Kelly: gross caps leverage
    assert any(w < 0 for w in got.targets.values())  # a z-scored factor is long/short


def test_equal_weight_long_is_one_over_n_of_the_positive_scores(
        demo_panel: UniversePanel) -> None:
    spec = momentum_v3(sizing={"method": "equal_weight_long"})
    got = strategy_weights(spec, demo_panel, as_of_index=-10)
    scores = evaluate("f_momentum_12_1", demo_panel, h_long=252, h_skip=21)[LOOKBACK - 10]
    longs = {s for s, x, m in zip(demo_panel.symbols, scores, demo_panel.mask[LOOKBACK - 10],
                                  strict=True) if m and x > 0}
    assert set(got.targets) == longs
    assert set(got.targets.values()) == {rounded(1 / len(longs))}
    assert got.as_of_index == LOOKBACK - 10 and len(got.dates) == LOOKBACK - 9


def test_targets_are_decimals_at_eight_places_without_zeros(demo_panel: UniversePanel) -> None:
    got = strategy_weights(momentum_v3(), demo_panel)
    assert WEIGHT_PLACES == 8
    for weight in got.targets.values():
        assert isinstance(weight, Decimal)
        assert weight != 0
        assert weight.as_tuple().exponent == -8
    with pytest.raises(TypeError):
        got.targets["SPY"] = Decimal(1)  # type: ignore[index]
    outside = [s for s, m in zip(got.symbols, demo_panel.mask[-1], strict=True) if not m]
    assert outside and not set(outside) & set(got.targets)


def _with_future_changed(panel: UniversePanel, after: int) -> UniversePanel:
    """The same panel with every bar after row ``after`` scrambled (prices x random factors)."""
    rng = np.random.default_rng(3)
    scale = np.ones(panel.shape)
    scale[after + 1:] = rng.uniform(0.5, 2.0, size=(panel.shape[0] - after - 1, panel.shape[1]))

    def changed(a: np.ndarray) -> np.ndarray:
        return np.asarray(a) * scale

    return UniversePanel(panel.dates, panel.symbols, open=changed(panel.open),
                         high=changed(panel.high), low=changed(panel.low),
                         close=changed(panel.close), volume=panel.volume, mask=panel.mask,
                         calendar=panel.calendar)


@pytest.fixture
def peeking_factor() -> Iterator[str]:
    """A dishonest factor: a row's score is the next row's return (the last row, which has no
    next one, gets its own return)."""
    name = "f_test_research_peek"

    @register(name, replace=True)
    def f_peek(panel: Any, /) -> Any:
        close = np.asarray(panel.close)
        out = np.full(close.shape, np.nan)
        out[:-1] = close[1:] / close[:-1] - 1
        out[-1] = close[-1] / close[-2] - 1
        return out

    yield name
    unregister(name)


@pytest.mark.parametrize("factor", ["f_momentum_12_1", "peek"])
def test_bars_after_as_of_do_not_change_the_weights(demo_panel: UniversePanel, factor: str,
                                                    peeking_factor: str) -> None:
    name, params = ((peeking_factor, {}) if factor == "peek"
                    else (factor, {"h_long": 252, "h_skip": 21}))
    sizing = {"method": "score_weighted" if factor == "peek" else "kelly_voltarget_12"}
    spec = momentum_v3(factor=name, params=params, sizing=sizing)
    at = LOOKBACK - 20
    before = strategy_weights(spec, demo_panel, as_of_index=at)
    after = strategy_weights(spec, _with_future_changed(demo_panel, at), as_of_index=at)
    assert before.targets and dict(before.targets) == dict(after.targets)
    np.testing.assert_array_equal(before.history, after.history)
    # and the scramble does change what a later row sees: the check could fail
    later = strategy_weights(spec, demo_panel, as_of_index=at + 5)
    later_changed = strategy_weights(spec, _with_future_changed(demo_panel, at),
                                     as_of_index=at + 5)
    assert dict(later.targets) != dict(later_changed.targets)
    if factor == "peek":  # evaluated on the whole panel, the peeking factor's row would differ
        assert not np.array_equal(quantkit_weights(demo_panel, name, {}, sizing)[at],
                                  before.history[at])


def test_an_explicit_symbol_list_universe(demo_store: Store,
                                          demo_panel: UniversePanel) -> None:
    symbols = list(demo_panel.symbols[:12])
    spec = momentum_v3(universe=symbols, sizing={"method": "rank_weighted"})
    panel = panel_for(spec, demo_store, DEMO_END, lookback_sessions=300)
    assert panel.symbols == tuple(symbols) and len(panel) == 300
    got = strategy_weights(spec, panel)
    want = quantkit_weights(panel, "f_momentum_12_1", {"h_long": 252, "h_skip": 21},
                            {"method": "rank_weighted"})
    np.testing.assert_array_equal(got.history, want)
    assert set(got.targets) <= set(symbols)


def _field_of(exc: pytest.ExceptionInfo[ResearchInputError]) -> str:
    return str(exc.value.context["field"])


@pytest.mark.parametrize(("changes", "field"), [
    ({"factor": "f_no_such_factor"}, "factor"),
    ({"params": {"h_long": 252, "h_lnog": 21}}, "params.h_lnog"),
    ({"params": {"h_long": 252.0}}, "params.h_long"),
    ({"params": {"h_long": True}}, "params.h_long"),
    ({"params": {"h_long": "252"}}, "params.h_long"),
    ({"sizing": {"method": "no_such_sizer"}}, "sizing.method"),
    ({"sizing": {"method": "equal_weight_long", "leverage": 2}}, "sizing.leverage"),
    ({"sizing": {"method": "equal_weight_long", "gross": -1}}, "sizing.gross"),
])
def test_bad_specs_are_refused_naming_the_field(demo_panel: UniversePanel,
                                                changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ResearchInputError) as info:
        strategy_weights(momentum_v3(**changes), demo_panel)
    assert _field_of(info) == field


def test_too_little_history_is_refused_not_published_flat(demo_store: Store) -> None:
    short = panel_for(momentum_v3(), demo_store, DEMO_END, lookback_sessions=200)
    with pytest.raises(ResearchInputError) as info:
        strategy_weights(momentum_v3(), short)
    assert _field_of(info) == "panel"


@pytest.mark.parametrize("index", [LOOKBACK, -LOOKBACK - 1, 1.0, True])
def test_bad_as_of_index(demo_panel: UniversePanel, index: Any) -> None:
    with pytest.raises(ResearchInputError) as info:
        strategy_weights(momentum_v3(), demo_panel, as_of_index=index)
    assert _field_of(info) == "as_of_index"


def test_universe_without_data_is_refused(demo_store: Store, demo_panel: UniversePanel) -> None:
    with pytest.raises(ResearchInputError) as info:
        panel_for(momentum_v3(), demo_store, dt.date(2005, 1, 31), lookback_sessions=LOOKBACK)
    assert _field_of(info) == "universe"
    with pytest.raises(ResearchInputError) as info:
        panel_for(momentum_v3(universe=["NOSUCHSYM"]), demo_store, DEMO_END,
                  lookback_sessions=LOOKBACK)
    assert _field_of(info) == "universe"
    with pytest.raises(ResearchInputError) as info:
        panel_for(momentum_v3(universe="no-such-universe"), demo_store, DEMO_END,
                  lookback_sessions=LOOKBACK)
    assert _field_of(info) == "universe"
    with pytest.raises(ResearchInputError) as info:
        strategy_weights(momentum_v3(), demo_panel.head(0))
    assert _field_of(info) == "universe"


@pytest.mark.parametrize("sessions", [0, -5, 10.5, True])
def test_bad_lookback_sessions(demo_store: Store, sessions: Any) -> None:
    with pytest.raises(ResearchInputError) as info:
        panel_for(momentum_v3(), demo_store, DEMO_END, lookback_sessions=sessions)
    assert _field_of(info) == "lookback_sessions"


def test_faq_momentum_v3_on_real_sp500_data(sp500_store: Store) -> None:
    spec = momentum_v3()
    panel = panel_for(spec, sp500_store, dt.date(2018, 2, 7), lookback_sessions=LOOKBACK)
    assert panel.dates[-1] == np.datetime64("2018-02-07") and len(panel) == LOOKBACK
    got = strategy_weights(spec, panel)
    want = quantkit_weights(panel, "f_momentum_12_1", {"h_long": 252, "h_skip": 21},
                            {"method": "kelly_voltarget_12"})
    np.testing.assert_array_equal(got.history, want)
    assert got.as_of == dt.date(2018, 2, 7)
    assert 50 < len(got.targets) <= 100
    assert got.gross <= Decimal("1.00000100")
    assert set(got.targets) <= set(panel.symbols)
