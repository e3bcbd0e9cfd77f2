"""The README's demo runs end to end on the synthetic market (no server, no download).

It runs as ``python3 dev.py demo`` does, ``python -m mts1b_GPUbacktester.demo`` in its own
process, with stdout and stderr read apart: the report is on stdout, and a default run writes no
log line below WARNING anywhere (the datalake and the ladder log at INFO).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_demo_prints_metrics_and_writes_the_tearsheet(tmp_path: Path) -> None:
    out = tmp_path / "out" / "tearsheet.html"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTS_LOG_")}
    proc = subprocess.run(
        [sys.executable, "-m", "mts1b_GPUbacktester.demo", "--out", str(out),
         "--store", str(tmp_path / "store"), "--backend", "numpy"],
        capture_output=True, text=True, timeout=300, check=False,
        env={**env, "MTS_LOG_FORMAT": "json"})
    assert proc.returncode == 0, proc.stderr
    for needle in ("Sharpe", "CAGR", "Max drawdown", "Final NAV", "ladder:",
                   f"tearsheet: {out.resolve()}"):
        assert needle in proc.stdout, needle
    for line in proc.stdout.splitlines():
        assert not line.startswith("{"), f"a log line on stdout: {line}"
    assert proc.stderr == ""
    assert out.exists() and "<svg" in out.read_text(encoding="utf-8")

