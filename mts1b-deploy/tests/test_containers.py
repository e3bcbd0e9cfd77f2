"""A release installed inside Proxmox containers over SSH: ``mts1b-deploy push`` against the
node stand-in (:mod:`mts1b_deploy.nodestandin`: a real OpenSSH server from Debian's
openssh-server with a ``pct`` that stands in for Proxmox's, containers being folders - not a
node). The release is built here, pushed with ``pct push``, checked and installed with
``pct exec`` (``pip --no-index --require-hashes`` in the container), made current, and the
service's unit restarted; a tampered wheel is refused before anything changes; a failed gate
switches the container back. Skipped, with the reason, without sshd, root, NATS and
PostgreSQL, or the workspace checkout."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml
from mts1b_deploy.cli import app
from mts1b_deploy.history import read_history
from mts1b_deploy.local import LocalTarget, ReleaseRequest
from mts1b_deploy.nodessh import NodeShellError
from mts1b_deploy.nodestandin import SshNodeStandIn, why_not
from mts1b_deploy.rollout import GateFailed
from typer.testing import CliRunner

if TYPE_CHECKING:
    from conftest import Servers

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
EXAMPLE = Path(__file__).parent / "data" / "inventory.yaml"


@pytest.fixture
def node(tmp_path: Path) -> Iterator[SshNodeStandIn]:
    why = why_not()
    if why:
        pytest.skip(f"no SSH node stand-in: {why}")
    standin = SshNodeStandIn(tmp_path / "node")
    standin.start()
    try:
        yield standin
    finally:
        standin.stop()


def test_push_installs_the_release_in_the_container(node: SshNodeStandIn, servers: Servers,
                                                   foundation_wheelhouse: Path,
                                                   tmp_path: Path) -> None:
    staging = LocalTarget(tmp_path / "staging")

    def release(sha: str) -> str:
        return staging.install(ReleaseRequest(
            repo=REPO, libraries=("mts1b-foundation",), wheelhouse=foundation_wheelhouse,
            sha=sha, config={"treasury.env": "MTS_SERVICE=treasury\n"})).directory

    first = release("a" * 40)
    data = yaml.safe_load(EXAMPLE.read_text())
    data["nodes"][0].update(ssh_host="127.0.0.1", ssh_port=node.port,
                            ssh_user=node.shell().user)
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(data))
    ct = node.add_container(2007)  # the treasury's container in the example inventory
    push = ["push", "treasury", "--inventory", str(inventory), "--root", str(staging.root),
            "--ssh-key", str(node.home / "client_ed25519"),
            "--known-hosts", str(node.home / "known_hosts")]
    runner = CliRunner()

    delivery = tmp_path / "treasury.json"
    delivery.write_text('{"role_id": "r", "wrapped_secret_id": "hvs.not-a-real-one"}')
    done = runner.invoke(app, [*push, "--delivery", str(delivery)])
    assert done.exit_code == 0, (done.output, done.exception)
    pushed = ct / "etc" / "mts1b" / "vault-delivery.json"
    assert pushed.read_text() == delivery.read_text() and pushed.stat().st_mode & 0o777 == 0o600
    assert "hvs.not-a-real-one" not in done.output
    assert f"CT 2007: release {first} pushed" in done.stdout
    assert f"CT 2007: release {first} installed; current is {first}" in done.stdout
    assert "CT 2007: mts1b-treasury.service restarted" in done.stdout
    opt = ct / "opt" / "mts"
    assert os.readlink(opt / "current") == f"releases/{first}"
    assert (opt / "releases" / first / "config" / "treasury.env").is_file()
    assert not list((opt / "incoming").iterdir())
    imported = node.shell().pct_exec(2007, [
        "/opt/mts/current/venv/bin/python", "-c",
        "import mts1b_foundation, os; print(os.path.realpath(mts1b_foundation.__file__))"])
    assert imported.startswith(f"/opt/mts/releases/{first}/venv/lib/python3")
    assert (ct / "systemctl.log").read_text() == "restart mts1b-treasury.service\n"

    again = runner.invoke(app, [*push, "--no-restart"])  # idempotent: nothing pushed again
    assert again.exit_code == 0, again.output
    assert f"release {first} was installed already" in again.stdout
    assert "pushed" not in again.stdout

    # a wheel changed after the build: refused in the container, current untouched
    second = release("b" * 40)
    wheel = next((staging.releases / second / "wheels").glob("pydantic_core-*.whl"))
    good = wheel.read_bytes()
    wheel.write_bytes(good + b"tampered")
    failed = runner.invoke(app, push)
    assert isinstance(failed.exception, NodeShellError), failed.output
    assert f"installing {second} in CT 2007 failed" in failed.exception.message
    assert "computed checksum did NOT match" in failed.exception.message
    assert os.readlink(opt / "current") == f"releases/{first}"
    assert not (opt / "releases" / second).exists()

    # the intact release behind a gate that fails (the stand-in's systemctl starts nothing,
    # so no heartbeat comes): installed, then the container goes back to the first
    wheel.write_bytes(good)
    gated = runner.invoke(app, [*push, "--heartbeat", "mts1b-treasury", "--gate-timeout", "1",
                                "--nats-url", servers.nats_url,
                                "--namespace", servers.namespace("push")])
    assert isinstance(gated.exception, GateFailed), gated.output
    assert gated.exception.message.startswith(
        f"{second} failed the gate 'heartbeats' in CT 2007 (no heartbeat from mts1b-treasury")
    assert os.readlink(opt / "current") == f"releases/{first}"
    assert (ct / "systemctl.log").read_text().count("restart") == 3
    generations, switches = read_history(opt)  # the container's history, the local format
    assert [g.directory for g in generations] == [first, second]
    assert [s.reason.split(":")[0] for s in switches] == [
        "push", "push", "push", "automatic rollback"]
    assert [k.generation.directory for k in LocalTarget(opt).kept()] == [second, first]

    # a release installed there already: pushing it is a switch, no transfer (a rollback)
    forward = runner.invoke(app, [*push, "--generation", "2", "--no-restart"])
    assert forward.exit_code == 0, forward.output
    assert "pushed" not in forward.stdout and os.readlink(opt / "current") == f"releases/{second}"

    missing = runner.invoke(app, [*push[:1], "research", *push[2:]])  # no CT 2006 there
    assert isinstance(missing.exception, NodeShellError)
    assert "'nodes/standin/lxc/2006.conf' does not exist" in missing.exception.message
