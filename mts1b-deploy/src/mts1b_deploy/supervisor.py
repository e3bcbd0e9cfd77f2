"""The local target's supervisor: the current release's services as processes on this machine.

Why a small supervisor of our own and not systemd here: CI machines and developers' laptops
have no systemd to give units to, and the local target exists so that install, switch, health
gates and rollback run for real in CI. Each service is one process started from the release
``current`` points at, with the command and environment its release recorded in
``config/services.json``::

    {"oms": {"argv": ["{release}/venv/bin/mts", "mts1b-oms", "serve"], "env": {...}}}

``{release}`` is the release's folder. A process runs in its own session (its own process
group, so a stop reaches its children), logs to ``<root>/logs/<service>.log`` and is recorded
in ``<root>/run/<service>.json`` (pid, generation); a stop sends SIGTERM to the group - only
when the recorded pid still runs a command of this target's releases, never a reused pid -
waits, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mts1b_deploy.errors import ReleaseError
from mts1b_deploy.files import write_atomic

__all__ = ["SERVICES_FILE", "ServiceSpec", "Supervisor", "read_services", "services_json"]

SERVICES_FILE = "services.json"
Log = Callable[[str], None]


@dataclass(frozen=True)
class ServiceSpec:
    """How a release runs one service: its command (``{release}`` is its folder) and env."""

    argv: tuple[str, ...]
    env: Mapping[str, str]


def services_json(specs: Mapping[str, ServiceSpec]) -> str:
    """The ``config/services.json`` text of ``specs``."""
    return json.dumps({name: {"argv": list(s.argv), "env": dict(s.env)}
                       for name, s in sorted(specs.items())}, indent=1) + "\n"


def read_services(path: Path) -> dict[str, ServiceSpec]:
    """The services of a JSON file shaped like ``config/services.json``; errors name the
    service and the field."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReleaseError(f"services file {path}: cannot read it as JSON "
                           f"({type(exc).__name__})", path=str(path)) from None
    if not isinstance(data, dict):
        raise ReleaseError(f"services file {path}: expected an object of services",
                           path=str(path))
    specs: dict[str, ServiceSpec] = {}
    for name, item in data.items():
        argv = item.get("argv") if isinstance(item, dict) else None
        env = item.get("env", {}) if isinstance(item, dict) else None
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise ReleaseError(f"services file {path}: {name}.argv must be a non-empty list "
                               f"of strings (got {argv!r})", field=f"{name}.argv")
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise ReleaseError(f"services file {path}: {name}.env must map names to strings",
                               field=f"{name}.env")
        specs[str(name)] = ServiceSpec(tuple(argv), {str(k): v for k, v in env.items()})
    return specs


class Supervisor:
    """Starts and stops the services of the release ``<root>/current`` points at."""

    def __init__(self, root: Path, stop_timeout: float = 15.0) -> None:
        self.root = root.resolve()  # compared with the resolved release paths in cmdlines
        self.run_dir = root / "run"
        self.logs = root / "logs"
        self.stop_timeout = stop_timeout
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    def _release(self) -> Path:
        link = self.root / "current"
        if not link.is_symlink():
            raise ReleaseError(f"{link} does not exist: install a release first")
        return link.resolve()

    def specs(self) -> dict[str, ServiceSpec]:
        """The services of the current release (none when it records none)."""
        path = self._release() / "config" / SERVICES_FILE
        if not path.exists():
            return {}
        data = json.loads(path.read_text(encoding="utf-8"))
        return {name: ServiceSpec(tuple(s["argv"]), dict(s.get("env", {})))
                for name, s in data.items()}

    def start(self, log: Log = lambda _: None) -> dict[str, int]:
        """Start every service of the current release; returns ``{service: pid}``."""
        release = self._release()
        generation = int(release.name.split("-", 1)[0])
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        pids: dict[str, int] = {}
        for name, spec in self.specs().items():
            argv = [a.replace("{release}", str(release)) for a in spec.argv]
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.root),
                   "MTS_SERVICE": name, **spec.env}
            with (self.logs / f"{name}.log").open("ab") as out:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,  # noqa: S603
                                        stderr=subprocess.STDOUT, env=env, cwd=release,
                                        start_new_session=True)
            self._children[name] = proc
            write_atomic(self.run_dir / f"{name}.json",
                         json.dumps({"pid": proc.pid, "generation": generation}) + "\n")
            pids[name] = proc.pid
            log(f"started {name} (pid {proc.pid}, generation {generation})")
        return pids

    def running(self) -> dict[str, bool]:
        """``{service: alive}`` of every recorded service."""
        out: dict[str, bool] = {}
        for path in sorted(self.run_dir.glob("*.json")) if self.run_dir.exists() else []:
            name = path.stem
            pid = int(json.loads(path.read_text(encoding="utf-8"))["pid"])
            child = self._children.get(name)
            out[name] = child.poll() is None if child is not None and child.pid == pid \
                else self._ours(pid)
        return out

    def _ours(self, pid: int) -> bool:
        """Whether ``pid`` runs (not a zombie) a command from this target's releases."""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state != "Z" and str(self.root / "releases") in cmdline

    def stop(self, log: Log = lambda _: None) -> None:
        """Stop every recorded service: SIGTERM to its group, then SIGKILL after the timeout."""
        if not self.run_dir.exists():
            return
        for path in sorted(self.run_dir.glob("*.json")):
            name = path.stem
            pid = int(json.loads(path.read_text(encoding="utf-8"))["pid"])
            child = self._children.pop(name, None)
            alive = (child.poll() is None) if child is not None and child.pid == pid \
                else self._ours(pid)
            if alive:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGTERM)
                self._wait(pid, child)
                log(f"stopped {name} (pid {pid})")
            elif child is not None:
                child.wait()
            path.unlink()

    def _wait(self, pid: int, child: subprocess.Popen[bytes] | None) -> None:
        deadline = time.monotonic() + self.stop_timeout
        while time.monotonic() < deadline:
            if child is not None and child.pid == pid:
                if child.poll() is not None:
                    return
            elif not self._ours(pid):
                return
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        if child is not None:
            child.wait()
