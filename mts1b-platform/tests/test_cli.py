"""The `mts` root app: versions, library groups from entry points, a broken group reported."""

from __future__ import annotations

from importlib import metadata

import pytest
from mts1b_platform import cli
from mts1b_platform.commands import matches_filters, parse_filters, parse_since
from typer.testing import CliRunner

runner = CliRunner()


def test_versions_lists_installed_libraries() -> None:
    result = runner.invoke(cli.app, ["versions"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert "mts1b-platform 0.1.0" in lines
    assert any(line.startswith("mts1b-foundation ") for line in lines)


def test_platform_group_comes_from_the_entry_point() -> None:
    eps = metadata.entry_points(group=cli.ENTRY_POINT_GROUP)
    assert "mts1b-platform" in eps.names
    result = runner.invoke(cli.app, ["mts1b-platform", "--help"])
    assert result.exit_code == 0
    assert "tail" in result.stdout


def test_a_broken_group_is_reported_and_the_rest_work(monkeypatch: pytest.MonkeyPatch) -> None:
    real = cli._entry_points()
    broken = metadata.EntryPoint(name="mts1b-broken", value="mts1b_nonexistent.cli:app",
                                 group=cli.ENTRY_POINT_GROUP)
    not_typer = metadata.EntryPoint(name="mts1b-nottyper", value="os:getcwd",
                                    group=cli.ENTRY_POINT_GROUP)
    monkeypatch.setattr(cli, "_entry_points",
                        lambda: {"mts1b-platform": real["mts1b-platform"], "mts1b-broken": broken,
                                 "mts1b-nottyper": not_typer})
    monkeypatch.setattr(cli._LibraryGroup, "_failed", set())
    result = runner.invoke(cli.app, ["--help"])
    assert result.exit_code == 0
    assert "mts1b-platform" in result.stdout
    assert "mts1b-broken" not in result.stdout
    assert "the commands of mts1b-broken failed to load" in result.stderr
    assert "ModuleNotFoundError" in result.stderr
    assert "not a typer.Typer" in result.stderr
    ok = runner.invoke(cli.app, ["mts1b-platform", "--help"])
    assert ok.exit_code == 0
    bad = runner.invoke(cli.app, ["mts1b-broken", "x"])
    assert bad.exit_code != 0


def test_tail_helpers() -> None:
    assert parse_filters(["order_id=ord-abc", "fund_id = f1"]) == {"order_id": "ord-abc",
                                                                   "fund_id": "f1"}
    event = {"event_id": "e1", "order": {"order_id": "ord-abc", "qty": 5}, "ok": True}
    assert matches_filters(event, {"order_id": "ord-abc"})
    assert matches_filters(event, {"qty": "5", "ok": "true"})
    assert not matches_filters(event, {"order_id": "ord-xyz"})
    assert not matches_filters(None, {"order_id": "ord-abc"})
    import datetime as dt

    now = dt.datetime(2024, 1, 2, 12, tzinfo=dt.UTC)
    assert parse_since("2h", now) == dt.datetime(2024, 1, 2, 10, tzinfo=dt.UTC)
    assert parse_since("2024-01-01T00:00:00", now) == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
