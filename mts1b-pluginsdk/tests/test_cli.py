"""The ``mts1b-pluginsdk`` commands: new, list, and errors as one line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from mts1b_pluginsdk import cli
from typer.testing import CliRunner

runner = CliRunner()


def test_new_broker_creates_the_project(tmp_path: Path) -> None:
    result = runner.invoke(cli.app, ["new", "broker", "acme", "--dest", str(tmp_path / "p"),
                                     "--no-git"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"created {tmp_path / 'p'} (broker plugin 'acme')")
    assert (tmp_path / "p" / "src" / "mts1b_acme_broker" / "adapter.py").is_file()


def test_an_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["new", "provider", "Bad Name", "--dest", str(tmp_path / "p")])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "mts1b-pluginsdk: [PLUGINSDK.SCAFFOLD] plugin name 'Bad Name' must be lowercase letters "
        "and digits in dash-separated words, starting with a letter, at most 40 characters "
        "(e.g. 'acme' or 'acme-fx')"]


def test_list_shows_each_plugin_and_which_failed(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sdk_list_demo.py").write_text(textwrap.dedent("""
        from mts1b_foundation.plugins import Capabilities

        class Demo:
            capabilities = Capabilities(order_types={"limit"}, time_in_force={"IOC"},
                                        asset_classes={"crypto"}, streaming=True)
    """))
    dist = tmp_path / "sdk_list_demo-0.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: sdk-list-demo\nVersion: 0.3\n")
    (dist / "entry_points.txt").write_text(
        "[mts1b.brokers]\ndemo = sdk_list_demo:Demo\nbroken = sdk_list_nowhere:Broker\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = runner.invoke(cli.app, ["list", "--kind", "brokers"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[1]: line for line in result.stdout.splitlines()}
    assert lines["demo"].split() == [
        "brokers", "demo", "sdk-list-demo", "0.3", "ok", "orders=limit", "tif=IOC",
        "assets=crypto", "streaming"]
    assert "FAILED (ModuleNotFoundError)" in lines["broken"]
    assert lines["paper"].split()[2:5] == ["mts1b-brokers", "0.1.0", "ok"]
    unknown = runner.invoke(cli.app, ["list", "--kind", "exchanges"])
    assert unknown.exit_code == 1
    assert "unknown plugin kind 'exchanges'" in str(unknown.exception)
