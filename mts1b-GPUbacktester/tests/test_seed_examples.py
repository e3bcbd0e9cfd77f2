"""The seeds' backtest example runs as written: the migration guide's ``run_single`` call (the
docs' quick start, Tutorial 1's first backtest), pasted verbatim, on the default store after
a demo market is installed in it. The run specification, calendars and keyword checks of issue
#16 must not break it."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

# The migration guide's "In MTS1B" backtest block, verbatim (the factor half is quantkit's
# own test: its f_sma_cross is the one registered).
GUIDE = '''
from mts1b_GPUbacktester import run_single
from mts1b_quantkit.factors import get

result = run_single(
    factor=get("f_sma_cross"),
    params={"p_fast": 20, "p_slow": 50},
    universe="us-large-cap",
    start="2014-01-01", end="2024-01-01",
    rebal="daily",
    sizing={"method": "equal_weight_long", "gross": 1.0},
    cost_bps=10,
)
print(f"Sharpe: {result.sharpe:.2f}")
print(f"Final NAV: ${100000 * (1 + result.cagr) ** 10:,.0f}")
'''


def test_the_migration_guides_run_single_runs_as_written(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    from mts1b_datalake.synthetic import install_demo_market

    monkeypatch.setenv("MTS_DATALAKE_ROOT", str(tmp_path / "default-store"))
    # into the default store; 120 names are enough for a top-100 universe, and faster
    install_demo_market(n_assets=120, start="2012-06-01", end="2024-01-31")
    scope: dict[str, object] = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(GUIDE, "migrating-from-backtrader.md", "exec"), scope)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("Sharpe: ") and lines[1].startswith("Final NAV: $")
    result = scope["result"]
    assert result.spec.to_dict()["cost_bps"] == 10.0  # type: ignore[attr-defined]
    assert (result.calendar, result.periods_per_year) == ("XNYS", 252.0)  # type: ignore[attr-defined]
    assert str(result.equity.index[0].date()) == "2014-01-02"  # type: ignore[attr-defined]
