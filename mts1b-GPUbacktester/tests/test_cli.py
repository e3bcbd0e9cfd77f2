"""``mts mts1b-GPUbacktester run | ladder``: argument parsing and end-to-end runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mts1b_GPUbacktester import BacktestConfigError
from mts1b_GPUbacktester.cli import app, parse_constraint, parse_grid, parse_params
from typer.testing import CliRunner


def test_parsers() -> None:
    assert parse_params(["p_fast=20", "p_slow=50", "x=0.5", "name=abc"]) == {
        "p_fast": 20, "p_slow": 50, "x": 0.5, "name": "abc"}
    assert parse_grid(["p_fast=5,10", "p_slow=20:50:10"]) == {
        "p_fast": [5, 10], "p_slow": [20, 30, 40]}
    keep = parse_constraint("p_fast < p_slow")
    assert keep is not None and keep({"p_fast": 5, "p_slow": 20})
    assert not keep({"p_fast": 20, "p_slow": 20})
    lim = parse_constraint("p_slow<=100")
    assert lim is not None and lim({"p_slow": 100}) and not lim({"p_slow": 101})
    for bad in (lambda: parse_params(["p_fast"]), lambda: parse_grid(["p_fast="]),
                lambda: parse_constraint("p_fast << p_slow")):
        with pytest.raises(BacktestConfigError):
            bad()


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    from mts1b_datalake.synthetic import install_demo_market

    root = tmp_path_factory.mktemp("store")
    install_demo_market(root, n_assets=40, start="2016-01-01", end="2019-12-31")
    return str(root)


def test_run_prints_metrics_and_writes_the_tearsheet(demo_store: str, tmp_path: Path) -> None:
    out = tmp_path / "t.html"
    result = CliRunner().invoke(app, [
        "run", "--factor", "f_sma_cross", "--param", "p_fast=10", "--param", "p_slow=30",
        "--universe", "us-large-cap", "--start", "2017-01-01", "--end", "2019-06-30",
        "--report", str(out), "--json", str(tmp_path / "m.json"), "--store", demo_store,
        "--backend", "numpy"])
    assert result.exit_code == 0, result.output
    assert "sharpe" in result.output and "tearsheet:" in result.output
    assert out.exists() and out.stat().st_size > 10_000
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert {"sharpe", "cagr", "max_drawdown", "turnover"} <= set(metrics)


def test_ladder_prints_the_best_combinations(demo_store: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [
        "ladder", "--grid", "p_fast=5,10,20", "--grid", "p_slow=20,40",
        "--constraint", "p_fast < p_slow", "--universe", "us-large-cap",
        "--start", "2017-01-01", "--end", "2019-06-30", "--mode", "per_asset",
        "--store", demo_store, "--out", str(tmp_path / "l.csv"), "--backend", "numpy"])
    assert result.exit_code == 0, result.output
    assert "5 combinations" in result.output and "fast path True" in result.output
    assert len((tmp_path / "l.csv").read_text().splitlines()) == 6


def test_bad_arguments_exit_2_with_the_reason(demo_store: str) -> None:
    result = CliRunner().invoke(app, ["run", "--fill", "tomorrow", "--store", demo_store,
                                      "--universe", "us-large-cap", "--start", "2017-01-01"])
    assert result.exit_code == 2
    assert "fill" in result.output


def _mts(*args: str) -> subprocess.CompletedProcess[str]:
    """The real ``mts`` command in its own process, stdout and stderr apart, JSON log lines,
    no ``MTS_LOG_LEVEL`` from the caller's environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTS_LOG_")}
    return subprocess.run([sys.executable, "-m", "mts1b_platform.cli", *args],
                          capture_output=True, text=True, timeout=300, check=False,
                          env={**env, "MTS_LOG_FORMAT": "json"})


def _no_log_line(stdout: str) -> None:
    for line in stdout.splitlines():
        assert not line.lstrip().startswith("{"), f"a log line on stdout: {line}"


LADDER = ["mts1b-GPUbacktester", "ladder", "--grid", "p_fast=5,10", "--grid", "p_slow=20,40",
          "--universe", "us-large-cap", "--start", "2017-01-01", "--end", "2019-06-30",
          "--mode", "per_asset", "--backend", "numpy"]


def test_commands_print_on_stdout_and_log_nothing_by_default(demo_store: str) -> None:
    run = _mts("mts1b-GPUbacktester", "run", "--param", "p_fast=10", "--param", "p_slow=30",
               "--universe", "us-large-cap", "--start", "2017-01-01", "--end", "2019-06-30",
               "--store", demo_store, "--backend", "numpy")
    ladder = _mts(*LADDER, "--store", demo_store)
    for proc in (run, ladder):
        assert proc.returncode == 0, proc.stderr
        _no_log_line(proc.stdout)
        assert proc.stderr == ""  # no INFO line, and no progress bar off a terminal
    assert "sharpe" in run.stdout and "4 combinations" in ladder.stdout


def test_verbose_logs_go_to_stderr_only(demo_store: str) -> None:
    proc = _mts("-v", *LADDER, "--store", demo_store)
    assert proc.returncode == 0, proc.stderr
    _no_log_line(proc.stdout)
    lines = [json.loads(line) for line in proc.stderr.splitlines()]
    assert "ladder done" in {line["message"] for line in lines}


def test_errors_are_one_line_on_stderr(demo_store: str) -> None:
    proc = _mts("mts1b-GPUbacktester", "run", "--fill", "tomorrow", "--store", demo_store)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: ") and "fill" in proc.stderr
    assert len(proc.stderr.splitlines()) == 1


def test_help_shows_the_run_specification_options() -> None:
    for command in ("run", "ladder"):
        result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        for option in ("--trade-on", "--band", "--calendar", "--periods-per-year", "--rebal",
                       "--fill", "--cost-bps", "--n"):
            assert option in result.output, (command, option)
        assert "signal_change" in result.output and "24/7" in result.output


def test_run_builds_the_same_spec_as_the_python_api(demo_store: str, tmp_path: Path) -> None:
    from mts1b_GPUbacktester.spec import RunSpec

    result = CliRunner().invoke(app, [
        "run", "--param", "p_fast=10", "--param", "p_slow=30", "--universe", "us-large-cap",
        "--n", "10", "--start", "2017-01-01", "--end", "2019-06-30", "--rebal", "weekly",
        "--trade-on", "signal_change", "--band", "0.05", "--periods-per-year", "365",
        "--cost-bps", "5", "--store", demo_store, "--json", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    assert "annualised with 365 periods a year" in result.output
    assert "trade on signal_change, band 0.05" in result.output
    doc = json.loads((tmp_path / "m.json").read_text())
    assert doc["spec"] == RunSpec(rebal="weekly", trade_on="signal_change", band=0.05,
                                  periods_per_year=365, cost_bps=5).to_dict()
    assert (doc["periods_per_year"], doc["calendar"]) == (365.0, "XNYS")


def test_bad_run_options_name_the_option(demo_store: str) -> None:
    for args, needle in ((["--trade-on", "always"], "trade_on"), (["--band", "-1"], "band"),
                         (["--periods-per-year", "0"], "periods_per_year"),
                         (["--universe", "SPY", "--n", "5"], "--n sizes a named universe")):
        result = CliRunner().invoke(app, ["run", "--store", demo_store, "--start",
                                          "2017-01-01", *args])
        assert result.exit_code == 2, (args, result.output)
        assert needle in result.output, (args, result.output)
