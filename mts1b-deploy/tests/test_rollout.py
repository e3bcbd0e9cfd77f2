"""A rollout on the local target for real: processes started from the current release by the
supervisor, health gates on the process table and on NATS heartbeats, and the automatic
rollback when a gate fails - the release before runs again. Needs NATS (skipped without)."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path

import pytest
from mts1b_deploy.gates import Heartbeats, KillSwitchUnchanged, ProcessesAlive
from mts1b_deploy.local import LocalTarget, ReleaseRequest
from mts1b_deploy.rollout import GateFailed, rollout
from mts1b_deploy.supervisor import ServiceSpec, Supervisor

REPO = Path(__file__).resolve().parents[2]
NATS_URL = os.environ.get("MTS_NATS_URL", "nats://127.0.0.1:4222")

pytestmark = pytest.mark.integration

# The "service" of the test releases: beats on NATS every 0.2 s until SIGTERM.
HEALTHY = """
import asyncio, datetime as dt, os, signal
import nats
from mts1b_foundation import Heartbeat

async def main():
    nc = await nats.connect(os.environ["MTS_NATS_URL"])
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    name, started = os.environ["MTS_SERVICE"], dt.datetime.now(dt.UTC)
    subject = os.environ["MTS_NATS_NAMESPACE"] + ".mts.v1.operations.heartbeats." + name
    while not stop.is_set():
        beat = Heartbeat(service=name, interval_s=0.2, started_at=started,
                         ts=dt.datetime.now(dt.UTC))
        await nc.publish(subject, beat.to_json())
        try:
            await asyncio.wait_for(stop.wait(), 0.2)
        except TimeoutError:
            pass
    await nc.close()

asyncio.run(main())
"""
CRASHES = "raise SystemExit('this release cannot read its config')"
# A release whose service halts trading as it starts (then runs and beats as a healthy one).
TRIPS = """
import asyncio, datetime as dt, os
import nats
from mts1b_foundation import TradingStateChange

async def trip():
    nc = await nats.connect(os.environ["MTS_NATS_URL"])
    change = TradingStateChange(scope="global", state="HALTED", actor="oms",
                                reason="startup check failed", ts=dt.datetime.now(dt.UTC))
    await nc.publish(os.environ["MTS_NATS_NAMESPACE"] + ".mts.v1.oms.state.changed",
                     change.to_json())
    await nc.flush()
    await nc.close()

asyncio.run(trip())
""" + HEALTHY
SILENT = "import time\ntime.sleep(120)"


async def _nats_up() -> bool:
    import nats

    try:
        nc = await nats.connect(NATS_URL, connect_timeout=2, max_reconnect_attempts=0)
    except Exception:
        return False
    await nc.close()
    return True


def test_gates_and_automatic_rollback(bus_wheelhouse: Path, tmp_path: Path) -> None:
    if not asyncio.run(_nats_up()):
        pytest.skip(f"NATS not reachable at {NATS_URL} (python3 dev.py test starts one)")
    namespace = f"dep{uuid.uuid4().hex[:10]}"
    target = LocalTarget(tmp_path / "mts")
    supervisor = Supervisor(target.root, stop_timeout=5)
    gates = [ProcessesAlive(settle_s=1.0),
             Heartbeats(NATS_URL, ["oms"], namespace=namespace, timeout_s=5)]

    def release(sha: str, script: str) -> ReleaseRequest:
        spec = ServiceSpec(("{release}/venv/bin/python", "-c", script),
                           {"MTS_NATS_URL": NATS_URL, "MTS_NATS_NAMESPACE": namespace})
        return ReleaseRequest(repo=REPO, libraries=("mts1b-platform[bus]",),
                              wheelhouse=bus_wheelhouse, sha=sha, services={"oms": spec})

    lines: list[str] = []
    try:
        first = rollout(target, release("a" * 40, HEALTHY), supervisor, gates, lines.append)
        assert first.generation == 1
        assert "gate heartbeats: ok" in lines
        assert supervisor.running() == {"oms": True}

        with pytest.raises(GateFailed, match=r"generation 2 failed the gate 'processes alive' "
                                             r"\(oms exited within 1 s .*rolled back to "
                                             r"generation 1 \(aaaaaaaaaaaa\), which runs again"):
            rollout(target, release("b" * 40, CRASHES), supervisor, gates, lines.append)
        assert os.readlink(target.current_link) == "releases/1-aaaaaaaaaaaa"
        assert supervisor.running() == {"oms": True}
        assert gates[1].check(supervisor) is None  # generation 1 beats again
        assert "this release cannot read its config" in (target.root / "logs" /
                                                         "oms.log").read_text()
        from mts1b_deploy.cli import app
        from typer.testing import CliRunner

        shown = CliRunner().invoke(app, ["logs", "oms", "--root", str(target.root), "--lines",
                                         "3"])
        assert shown.exit_code == 0 and "this release cannot read its config" in shown.stdout
        assert len(shown.stdout.splitlines()) <= 3

        with pytest.raises(GateFailed, match=r"gate 'heartbeats' \(no heartbeat from oms on "
                                             rf"{namespace}\.mts\.v1\.operations\.heartbeats"):
            rollout(target, release("c" * 40, SILENT), supervisor, gates, lines.append)
        assert os.readlink(target.current_link) == "releases/1-aaaaaaaaaaaa"
        reasons = [json.loads(line)["reason"] for line in
                   (target.root / "generations.jsonl").read_text().splitlines()
                   if '"switch"' in line]
        assert reasons[0] == "install" and reasons[2].startswith(
            "automatic rollback: gate processes alive failed: oms exited")
        assert reasons[4].startswith("automatic rollback: gate heartbeats failed")
        assert [k.generation.generation for k in target.kept()] == [3, 2, 1]
    finally:
        supervisor.stop()
    assert supervisor.running() == {}


def test_install_start_status_rollback_restart_stop_commands(bus_wheelhouse: Path,
                                                              tmp_path: Path) -> None:
    from mts1b_deploy.cli import app
    from typer.testing import CliRunner

    if not asyncio.run(_nats_up()):
        pytest.skip(f"NATS not reachable at {NATS_URL} (python3 dev.py test starts one)")
    namespace = f"dep{uuid.uuid4().hex[:10]}"
    root = tmp_path / "mts"
    runner = CliRunner()
    services = tmp_path / "services.json"
    env = {"MTS_NATS_URL": NATS_URL, "MTS_NATS_NAMESPACE": namespace}
    try:
        for sha in ("d" * 40, "e" * 40):
            services.write_text(json.dumps({"oms": {"argv": ["{release}/venv/bin/python", "-c",
                                                             HEALTHY], "env": env}}))
            done = runner.invoke(app, [
                "install", "--root", str(root), "--library", "mts1b-platform[bus]", "--repo",
                str(REPO), "--wheelhouse", str(bus_wheelhouse), "--sha", sha, "--services",
                str(services), "--start", "--settle", "0.5", "--heartbeat", "oms",
                "--nats-url", NATS_URL, "--namespace", namespace])
            assert done.exit_code == 0, done.output
            assert "gate heartbeats: ok" in done.stdout
        status = runner.invoke(app, ["status", "--root", str(root)])
        assert status.stdout.startswith("current: generation 2 (eeeeeeeeeeee)")
        assert "  oms: running\n" in status.stdout
        back = runner.invoke(app, ["rollback", "--root", str(root), "--to", "1", "--restart"])
        assert back.exit_code == 0, back.output
        assert "started oms (pid" in back.stdout and "generation 1)" in back.stdout
    finally:
        stopped = runner.invoke(app, ["stop", "--root", str(root)])
    assert "stopped oms" in stopped.stdout
    status = runner.invoke(app, ["status", "--root", str(root)])
    assert "no service started" in status.stdout


def test_a_release_that_trips_the_kill_switch_is_rolled_back(bus_wheelhouse: Path,
                                                             tmp_path: Path) -> None:
    if not asyncio.run(_nats_up()):
        pytest.skip(f"NATS not reachable at {NATS_URL} (python3 dev.py test starts one)")
    namespace = f"dep{uuid.uuid4().hex[:10]}"
    target = LocalTarget(tmp_path / "mts")
    supervisor = Supervisor(target.root, stop_timeout=5)
    # the heartbeat gate before it: TRIPS beats only after its trip is published, so the
    # kill switch gate checks once the trip is on the bus, however slow the start
    gates = [ProcessesAlive(settle_s=1.0), Heartbeats(NATS_URL, ["oms"], namespace=namespace,
                                                      timeout_s=20),
             KillSwitchUnchanged(NATS_URL, namespace)]
    env = {"MTS_NATS_URL": NATS_URL, "MTS_NATS_NAMESPACE": namespace}

    def release(sha: str, script: str) -> ReleaseRequest:
        spec = ServiceSpec(("{release}/venv/bin/python", "-c", script), env)
        return ReleaseRequest(repo=REPO, libraries=("mts1b-platform[bus]",),
                              wheelhouse=bus_wheelhouse, sha=sha, services={"oms": spec})

    try:
        rollout(target, release("1" * 40, HEALTHY), supervisor, gates)
        with pytest.raises(GateFailed, match=r"gate 'kill switch unchanged' \(the kill switch "
                                             r"changed during the deploy: global \* -> HALTED "
                                             r"by oms \(startup check failed\)\); rolled back "
                                             r"to generation 1"):
            rollout(target, release("2" * 40, TRIPS), supervisor, gates)
        assert os.readlink(target.current_link) == "releases/1-111111111111"
        assert supervisor.running() == {"oms": True}
    finally:
        supervisor.stop()
