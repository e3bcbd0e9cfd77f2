"""The commands group's former name, ``mts.commands``, is still read for one release.

The libraries of this repository register in ``mts1b.commands``; a third-party library that
still registers only under ``mts.commands`` keeps its ``mts`` group, with a DeprecationWarning
naming the new group when the group is loaded. The distribution here is a real one (a
``.dist-info`` folder on ``sys.path``), so ``importlib.metadata`` finds it the way it finds an
installed wheel.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from mts1b_foundation import plugins
from mts1b_platform import cli
from typer.testing import CliRunner

runner = CliRunner()


@pytest.fixture
def legacy_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``mts1b-oldlib``: a distribution whose command group is registered in ``mts.commands``
    only."""
    (tmp_path / "mts1b_oldlib_cli.py").write_text(textwrap.dedent("""
        import typer

        app = typer.Typer()

        @app.command()
        def hello() -> None:
            typer.echo("hello from the legacy group")

        @app.command()
        def other() -> None:
            typer.echo("a second command, so the group is a group")
    """))
    info = tmp_path / "mts1b_oldlib-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: mts1b-oldlib\nVersion: 0.1\n"
        "Summary: A library still on the old group name\n")
    (info / "entry_points.txt").write_text("[mts.commands]\nmts1b-oldlib = mts1b_oldlib_cli:app\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins, "_warned", set())  # the loader warns once per plugin
    sys.modules.pop("mts1b_oldlib_cli", None)
    yield "mts1b-oldlib"
    sys.modules.pop("mts1b_oldlib_cli", None)


def test_every_library_of_the_repository_registers_under_the_new_name() -> None:
    legacy = {ep.name for ep in metadata.entry_points(group=cli.LEGACY_ENTRY_POINT_GROUP)
              if ep.name.startswith("mts1b-")}
    current = {ep.name for ep in metadata.entry_points(group=cli.ENTRY_POINT_GROUP)}
    assert plugins.COMMANDS.group == cli.ENTRY_POINT_GROUP
    assert cli.LEGACY_ENTRY_POINT_GROUP in plugins.COMMANDS.legacy_groups
    assert legacy == set()
    assert {"mts1b-platform", "mts1b-foundation"} <= current


def test_a_group_only_under_the_legacy_name_loads_with_a_warning(legacy_library: str) -> None:
    listing = runner.invoke(cli.app, ["--help"])
    assert listing.exit_code == 0
    assert legacy_library in listing.stdout
    assert "A library still on the old group name" in " ".join(listing.stdout.split())
    with pytest.warns(DeprecationWarning,
                      match=r"'mts1b-oldlib'.*'mts\.commands'.*register it in 'mts1b\.commands'"):
        result = runner.invoke(cli.app, [legacy_library, "hello"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "hello from the legacy group"
