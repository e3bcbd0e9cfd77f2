"""The README's demo runs end to end on the synthetic market (no server, no download)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mts1b_GPUbacktester.demo import main


def test_demo_prints_metrics_and_writes_the_tearsheet(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out" / "tearsheet.html"
    assert main(["--out", str(out), "--store", str(tmp_path / "store"),
                 "--backend", "numpy"]) == 0
    text = capsys.readouterr().out
    for needle in ("Sharpe", "CAGR", "Max drawdown", "Final NAV", "ladder:",
                   f"tearsheet: {out.resolve()}"):
        assert needle in text, needle
    assert out.exists() and "<svg" in out.read_text(encoding="utf-8")
