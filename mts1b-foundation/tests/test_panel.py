import datetime as dt

import numpy as np
import pytest
from mts1b_foundation import PanelError, UniversePanel, to_day


def make_panel(t: int = 4, a: int = 3) -> UniversePanel:
    close = np.arange(t * a, dtype=float).reshape(t, a) + 1.0
    dates = [dt.date(2024, 1, 2) + dt.timedelta(days=i) for i in range(t)]
    return UniversePanel(dates, [f"S{i}" for i in range(a)], open=close, high=close + 1,
                         low=close - 0.5, close=close, volume=close * 10,
                         extra={"adj_close": close * 0.5})


def test_shapes_and_fields() -> None:
    p = make_panel()
    assert p.shape == (4, 3)
    assert len(p) == 4
    assert p.symbols == ("S0", "S1", "S2")
    assert p.close[1, 2] == 6.0
    assert p.adj_close[1, 2] == 3.0
    assert p.field("adj_close") is p.adj_close
    assert p.mask.all()
    assert p.dates.dtype == np.dtype("datetime64[D]")


def test_arrays_are_read_only() -> None:
    p = make_panel()
    with pytest.raises(ValueError, match="read-only"):
        p.close[0, 0] = 99.0
    with pytest.raises(ValueError, match="read-only"):
        p.mask[0, 0] = False


def test_input_is_copied() -> None:
    close = np.ones((2, 1))
    p = UniversePanel(["2024-01-02", "2024-01-03"], ["A"], open=close, high=close, low=close,
                      close=close, volume=close)
    close[0, 0] = 5.0
    assert p.close[0, 0] == 1.0


def test_until_is_point_in_time() -> None:
    p = make_panel()
    cut = p.until("2024-01-03")
    assert cut.shape == (2, 3)
    assert np.array_equal(cut.close, p.close[:2])
    assert p.until("2023-12-31").shape == (0, 3)
    assert p.until(dt.datetime(2024, 1, 4, 23, tzinfo=dt.UTC)).shape == (3, 3)
    assert cut.adj_close.shape == (2, 3)


def test_select_and_between() -> None:
    p = make_panel()
    s = p.select(["S2", "S0"])
    assert s.symbols == ("S2", "S0")
    assert np.array_equal(s.close, p.close[:, [2, 0]])
    b = p.between("2024-01-03", "2024-01-04")
    assert [str(d) for d in b.dates] == ["2024-01-03", "2024-01-04"]
    with pytest.raises(PanelError, match="after end"):
        p.between("2024-01-05", "2024-01-03")
    with pytest.raises(PanelError, match="unknown symbols") as info:
        p.select(["S0", "NOPE"])
    assert info.value.context["value"] == ["NOPE"]


def test_validation_names_the_problem() -> None:
    ones = np.ones((2, 2))
    with pytest.raises(PanelError, match="sorted and unique"):
        UniversePanel(["2024-01-03", "2024-01-02"], ["A", "B"], open=ones, high=ones,
                      low=ones, close=ones, volume=ones)
    with pytest.raises(PanelError, match="sorted and unique"):
        UniversePanel(["2024-01-02", "2024-01-02"], ["A", "B"], open=ones, high=ones,
                      low=ones, close=ones, volume=ones)
    with pytest.raises(PanelError, match="'A' appears twice"):
        UniversePanel(["2024-01-02", "2024-01-03"], ["A", "A"], open=ones, high=ones,
                      low=ones, close=ones, volume=ones)
    with pytest.raises(PanelError, match="field 'volume' has shape") as info:
        UniversePanel(["2024-01-02", "2024-01-03"], ["A", "B"], open=ones, high=ones,
                      low=ones, close=ones, volume=np.ones((3, 2)))
    assert info.value.context["field"] == "volume"
    with pytest.raises(PanelError, match="mask has shape"):
        UniversePanel(["2024-01-02", "2024-01-03"], ["A", "B"], open=ones, high=ones,
                      low=ones, close=ones, volume=ones, mask=np.ones((2, 3), dtype=bool))
    with pytest.raises(PanelError, match="not a date"):
        to_day("not-a-date")
    with pytest.raises(PanelError, match="no field 'vwap'"):
        make_panel().field("vwap")


def test_default_mask_follows_close() -> None:
    close = np.array([[1.0, np.nan], [2.0, 3.0]])
    p = UniversePanel(["2024-01-02", "2024-01-03"], ["A", "B"], open=close, high=close,
                      low=close, close=close, volume=close)
    assert p.mask.tolist() == [[True, False], [True, True]]
    assert p.column("B") == 1
    assert p.row_of("2024-01-02") == 0


def test_row_slices_are_read_only_views() -> None:
    p = make_panel()
    cut = p.until("2024-01-03")
    assert np.shares_memory(cut.close, p.close)
    assert np.shares_memory(cut.adj_close, p.adj_close)
    assert not cut.close.flags.writeable
    assert not cut.mask.flags.writeable
    assert cut.head(1).shape == (1, 3)
    assert p.between("2024-01-03", "2024-01-03").close.tolist() == [p.close[1].tolist()]


def test_calendar_and_periods_per_year_travel_with_every_slice() -> None:
    """A panel states the calendar its rows follow and the periods per year that annualise
    them; row and column selections keep both, and a plain panel states neither."""
    import pickle

    close = np.ones((3, 2))
    p = UniversePanel(["2024-01-05", "2024-01-06", "2024-01-07"], ["BTC", "ETH"], open=close,
                      high=close, low=close, close=close, volume=close, calendar="24/7",
                      periods_per_year=365)
    assert (p.calendar, p.periods_per_year) == ("24/7", 365.0)
    for part in (p.until("2024-01-06"), p.head(1), p.between("2024-01-06", "2024-01-07"),
                 p.select(["ETH"]), pickle.loads(pickle.dumps(p))):
        assert (part.calendar, part.periods_per_year) == ("24/7", 365.0)
    plain = make_panel()
    assert plain.calendar is None and plain.periods_per_year is None
    assert plain.select(["S1"]).periods_per_year is None


@pytest.mark.parametrize("bad", [0, -252, float("nan"), float("inf"), True, "252"])
def test_periods_per_year_must_be_a_positive_number(bad: object) -> None:
    ones = np.ones((1, 1))
    with pytest.raises(PanelError, match="periods_per_year") as info:
        UniversePanel(["2024-01-02"], ["A"], open=ones, high=ones, low=ones, close=ones,
                      volume=ones, periods_per_year=bad)  # type: ignore[arg-type]
    assert info.value.context["field"] == "periods_per_year"
    with pytest.raises(PanelError, match="calendar"):
        UniversePanel(["2024-01-02"], ["A"], open=ones, high=ones, low=ones, close=ones,
                      volume=ones, calendar="")
