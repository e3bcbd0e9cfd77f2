"""The `mts mts1b-datalake` commands, through the real `mts` root."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

runner = CliRunner()


def mts(*args: str) -> object:
    from mts1b_platform.cli import app

    return runner.invoke(app, ["mts1b-datalake", *args], catch_exceptions=False)


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    days = pd.bdate_range("2021-01-04", periods=60)
    rows = [{"date": d.date(), "open": 10 + i * 0.1, "high": 10.5 + i * 0.1,
             "low": 9.5 + i * 0.1, "close": 10.2 + i * 0.1, "volume": 1000 + i, "Name": s}
            for s in ("AAA", "BBB", "CCC") for i, d in enumerate(days)]
    path = tmp_path / "long.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    with path.open("a") as fh:
        fh.write("2021-03-31,1,1,1,,5,AAA\n")
    return path


def test_ingest_qc_universe_panel_replay(csv_file: Path, tmp_path: Path) -> None:
    store = str(tmp_path / "lake")
    result = mts("ingest", str(csv_file), "--store", store, "--json", str(tmp_path / "r.json"))
    assert result.exit_code == 0, result.output
    assert "180" in result.output and "rejected" in result.output
    assert f"rejected {csv_file}:182: close is missing" in result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report[0]["added"] == 180 and report[0]["rejected"] == 1

    again = mts("ingest", str(csv_file), "--store", store, "--json", str(tmp_path / "r2.json"))
    assert again.exit_code == 0, again.output
    second = json.loads((tmp_path / "r2.json").read_text())[0]
    assert (second["added"], second["unchanged"]) == (0, 180)

    qc = mts("qc", "--store", store, "--json", str(tmp_path / "qc.json"), "--markdown",
             str(tmp_path / "qc.md"))
    assert qc.exit_code == 0, qc.output
    assert "bad_tick" in qc.output
    assert json.loads((tmp_path / "qc.json").read_text())["rows"] == 180
    assert (tmp_path / "qc.md").read_text().startswith("| check |")

    show = mts("universe", "show", "us-all", "--date", "2021-03-26", "--store", store)
    assert show.exit_code == 0, show.output
    assert "3 member(s)" in show.output and "AAA BBB CCC" in show.output
    latest = mts("universe", "show", "us-all", "--store", store)
    assert "us-all on 2021-03-26: 3 member(s)" in latest.output

    info = mts("panel", "info", "AAA,BBB", "2021-01-04", "2021-03-26", "--store", store,
               "--json")
    assert info.exit_code == 0, info.output
    assert '"symbols": 2' in info.output and '"sessions": 58' in info.output

    rep = mts("replay", "AAA", "2021-03-01", "2021-03-05", "--store", store, "--dry-run",
              "--speed", "0")
    assert rep.exit_code == 0, rep.output
    assert '"published": 5' in rep.output

    stats = mts("store", "info", "--store", store)
    assert "bars: 180" in stats.output


def test_errors_exit_with_code_2(tmp_path: Path) -> None:
    store = str(tmp_path / "lake")
    bad = mts("panel", "info", "nope", "2021-01-01", "2021-02-01", "--store", store)
    assert bad.exit_code == 2
    assert "DATALAKE.UNKNOWN_UNIVERSE" in bad.output
    missing = mts("ingest", str(tmp_path / "missing.csv"), "--store", store)
    assert missing.exit_code == 2 and "not found" in missing.output
    policy = mts("ingest", str(tmp_path / "missing.csv"), "--policy", "x=y", "--store", store)
    assert policy.exit_code == 2


def test_qc_on_files_and_demo_install(tmp_path: Path,
                                      data_file: Callable[[str], Path]) -> None:
    path = data_file("plotly/dash-stock-ticker-demo.csv")
    out = mts("qc", str(path), "--show", "calendar_gap")
    assert out.exit_code == 0, out.output
    assert "calendar_gap" in out.output
    listing = mts("universe", "list")
    assert "us-large-cap" in listing.output


def _mts_process(*args: str) -> subprocess.CompletedProcess[str]:
    """The real ``mts`` command in its own process, stdout and stderr apart, JSON log lines,
    no ``MTS_LOG_LEVEL`` from the caller's environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTS_LOG_")}
    return subprocess.run([sys.executable, "-m", "mts1b_platform.cli", *args],
                          capture_output=True, text=True, timeout=300, check=False,
                          env={**env, "MTS_LOG_FORMAT": "json"})


def test_ingest_prints_its_table_on_stdout_and_logs_on_stderr(csv_file: Path,
                                                              tmp_path: Path) -> None:
    store = str(tmp_path / "lake")
    quiet = _mts_process("mts1b-datalake", "ingest", str(csv_file), "--store", store)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""  # no INFO line, and no progress bar off a terminal
    assert "long.csv" in quiet.stdout and "180" in quiet.stdout
    assert f"rejected {csv_file}:182: close is missing" in quiet.stdout
    for line in quiet.stdout.splitlines():
        assert not line.startswith("{"), f"a log line on stdout: {line}"

    verbose = _mts_process("-v", "mts1b-datalake", "ingest", str(csv_file), "--store", store)
    assert verbose.returncode == 0, verbose.stderr
    assert not any(line.startswith("{") for line in verbose.stdout.splitlines())
    messages = [json.loads(line)["message"] for line in verbose.stderr.splitlines()]
    assert "ingest changed nothing" in messages  # the second ingest of the same file


def test_store_exports_closes_and_events_as_csv(csv_file: Path, tmp_path: Path) -> None:
    """What the treasury reads: one session's raw closes, and corporate actions by ex-date."""
    store = str(tmp_path / "lake")
    assert mts("ingest", str(csv_file), "--store", store).exit_code == 0
    closes = mts("store", "closes", "--date", "2021-01-05", "--store", store)
    assert closes.exit_code == 0, closes.output
    close = repr(10.2 + 1 * 0.1)  # the fixture's second day, as the float it stored (exact)
    assert closes.stdout == f"symbol,close\nAAA,{close}\nBBB,{close}\nCCC,{close}\n"
    some = mts("store", "closes", "--date", "2021-01-05", "--symbols", "BBB", "--store", store)
    assert some.stdout == f"symbol,close\nBBB,{close}\n"
    events = mts("store", "events", "--start", "2021-01-01", "--end", "2021-12-31",
                 "--store", store)
    assert events.exit_code == 0 and events.stdout == "symbol,date,kind,value\n"
    from mts1b_platform.cli import app

    for args, words in ((["--date", "2021-01-02"], "no bars on that day"),
                        (["--date", "2021/01/05"], "--date '2021/01/05': not a date")):
        bad = runner.invoke(app, ["mts1b-datalake", "store", "closes", *args, "--store", store])
        assert bad.exit_code == 2 and words in bad.output
