"""Tutorial 4 (``docs/tutorials/deploy.md``) as a user types it: every ```bash line of the page,
in order, in a fresh folder, over real NATS and PostgreSQL - the paper stack's configuration,
its fund, a first release started behind the gates, a second one, ``history``, ``rollback --to``
the first with a restart, ``stop``.

The page's commands run unchanged; the test only isolates them through the environment the
commands read: the target folder (``MTS_DEPLOY_ROOT``), the checkout and its wheels
(``MTS_DEPLOY_REPO``, ``MTS_DEPLOY_WHEELHOUSE``: a session's wheelhouse of the three
libraries, as ``python3 dev.py wheels`` would fill ``dist/``), a NATS namespace and the OMS's and
treasury's schemas. Skipped, with the reason, without NATS, PostgreSQL or the wheels.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from mts1b_deploy.standin import ProxmoxStandIn

if TYPE_CHECKING:
    from conftest import Servers

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "tutorials" / "deploy.md"
EXAMPLE = Path(__file__).parent / "data" / "inventory.yaml"  # the library page's inventory


def commands() -> list[str]:
    """Every line of every ```bash block of the page, in order."""
    blocks = re.findall(r"```bash\n(.*?)```", PAGE.read_text(encoding="utf-8"), flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


@pytest.fixture
def tutorial_env(paper_libraries: None, paper_wheelhouse: Path, servers: Servers,
                 tmp_path: Path) -> Iterator[tuple[dict[str, str], ProxmoxStandIn]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed for the Proxmox API stand-in's certificate")
    tag = servers.namespace("dep")
    # step 0's node: the API stand-in, and the library page's inventory pointing at it
    secret = str(uuid.uuid4())
    standin = ProxmoxStandIn(token_id="deploy@pve!provisioner", token_secret=secret)
    port, ca = standin.start(tmp_path)
    (tmp_path / "inventory.yaml").write_text(EXAMPLE.read_text().replace(
        "https://pve1.lan:8006", f"https://127.0.0.1:{port}"))
    env = {**os.environ, "MTS_DEPLOY_ROOT": str(tmp_path / "mts"),
           "MTS_DEPLOY_REPO": str(REPO), "MTS_DEPLOY_WHEELHOUSE": str(paper_wheelhouse),
           "MTS_NATS_URL": servers.nats_url, "MTS_DATABASE_URL": servers.dsn,
           "MTS_NATS_NAMESPACE": tag, "MTS_OMS_SCHEMA": f"{tag}_oms",
           "MTS_TREASURY_SCHEMA": f"{tag}_treasury", "MTS_DEV_DIR": str(tmp_path / "dev"),
           "PROXMOX_TOKEN_SECRET": secret, "MTS_PROXMOX_CACERT": str(ca),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    try:
        yield env, standin
    finally:  # the services stop before the servers' fixture deletes their streams
        subprocess.run([sys.executable, "-m", "mts1b_deploy.cli", "stop"], env=env,
                       capture_output=True, timeout=120, check=False)
        standin.stop()


def _cmdline(root: Path, service: str) -> list[str]:
    pid = json.loads((root / "run" / f"{service}.json").read_text())["pid"]
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def test_tutorial_4_runs_as_written(tmp_path: Path, tutorial_env: tuple[
        dict[str, str], ProxmoxStandIn]) -> None:
    env, node = tutorial_env
    root = Path(env["MTS_DEPLOY_ROOT"])
    outputs: list[tuple[str, str]] = []
    for line in commands():
        assert shlex.split(line)[0] == "mts1b-deploy" or line.startswith(
            "mts mts1b-treasury fund create"), line
        done = subprocess.run(line, shell=True, cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300, check=False)
        assert done.returncode == 0, f"{line}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        outputs.append((line, done.stdout))
        if line.endswith("rollback --to 1 --restart"):  # generation 1's config runs again
            argv = _cmdline(root, "brokers")
            assert argv[argv.index("--commission-bps") + 1] == "0", argv
            assert str(root / "releases" / "1-") in " ".join(argv)
        if line.endswith("--commission-bps 1 --out paper-config --key-file desk.key"):
            argv = _cmdline(root, "brokers")  # still generation 1, before the install
            assert argv[argv.index("--commission-bps") + 1] == "0", argv

    def out(fragment: str, nth: int = 0) -> str:
        return [o for line, o in outputs if fragment in line][nth]

    live, applied = out("plan inventory.yaml --live"), out("apply inventory.yaml")
    assert live.count("+ create CT ") == 8 and live.count("> start CT ") == 8, live
    assert "! CT 2004 (oms) needs root@pam: pct set 2004 --features nesting=1" in applied
    assert node.status == dict.fromkeys(range(2001, 2009), "running")
    first, second = out("mts1b-deploy install", 0), out("mts1b-deploy install", 1)
    for gate in ("processes alive", "oms answers", "kill switch unchanged"):
        assert f"gate {gate}: ok" in first and f"gate {gate}: ok" in second, (first, second)
    assert "orders: none working" in second
    status = out("mts1b-deploy status", 0)
    assert status.startswith("current: generation 1 (")
    for service in ("brokers", "oms", "treasury"):
        assert f"  {service}: running" in status
    assert "oms serving funds paper on mts.v1.oms.commands.*" in out("logs oms")
    before, after = out("history", 0), out("history", 1)
    assert re.search(r"^\*    2  [0-9a-f]{12}  .*schema: .*mts1b_oms \d{4}", before, re.M), before
    assert re.search(r"^     1  ", before, re.M)
    assert re.search(r"^\*    1  ", after, re.M) and re.search(r"^     2  ", after, re.M)
    assert "current is generation 1" in out("rollback")
    assert out("rollback").startswith("orders: none working\n")  # before the OMS restarts
    assert out("mts1b-deploy status", 1).startswith("current: generation 1 (")
    assert "  oms: running" in out("mts1b-deploy status", 1)
    assert "stopped oms" in out("mts1b-deploy stop")
    reasons = [json.loads(line)["reason"] for line in
               (root / "generations.jsonl").read_text().splitlines() if '"switch"' in line]
    assert reasons == ["install", "install", "rollback to 1"]
