"""The systemd units pass ``systemd-analyze verify`` and rate an exposure of at most 3.0 in
``systemd-analyze security --offline=true --threshold=30`` (the threshold is in tenths);
skipped, saying so, where the tool is missing. The units are checked, not run: CI has no
systemd to start them in."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from mts1b_deploy.cli import app
from mts1b_deploy.units import UNIT_SERVICES, render_unit, unit_name
from typer.testing import CliRunner

ANALYZE = shutil.which("systemd-analyze")


def test_the_unit_runs_the_current_release() -> None:
    unit = render_unit("oms")
    assert "ExecStart=/opt/mts/current/venv/bin/mts mts1b-oms serve\n" in unit
    assert "EnvironmentFile=/opt/mts/current/config/oms.env\n" in unit
    assert "User=mts1b-oms\n" in unit and "Restart=on-failure\n" in unit
    assert "MemoryDenyWriteExecute=yes" in unit
    assert "MemoryDenyWriteExecute" not in render_unit("research")
    with pytest.raises(ValueError, match="has no unit"):
        render_unit("postgres")
    with pytest.raises(ValueError, match="must be an absolute path"):
        render_unit("oms", root="opt/mts")


def test_the_units_command(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["units", "--out", str(tmp_path), "--root", "/srv/mts"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        unit_name(s) for s in UNIT_SERVICES)
    assert (tmp_path / "mts1b-treasury.service").read_text() == render_unit(
        "treasury", root="/srv/mts")


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("service", UNIT_SERVICES)
def test_verify_and_exposure(service: str, tmp_path: Path) -> None:
    assert ANALYZE is not None
    mts = tmp_path / "current" / "venv" / "bin" / "mts"  # verify checks ExecStart exists
    mts.parent.mkdir(parents=True)
    mts.write_text("#!/bin/sh\n")
    mts.chmod(0o755)
    unit = tmp_path / unit_name(service)
    unit.write_text(render_unit(service, root=str(tmp_path)))
    verify = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True,
                            check=False, cwd=tmp_path)
    assert verify.returncode == 0, verify.stderr
    assert verify.stderr == ""
    security = subprocess.run([ANALYZE, "security", "--offline=true", "--threshold=30",
                               str(unit)], capture_output=True, text=True, check=False,
                              cwd=tmp_path)
    assert security.returncode == 0, security.stdout[-2000:]
    level = re.search(r"Overall exposure level for \S+: (\d+\.\d)", security.stdout)
    assert level is not None and float(level.group(1)) <= 3.0
