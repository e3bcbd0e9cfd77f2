"""The console script: plan, an inventory error as lines, install with rendered config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mts1b_deploy.cli import app, main
from typer.testing import CliRunner

EXAMPLE = Path(__file__).parent / "data" / "inventory.yaml"
REPO = Path(__file__).resolve().parents[2]


def test_plan_json_and_mts_entry_point() -> None:
    result = CliRunner().invoke(app, ["plan", str(EXAMPLE), "--json"])
    assert result.exit_code == 0, result.output
    planned = json.loads(result.stdout)
    assert [p["service"] for p in planned][:3] == ["nats", "postgres", "vault"]
    assert planned[3]["params"]["net0"].startswith("name=eth0,bridge=vmbr0,ip=10.20.0.14/24")
    mts = subprocess.run([sys.executable, "-m", "mts1b_platform.cli", "mts1b-deploy", "plan",
                          str(EXAMPLE)], capture_output=True, text=True, check=False)
    assert mts.returncode == 0, mts.stderr
    assert "+ create CT 2008 mts-paper-operations on pve1 (operations)" in mts.stdout


def test_an_inventory_error_is_lines_not_a_traceback(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "inv.yaml"
    bad.write_text(EXAMPLE.read_text().replace("cores: 4", "cores: lots"))
    with pytest.raises(SystemExit) as info:
        main(["plan", str(bad)])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"mts1b-deploy: [DEPLOY.INVENTORY] {bad}: 1 error(s)\n  line ")
    assert "services.research.cores: Input should be a valid integer" in err
    assert "Traceback" not in err


def test_install_renders_the_config(foundation_wheelhouse: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [
        "install", "--root", str(tmp_path), "--library", "mts1b-foundation", "--repo",
        str(REPO), "--wheelhouse", str(foundation_wheelhouse), "--sha", "e" * 40,
        "--inventory", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert f"release 1-{'e' * 12} installed and current" in result.stdout
    env = (tmp_path / "current" / "config" / "oms.env").read_text()
    assert env == ("MTS_SERVICE=oms\nMTS_DEPLOYMENT=paper\nMTS_NATS_URL=nats://10.20.0.11:4222\n"
                   "MTS_DATABASE_URL=postgresql://mts1b_oms@10.20.0.12:5432/mts1b\n"
                   "VAULT_ADDR=https://10.20.0.13:8200\n"
                   "MTS_VAULT_TOKEN_FILE=/var/lib/mts1b-oms/vault-token\nMTS_FUNDS=core,income\n")
    research = (tmp_path / "current" / "config" / "research.env").read_text()
    assert "MTS_STRATEGIES=carry,momentum,value\n" in research
    shown = CliRunner().invoke(app, ["history", "--root", str(tmp_path)])
    assert shown.stdout.startswith(f"*    1  {'e' * 12}  ")
