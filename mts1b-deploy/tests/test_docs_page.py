"""docs/libraries/deploy.md shows what the code does: its inventory is the example file, its
plan and its error lines are what the command prints. Skipped without the docs folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mts1b_deploy import InventoryError, load_inventory, parse_inventory, plan, render_plan

PAGE = Path(__file__).resolve().parents[2] / "docs" / "libraries" / "deploy.md"
EXAMPLE = Path(__file__).parent / "data" / "inventory.yaml"


def _blocks(kind: str) -> list[str]:
    if not PAGE.exists():
        pytest.skip(f"docs page not found at {PAGE}")
    return re.findall(rf"```{kind}\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)


def test_the_inventory_shown_is_the_example() -> None:
    (shown,) = _blocks("yaml")
    example = "".join(line for line in EXAMPLE.read_text().splitlines(keepends=True)
                      if not line.startswith("#"))
    assert shown == example


def test_the_plan_and_the_errors_shown_are_printed() -> None:
    errors_shown, plan_shown = _blocks("text")[:2]
    inv = load_inventory(EXAMPLE)
    text = render_plan(inv, plan(inv))
    first, *rest = plan_shown.rstrip("\n").split("\n")
    assert text.startswith(first + "\n") and "\n".join(rest) in text
    (shown,) = _blocks("yaml")
    bad = (shown.replace("vmid: 2005, ip: 10.20.0.15", "vmid: 2005, ip: 10.20.0.14")
           .replace("{node: pve1, vmid: 2007", "{node: pve9, vmid: 2007"))
    with pytest.raises(InventoryError) as info:
        parse_inventory(bad, "inventory.yaml")
    assert f"mts1b-deploy: {info.value}\n" == errors_shown
