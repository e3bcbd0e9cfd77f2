"""The Proxmox target's containers against the API stand-in (mts1b_deploy.standin, which stands
in for a real node): drift, an idempotent apply, and the failure modes of a real cluster."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mts1b_deploy import parse_inventory
from mts1b_deploy.inventory import Inventory
from mts1b_deploy.proxmox import ProxmoxError, ProxmoxTarget, resolve_secret_ref
from mts1b_deploy.standin import ProxmoxStandIn

EXAMPLE = Path(__file__).parent / "data" / "inventory.yaml"

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None,
                                reason="openssl is needed for the stand-in's certificate")


@dataclass
class Node:
    standin: ProxmoxStandIn
    inv: Inventory
    secret: str
    ca: Path

    def target(self, inv: Inventory | None = None) -> ProxmoxTarget:
        return ProxmoxTarget(inv or self.inv, self.secret, verify=str(self.ca), backoff=0.01,
                             poll=0.01)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    secret = str(uuid.uuid4())
    standin = ProxmoxStandIn(token_id="deploy@pve!provisioner", token_secret=secret)
    port, ca = standin.start(tmp_path)
    text = EXAMPLE.read_text().replace("https://pve1.lan:8006", f"https://127.0.0.1:{port}")
    try:
        yield Node(standin, parse_inventory(text), secret, ca)
    finally:
        standin.stop()


def test_apply_creates_then_finds_nothing_to_change(node: Node) -> None:
    target = node.target()
    drift = target.drift()
    assert [c.action for c in drift[:3]] == ["create", "start", "root-only"]
    assert len([c for c in drift if c.action == "create"]) == 8
    lines: list[str] = []
    done = target.apply(log=lines.append)
    assert [(c.action, c.service) for c in done][:2] == [("create", "nats"), ("start", "nats")]
    assert "! CT 2001 (nats) needs root@pam: pct set 2001 --features nesting=1" in lines
    assert node.standin.status == dict.fromkeys(range(2001, 2009), "running")
    oms = node.standin.containers[2004]
    assert oms["memory"] == "2048" and oms["net0"].startswith("name=eth0,bridge=vmbr0,ip=10.20.")
    assert "features" not in oms  # an API token may not set it
    assert node.standin.containers[2002]["mp0"] == "local-lvm:100,mp=/var/lib/postgresql,backup=1"

    # the administrator sets nesting once as root@pam; then nothing is left to do
    for ct in node.standin.containers.values():
        ct["features"] = "nesting=1"
    lines.clear()
    assert target.apply(log=lines.append) == []
    assert lines == ["nothing to change: the containers match the inventory"]


def test_drift_is_updated_in_place(node: Node) -> None:
    node.target().apply()
    bigger = parse_inventory(node.inv.model_dump_json().replace('"memory_mb":2048',
                                                                 '"memory_mb":4096'))
    (change,) = [c for c in node.target(bigger).drift() if c.action != "root-only"]
    assert change.line() == "~ update CT 2004 (oms): memory: 2048 -> 4096"
    node.target(bigger).apply()
    assert node.standin.containers[2004]["memory"] == "4096"


def test_596_and_a_locked_container_are_retried(node: Node) -> None:
    node.standin.fail_next(r"/nodes/pve1/lxc$", status=596)  # the first list, then a create
    node.standin.fail_next(r"/lxc/2001/status/start$", status=500,
                           message="CT is locked (create)")
    node.target().apply()
    assert node.standin.status[2001] == "running"
    posts = [p for m, p in node.standin.requests
             if m == "POST" and p.endswith("/2001/status/start")]
    assert len(posts) == 2  # refused while locked, then started


def test_a_blind_token_is_refused_not_trusted(node: Node) -> None:
    node.standin.privileges = frozenset()
    with pytest.raises(ProxmoxError, match=r"lacks VM\.Audit, VM\.Allocate on /vms: a "
                                           r"privilege-separated token then lists no"):
        node.target().drift()
    assert ("GET", "/api2/json/nodes/pve1/lxc") not in node.standin.requests


def test_a_failed_task_and_a_bad_token(node: Node) -> None:
    node.standin.fail_task("vzcreate")
    with pytest.raises(ProxmoxError, match=r"create CT 2001 \(nats\): the task ended with "
                                           r"'vzcreate failed: unable to create CT'"):
        node.target().apply()
    wrong = ProxmoxTarget(node.inv, str(uuid.uuid4()), verify=str(node.ca))
    with pytest.raises(ProxmoxError, match="HTTP 401 authentication failure") as info:
        wrong.drift()
    assert node.secret not in str(info.value)


def test_token_references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PVE_SECRET", "s3cr3t-value-1234")
    assert resolve_secret_ref("env:PVE_SECRET") == "s3cr3t-value-1234"
    (tmp_path / "t").write_text("from-a-file-5678\n")
    assert resolve_secret_ref(f"file:{tmp_path / 't'}") == "from-a-file-5678"
    with pytest.raises(ProxmoxError, match=r"\$NOPE is not set"):
        resolve_secret_ref("env:NOPE")
    with pytest.raises(ProxmoxError, match="only env: and file: references"):
        resolve_secret_ref("vault:mts1b/deploy#proxmox")


def test_plan_live_and_apply_commands(node: Node, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from mts1b_deploy.cli import app
    from typer.testing import CliRunner

    inventory = tmp_path / "inv.yaml"
    port = node.inv.proxmox.api_url.rsplit(":", 1)[1]
    inventory.write_text(EXAMPLE.read_text().replace("https://pve1.lan:8006",
                                                     f"https://127.0.0.1:{port}"))
    node.standin.task_polls = 0  # the command polls at its real pace; tasks end at once here
    monkeypatch.setenv("PROXMOX_TOKEN_SECRET", node.secret)
    monkeypatch.setenv("MTS_PROXMOX_CACERT", str(node.ca))
    runner = CliRunner()
    plan = runner.invoke(app, ["plan", str(inventory), "--live"])
    assert plan.exit_code == 0, plan.output
    assert plan.stdout.startswith("+ create CT 2001 (nats)\n> start CT 2001 (nats)\n")
    applied = runner.invoke(app, ["apply", str(inventory)])
    assert applied.exit_code == 0, applied.output
    assert "> start CT 2008 (operations)" in applied.stdout
    assert node.secret not in plan.stdout + applied.stdout
    again = runner.invoke(app, ["plan", str(inventory), "--live"])
    assert again.stdout.splitlines()[0].startswith("! CT 2001 (nats) needs root@pam")
