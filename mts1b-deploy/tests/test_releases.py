"""Releases on the local target, for real: a wheelhouse checked against uv.lock, installed with
pip --no-index --require-hashes into releases/<generation>-<sha>, current switched atomically,
history, rollback by sha or generation. One small release (mts1b-foundation's closure) is
installed twice per session; the schema rules and pruning run on recorded histories."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from mts1b_deploy.cli import app
from mts1b_deploy.errors import ReleaseError, RollbackRefused
from mts1b_deploy.local import LocalTarget, ReleaseRequest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
SHA_A = "a" * 40
SHA_B = "b0c1" + "d" * 36


@pytest.fixture(scope="module")
def target(foundation_wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> LocalTarget:
    """Generations 1 (SHA_A) and 2 (SHA_B) of mts1b-foundation installed; 2 current."""
    local = LocalTarget(tmp_path_factory.mktemp("target"), keep=5)
    for sha, config in ((SHA_A, {"oms.env": "MTS_SERVICE=oms\nA=1\n"}),
                        (SHA_B, {"oms.env": "MTS_SERVICE=oms\nA=2\n"})):
        local.install(ReleaseRequest(repo=REPO, libraries=("mts1b-foundation",),
                                     wheelhouse=foundation_wheelhouse, sha=sha, config=config))
    return local


def test_release_layout(target: LocalTarget) -> None:
    assert os.readlink(target.current_link) == f"releases/2-{SHA_B[:12]}"
    folder = target.root / "releases" / f"2-{SHA_B[:12]}"
    record = json.loads((folder / "release.json").read_text())
    assert record["sha"] == SHA_B and record["generation"] == 2
    assert record["libraries"] == {"mts1b-foundation": "0.1.0"}
    assert record["schema"] == {}  # foundation has no database
    names = {w["name"] for w in record["wheels"]}
    assert {"mts1b-foundation", "pydantic", "numpy"} <= names
    requirements = (folder / "requirements.txt").read_text().splitlines()
    assert all(" --hash=sha256:" in line for line in requirements)
    assert len(requirements) == len(record["wheels"])
    python = target.current_link / "venv" / "bin" / "python"
    out = subprocess.run([str(python), "-c", "import mts1b_foundation, sys; "
                          "print(mts1b_foundation.__version__, sys.prefix)"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "0.1.0"
    assert str(Path(out[1]).resolve()).endswith(f"releases/2-{SHA_B[:12]}/venv")
    assert (target.current_link / "config" / "oms.env").read_text().endswith("A=2\n")


def test_history_and_rollback_by_sha_and_generation(target: LocalTarget) -> None:
    runner = CliRunner()
    root = ["--root", str(target.root)]
    shown = runner.invoke(app, ["history", *root])
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("*    2  b0c1dddddddd") and lines[1].startswith("     1  aaaaaaa")
    back = runner.invoke(app, ["rollback", *root, "--to", SHA_A[:7]])
    assert back.exit_code == 0, back.output
    assert "current is generation 1 (aaaaaaaaaaaa) again" in back.stdout
    assert (target.current_link / "config" / "oms.env").read_text().endswith("A=1\n")
    with pytest.raises(RollbackRefused, match="already current"):
        target.rollback("1")
    with pytest.raises(RollbackRefused, match="no such generation or commit"):
        target.rollback("ffffffff")
    with pytest.raises(RollbackRefused, match="neither a generation number nor a commit"):
        target.rollback("HEAD~1")
    target.rollback("2")
    assert os.readlink(target.current_link) == f"releases/2-{SHA_B[:12]}"
    switches = [json.loads(line) for line in
                (target.root / "generations.jsonl").read_text().splitlines()
                if '"switch"' in line]
    assert [(s["generation"], s["reason"]) for s in switches] == [
        (1, "install"), (2, "install"), (1, f"rollback to {SHA_A[:7]}"), (2, "rollback to 2")]


def test_a_missing_wheel_fails_before_anything_changes(target: LocalTarget, tmp_path: Path
                                                       ) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    before = os.readlink(target.current_link)
    with pytest.raises(ReleaseError, match=r"holds no wheel .* mts1b-foundation==0\.1\.0"):
        target.install(ReleaseRequest(repo=REPO, libraries=("mts1b-foundation",),
                                      wheelhouse=empty, sha="c" * 40))
    assert os.readlink(target.current_link) == before
    assert not list((target.root / "releases").glob("3-*"))
    with pytest.raises(ReleaseError, match="is not a commit id"):
        target.install(ReleaseRequest(repo=REPO, libraries=("mts1b-foundation",),
                                      wheelhouse=empty, sha="main"))
