"""The strategy report page: escaping, one SVG per chart, no external loads, empty series, and
numbers that equal the inputs."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from xml.etree import ElementTree

import numpy as np
import pytest
from mts1b_research.errors import ResearchInputError
from mts1b_research.report import ReportData, _rolling_band, render_report
from mts1b_research.stats import newey_west_se

START = date(2026, 1, 5)
N = 80


def _data(**changes: object) -> ReportData:
    rng = np.random.default_rng(1)
    dates = [START + timedelta(days=i) for i in range(N)]
    ic = rng.normal(0.03, 0.1, N)
    ic[10] = math.nan
    base = ReportData(
        strategy="momo <b>x</b>",
        version=3,
        state="live",
        horizon=5,
        dates=dates,
        ic=ic.tolist(),
        rank_ic=rng.normal(0.02, 0.1, N).tolist(),
        ic_by_horizon={1: (0.041, 2.5), 5: (0.0234, 1.875), 21: (-0.0049, None)},
        live_dates=dates[-30:],
        realised=rng.normal(0.0, 0.01, 30).tolist(),
        backtested=rng.normal(0.0005, 0.01, 30).tolist(),
        turnover=rng.uniform(0.0, 0.3, N).tolist(),
        state_history=[
            (datetime(2026, 1, 2, 9, 30, tzinfo=UTC), None, "draft", "alice", "created"),
            (datetime(2026, 1, 3, 10, 0, tzinfo=UTC), "draft", "shadow", "bob",
             "<script>alert(1)</script>"),
            (datetime(2026, 2, 4, 16, 5, tzinfo=UTC), "paper", "live", "carol & dave",
             "NW t 2.4 over 60 sessions"),
        ],
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_text_is_escaped() -> None:
    page = render_report(_data())
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "momo &lt;b&gt;x&lt;/b&gt;" in page
    assert "<b>x</b>" not in page
    assert "carol &amp; dave" in page


def test_one_svg_per_chart_and_nothing_loaded() -> None:
    page = render_report(_data())
    # rolling IC, rolling rank IC, IC decay, realised vs backtested, turnover
    assert page.count("<svg") == 5
    assert page.count("</svg>") == 5
    assert 'src="http' not in page
    assert 'href="http' not in page
    assert "<script" not in page
    assert "<link" not in page
    assert "url(" not in page


def test_never_live_shows_a_sentence_instead_of_the_realised_chart() -> None:
    page = render_report(_data(live_dates=[], realised=[], backtested=[]))
    assert "Not live yet" in page
    assert page.count("<svg") == 4


def test_empty_everything_still_renders() -> None:
    page = render_report(_data(dates=[], ic=[], rank_ic=[], ic_by_horizon={}, live_dates=[],
                               realised=[], backtested=[], turnover=[], state_history=[]))
    assert "<svg" not in page
    assert "no sessions yet" in page
    assert "No state transitions recorded." in page
    assert page.count("n/a") >= 3  # mean IC, mean rank IC, NW t: unknown, not 0


def test_state_history_rows_equal_the_inputs() -> None:
    data = _data()
    page = render_report(data)
    rows = re.findall(r'<table class="history">.*?<tbody>(.*?)</tbody>', page)[0]
    cells = [re.findall(r"<td>(.*?)</td>", row) for row in rows.split("</tr>") if row]
    assert cells == [
        ["2026-01-02T09:30:00+00:00", "-", "draft", "alice", "created"],
        ["2026-01-03T10:00:00+00:00", "draft", "shadow", "bob",
         "&lt;script&gt;alert(1)&lt;/script&gt;"],
        ["2026-02-04T16:05:00+00:00", "paper", "live", "carol &amp; dave",
         "NW t 2.4 over 60 sessions"],
    ]
    assert len(cells) == len(data.state_history)


def test_ic_decay_table_and_headline_numbers_equal_the_inputs() -> None:
    data = _data()
    page = render_report(data)
    rows = re.findall(r"<tr><td>(\d+)</td><td>(.*?)</td><td>(.*?)</td></tr>", page)
    assert rows == [("1", "0.0410", "2.50"), ("5", "0.0234", "1.88"), ("21", "-0.0049", "n/a")]
    ic = np.array(data.ic)
    assert f">{np.nanmean(ic):.4f}<" in page
    assert ">79<" in page  # sessions with an IC: 80 less the NaN one
    assert f">{np.mean(data.turnover):.4f}<" in page


def test_rolling_band_is_the_newey_west_band() -> None:
    ic = np.random.default_rng(5).normal(0.02, 0.1, 40)
    ic[30] = math.nan
    mean, lo, hi = _rolling_band(ic.tolist(), 20, 4)
    assert np.isnan(mean[:19]).all()
    last = ic[-20:][~np.isnan(ic[-20:])]
    se = newey_west_se(last, 4)
    assert se is not None
    assert mean[-1] == pytest.approx(last.mean(), rel=1e-12)
    assert lo[-1] == pytest.approx(last.mean() - 1.96 * se, rel=1e-12)
    assert hi[-1] == pytest.approx(last.mean() + 1.96 * se, rel=1e-12)
    page = render_report(_data())
    assert page.count("<polygon") >= 2  # the IC band and the rank IC band


def test_every_svg_is_well_formed_xml() -> None:
    page = render_report(_data())
    svgs = re.findall(r"<svg.*?</svg>", page)
    assert len(svgs) == 5
    for svg in svgs:
        root = ElementTree.fromstring(svg)
        assert root.tag == "svg"


def test_short_history_shows_a_sentence_for_rolling_charts() -> None:
    dates = [START + timedelta(days=i) for i in range(5)]
    page = render_report(_data(dates=dates, ic=[0.1] * 5, rank_ic=[0.1] * 5, turnover=[]))
    assert page.count("Fewer than 20 sessions") == 2


def test_nan_in_lines_breaks_them_instead_of_printing_nan() -> None:
    page = render_report(_data())
    assert "nan" not in page.lower().replace("nanmean", "")


@pytest.mark.parametrize(("changes", "field"), [
    ({"ic": [0.1]}, "ic"),
    ({"turnover": [0.1, 0.2]}, "turnover"),
    ({"realised": [0.01]}, "realised"),
    ({"horizon": 0}, "horizon"),
    ({"rolling_window": 2}, "rolling_window"),
])
def test_bad_input_names_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ResearchInputError) as e:
        _data(**changes)
    assert e.value.context["field"] == field


def test_rendering_is_deterministic() -> None:
    assert render_report(_data()) == render_report(_data())


def test_realised_returns_from_the_treasurys_navs_compound_the_sleeve() -> None:
    """Each session's PnL attributed to the strategy over the sleeve's equity before it; a
    restated session counts its last strike; a session without the strategy is 0."""
    from decimal import Decimal

    from mts1b_foundation import FundNav
    from mts1b_research.reporting import realised_from_navs

    def nav(session: str, pnl: str, hour: int = 21, other: str = "0") -> FundNav:
        p, o = Decimal(pnl), Decimal(other)
        return FundNav(fund_id="f1", session=session,
                       as_of=datetime(2016, 1, int(session[-2:]), hour, tzinfo=UTC),
                       nav=Decimal(1000) + p + o, previous_nav=Decimal(1000),
                       cash=Decimal(1000) + p + o, positions_value=Decimal(0), pnl=p + o,
                       pnl_by_strategy={"mom": p, "val": o}, inputs_sha256="0" * 64,
                       outputs_sha256="0" * 64)

    navs = [nav("2016-01-05", "10"), nav("2016-01-04", "-5"), nav("2016-01-06", "0", other="3"),
            nav("2016-01-05", "20", hour=22)]  # restated: the later strike counts
    got = realised_from_navs(navs, "mom", Decimal(100))
    assert got == {date(2016, 1, 4): -0.05, date(2016, 1, 5): 20 / 95, date(2016, 1, 6): 0.0}
    with pytest.raises(ResearchInputError, match="capital"):
        realised_from_navs(navs, "mom", Decimal(0))


@pytest.mark.integration
async def test_the_reports_navs_are_read_from_the_treasury_stream_over_nats() -> None:
    """``report --realised-from-treasury``'s reading of the stream (real NATS JetStream): the
    fund's NAVs in order, another fund's and an unreadable message left out; a namespace
    without the treasury's stream, or without a NAV of the fund, names the option and fund."""
    import uuid
    from decimal import Decimal

    pytest.importorskip("nats", reason="nats-py (the platform's bus extra) is not installed")
    from mts1b_foundation import FundNav
    from mts1b_platform.bus import Bus
    from mts1b_research.service_cli import _fund_navs

    namespace = f"t{uuid.uuid4().hex[:10]}"
    with pytest.raises(ResearchInputError, match="no treasury stream"):
        await _fund_navs("f1", namespace)
    bus = await Bus.connect(namespace=namespace, name="test-report-navs")
    try:
        await bus.declare_streams(["treasury"])
        for fund, day in (("f1", 4), ("f2", 4), ("f1", 5)):
            await bus.publish_acked("mts.v1.treasury.nav.struck", FundNav(
                fund_id=fund, session=f"2016-01-0{day}",
                as_of=datetime(2016, 1, day, 21, tzinfo=UTC), nav=Decimal(1000),
                previous_nav=Decimal(1000), cash=Decimal(1000), positions_value=Decimal(0),
                pnl=Decimal(0), inputs_sha256="0" * 64, outputs_sha256="0" * 64))
        await bus.js.publish(bus.wire_subject("mts.v1.treasury.nav.struck"), b"not json")
        navs = await _fund_navs("f1", namespace)
        assert [n.session for n in navs] == ["2016-01-04", "2016-01-05"]
        with pytest.raises(ResearchInputError, match="no NAV of this fund"):
            await _fund_navs("f3", namespace)
    finally:
        await bus.delete_streams()
        await bus.drain()
