"""The tearsheet is one self-contained HTML file with every promised panel."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from mts1b_foundation import UniversePanel
from mts1b_GPUbacktester import run_single
from mts1b_GPUbacktester.report import monthly_returns, rolling_sharpe
from mts1b_quantkit import metrics as qm


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_tearsheet_is_self_contained_with_all_panels(panel: UniversePanel,
                                                     tmp_path: Path) -> None:
    w = np.full(panel.shape, 1 / panel.shape[1])
    w[:, 0] = -0.2  # a short leg, so exposure has four distinct lines
    res = run_single(weights=w, universe=panel, rebal="weekly", backend="numpy",
                     borrow_rate=0.02)
    path = res.report(tmp_path / "sub" / "tearsheet.html")
    text = path.read_text(encoding="utf-8")
    parser = _Tags()
    parser.feed(text)
    # nothing is fetched: no script, no stylesheet link, no external image
    assert not [t for t, a in parser.tags if t in ("script", "link", "img", "iframe")]
    assert not re.search(r"""(src|href)\s*=\s*["']https?://""", text)
    for title in ("Equity (growth of 1) vs benchmark", "Drawdown", "Monthly returns",
                  "Rolling Sharpe (126 days)", "Exposure", "Turnover", "Costs"):
        assert title in text, title
    assert sum(1 for t, _ in parser.tags if t == "svg") == 5
    assert f"{res.sharpe:.2f}" in text
    assert "equal-weight universe" in text


def test_rolling_sharpe_uses_quantkit_on_each_window(panel: UniversePanel) -> None:
    res = run_single(weights=np.full(panel.shape, 1 / 6), universe=panel, backend="numpy")
    rs = rolling_sharpe(res.returns, window=60)
    assert rs.iloc[:59].isna().all()
    assert rs.iloc[100] == pytest.approx(qm.sharpe(res.returns.iloc[41:101].to_numpy()))


def test_monthly_table_compounds_each_month(panel: UniversePanel) -> None:
    res = run_single(weights=np.full(panel.shape, 1 / 6), universe=panel, backend="numpy")
    table = monthly_returns(res.returns)
    r = res.returns
    march = r[(r.index.year == 2020) & (r.index.month == 3)]
    assert table.loc[2020, 3] == pytest.approx(np.prod(1 + march.to_numpy()) - 1)
    year = r[r.index.year == 2020]
    assert table.loc[2020, "year"] == pytest.approx(np.prod(1 + year.to_numpy()) - 1)
