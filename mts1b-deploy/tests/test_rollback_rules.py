"""The rules of rollback on recorded histories: the expand/contract schema window, the kept
releases, pruning. (Installing releases for real: test_releases.py.)"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import pytest
from mts1b_deploy.errors import RollbackRefused
from mts1b_deploy.history import Generation, Switch, append
from mts1b_deploy.local import LocalTarget
from mts1b_deploy.schema import oldest_compatible, schema_block, schema_versions


def test_schema_window_is_one_release_back() -> None:
    history = [{"mts1b_oms": 5}, {"mts1b_oms": 5}, {"mts1b_oms": 6}, {"mts1b_oms": 7}]
    assert schema_block(history, {"mts1b_oms": 7}) is None
    assert schema_block(history, {"mts1b_oms": 6}) is None  # N-1 code on schema N
    block = schema_block(history, {"mts1b_oms": 5})
    assert block is not None and (block.database_version, block.floor) == (7, 6)
    assert block.reason() == ("mts1b_oms's schema there is 0005, the database is at 0007, and "
                              "with expand/contract migrations the oldest schema it still "
                              "serves is 0006 (one release back)")
    # a rollback does not lower the database: installing 5 again after 7 changes nothing
    assert schema_block([*history, {"mts1b_oms": 6}], {"mts1b_oms": 5}) is not None
    # libraries are judged one by one; one without a database never blocks
    both = [{"mts1b_oms": 1, "mts1b_treasury": 3}, {"mts1b_oms": 2, "mts1b_treasury": 3}]
    assert schema_block(both, {"mts1b_oms": 1, "mts1b_treasury": 3}) is None
    assert schema_block(both, {}) is None
    assert oldest_compatible(history, [(1, {"mts1b_oms": 5}), (3, {"mts1b_oms": 6}),
                                       (4, {"mts1b_oms": 7})]) == 3


def test_schema_versions_read_from_installed_packages(tmp_path: Path) -> None:
    for package, files in {"mts1b_oms": ["0001_a.sql", "0007_b.sql", "README"],
                           "mts1b_foundation": [], "other": ["0009_x.sql"]}.items():
        (tmp_path / package / "migrations").mkdir(parents=True)
        for name in files:
            (tmp_path / package / "migrations" / name).write_text("select 1;")
    assert schema_versions(tmp_path) == {"mts1b_oms": 7}


def _recorded(root: Path, schemas: list[dict[str, int]], current: int) -> LocalTarget:
    """A target whose history holds these generations (folders with release.json)."""
    for number, schema in enumerate(schemas, 1):
        sha = f"{number:x}" * 40
        gen = Generation(number, sha, f"{number}-{sha[:12]}", {"mts1b-oms": "0.1.0"}, schema,
                         "0" * 64, "0" * 64, "2026-12-06T00:00:00+00:00", "test")
        folder = root / "releases" / gen.directory
        folder.mkdir(parents=True)
        (folder / "release.json").write_text(json.dumps(asdict(gen)))
        append(root, gen)
        append(root, Switch(number, "install"))
    directory = f"{current}-{f'{current:x}' * 12}"
    os.symlink(f"releases/{directory}", root / "current")
    return LocalTarget(root, keep=2)


def test_rollback_past_the_schema_window_is_refused(tmp_path: Path) -> None:
    target = _recorded(tmp_path, [{"mts1b_oms": 5}, {"mts1b_oms": 6}, {"mts1b_oms": 7}], 3)
    with pytest.raises(RollbackRefused) as info:
        target.rollback("1")
    assert str(info.value) == (
        "[DEPLOY.ROLLBACK_REFUSED] rollback to 1 (generation 1) refused: mts1b_oms's schema "
        "there is 0005, the database is at 0007, and with expand/contract migrations the "
        "oldest schema it still serves is 0006 (one release back); the oldest "
        "schema-compatible kept release is generation 2 (222222222222)")
    page = Path(__file__).resolve().parents[2] / "docs" / "libraries" / "deploy.md"
    if page.exists():  # the page shows this very refusal
        assert f"\nmts1b-deploy: {info.value}\n" in page.read_text(encoding="utf-8")
    assert os.readlink(target.current_link) == "releases/3-333333333333"
    assert target.rollback("2").generation == 2
    with pytest.raises(RollbackRefused, match="refused: mts1b_oms's schema there is 0005"):
        target.rollback("1111111")  # by sha: the same rule


def test_prune_keeps_the_newest_and_the_current(tmp_path: Path) -> None:
    target = _recorded(tmp_path, [{}, {}, {}, {}], 1)
    target.prune()
    assert [k.generation.generation for k in target.kept()] == [4, 3, 1]
    assert target.kept()[-1].current
    with pytest.raises(RollbackRefused, match="generation 2 is no longer kept"):
        target.rollback("2")
