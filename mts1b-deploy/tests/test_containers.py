"""A release installed inside Proxmox containers over SSH: ``mts1b-deploy push`` against the
node stand-in (:mod:`mts1b_deploy.nodestandin`: a real OpenSSH server from Debian's
openssh-server with a ``pct`` that stands in for Proxmox's, containers being folders - not a
node). The release is built here, pushed with ``pct push``, checked and installed with
``pct exec`` (``pip --no-index --require-hashes`` in the container), made current, and the
service's unit restarted; a tampered wheel is refused before anything changes. Skipped, with
the reason, without sshd, root or the workspace checkout."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from mts1b_deploy.cli import app
from mts1b_deploy.local import LocalTarget, ReleaseRequest
from mts1b_deploy.nodessh import NodeShellError
from mts1b_deploy.nodestandin import SshNodeStandIn, why_not
from typer.testing import CliRunner

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


def test_push_installs_the_release_in_the_container(node: SshNodeStandIn,
                                                   foundation_wheelhouse: Path,
                                                   tmp_path: Path) -> None:
    staging = LocalTarget(tmp_path / "staging")
    staging.install(ReleaseRequest(repo=REPO, libraries=("mts1b-foundation",),
                                   wheelhouse=foundation_wheelhouse, sha="a" * 40,
                                   config={"oms.env": "MTS_SERVICE=oms\n"}))
    data = yaml.safe_load(EXAMPLE.read_text())
    data["nodes"][0].update(ssh_host="127.0.0.1", ssh_port=node.port,
                            ssh_user=node.shell().user)
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(data))
    ct = node.add_container(2004)  # the oms container of the example inventory
    push = ["push", "oms", "--inventory", str(inventory), "--root", str(staging.root),
            "--ssh-key", str(node.home / "client_ed25519"),
            "--known-hosts", str(node.home / "known_hosts")]
    runner = CliRunner()

    delivery = tmp_path / "oms.json"
    delivery.write_text('{"role_id": "r", "wrapped_secret_id": "hvs.not-a-real-one"}')
    done = runner.invoke(app, [*push, "--delivery", str(delivery)])
    assert done.exit_code == 0, (done.output, done.exception)
    pushed = ct / "etc" / "mts1b" / "vault-delivery.json"
    assert pushed.read_text() == delivery.read_text() and pushed.stat().st_mode & 0o777 == 0o600
    assert "hvs.not-a-real-one" not in done.output
    assert "CT 2004: release 1-aaaaaaaaaaaa pushed" in done.stdout
    assert "CT 2004: release 1-aaaaaaaaaaaa installed; current is 1-aaaaaaaaaaaa" in done.stdout
    assert "CT 2004: mts1b-oms.service restarted" in done.stdout
    opt = ct / "opt" / "mts"
    assert os.readlink(opt / "current") == "releases/1-aaaaaaaaaaaa"
    release = opt / "releases" / "1-aaaaaaaaaaaa"
    assert (release / "release.json").is_file() and (release / "config" / "oms.env").is_file()
    assert not list((opt / "incoming").iterdir())
    imported = node.shell().pct_exec(2004, [
        "/opt/mts/current/venv/bin/python", "-c",
        "import mts1b_foundation, os; print(os.path.realpath(mts1b_foundation.__file__))"])
    assert imported.startswith("/opt/mts/releases/1-aaaaaaaaaaaa/venv/lib/python3")
    assert (ct / "systemctl.log").read_text() == "restart mts1b-oms.service\n"

    again = runner.invoke(app, [*push, "--no-restart"])  # idempotent: nothing reinstalled
    assert again.exit_code == 0, again.output
    assert "release 1-aaaaaaaaaaaa was installed already" in again.stdout
    assert (ct / "systemctl.log").read_text().count("restart") == 1

    # a wheel changed after the build: refused in the container, current untouched
    second = staging.install(ReleaseRequest(repo=REPO, libraries=("mts1b-foundation",),
                                            wheelhouse=foundation_wheelhouse, sha="b" * 40))
    wheel = next((staging.releases / second.directory / "wheels").glob("pydantic_core-*.whl"))
    wheel.write_bytes(wheel.read_bytes() + b"tampered")
    failed = runner.invoke(app, push)
    assert failed.exit_code != 0
    assert isinstance(failed.exception, NodeShellError)
    assert "installing 2-bbbbbbbbbbbb in CT 2004 failed" in failed.exception.message
    assert "computed checksum did NOT match" in failed.exception.message
    assert os.readlink(opt / "current") == "releases/1-aaaaaaaaaaaa"
    assert not (opt / "releases" / "2-bbbbbbbbbbbb").exists()

    missing = runner.invoke(app, [*push[:1], "treasury", *push[2:]])  # CT 2007 does not exist
    assert isinstance(missing.exception, NodeShellError)
    assert "'nodes/standin/lxc/2007.conf' does not exist" in missing.exception.message
