"""The library installs, its command group loads through the ``mts1b.commands`` entry point."""

from __future__ import annotations

from importlib.metadata import entry_points

import mts1b_operations
from mts1b_operations.cli import app


def test_entry_point_names_the_cli() -> None:
    found = [ep for ep in entry_points(group="mts1b.commands") if ep.name == "mts1b-operations"]
    assert len(found) == 1
    assert found[0].load() is app


def test_version() -> None:
    assert mts1b_operations.__version__ == "0.1.0"
