"""Running documented commands in fresh virtualenvs, and what to read back from them.

Each command runs as written (split as a shell would, no shell involved) in a virtualenv made for
it with ``uv venv --seed`` (pip included; uv makes it in well under a second, where ``python -m
venv`` takes seconds). ``pip``, ``pytest`` and every other program are taken from that
virtualenv's ``bin/`` only, so a tool installed elsewhere can never answer for a missing one.

For the CONTRIBUTING routes, which use an index, pip writes a verbose log (``PIP_LOG``), read
afterwards to prove that pip never asked an index about an ``mts1b-*`` name. For the wheelhouse
installs pip's own configuration is switched off (``PIP_CONFIG_FILE=/dev/null``, no ``PIP_*``
variables), as on a fresh machine: a ``find-links`` or extra index configured here must not make
an incomplete ``dist/`` look complete. They write no log: the command's own ``--no-index``
(required by the static checks) is what keeps pip off every index, and the debug log of a
route's install (about 100,000 lines) cost a fifth to a third of pip's time (6.8 to 7.5 s against
5.1 to 5.6 s for the foundation route, alternating, at load 1.5).

pip is told not to write bytecode caches (``PIP_NO_COMPILE``, a setting of pip's, not a word of
the documented command): compiling every installed module was most of pip's time (the
backtester's README install took 19.9 s and 22.0 s with bytecode, 5.3 s and 7.1 s without, back to
back at load 1.5 to 2.4, and its site-packages 774 MiB instead of 638), and a cache changes
nothing that is checked; the modules a test or the import probe loads are compiled as Python
imports them. Install sizes are therefore measured without bytecode (``.pyc`` files are not
counted even where a wheel ships them): what a user's disk holds on top of that depends on the
modules they import.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from tools.repocheck.interpreters import Interpreter

# Executables of servers: none may be installed by a library's documented install.
SERVER_EXECUTABLES = ("postgres", "postmaster", "pg_ctl", "initdb", "pg_ctlcluster",
                      "nats-server", "bao", "openbao", "vault")

# In the clean virtualenv: every distribution with its files' total size (bytecode not counted),
# requirements, where it came from, and any installed file named like a server executable
# (argv[1]: JSON list of names).
INSTALLED_PROBE = r"""
import importlib.metadata as md, json, os, platform, sys
servers = set(json.loads(sys.argv[1]))
dists = []
for d in md.distributions():
    size, found = 0, []
    for f in d.files or []:
        path = d.locate_file(f)
        try:
            if not str(f).endswith(".pyc"):
                size += os.stat(path).st_size
        except OSError:
            continue
        base = os.path.basename(str(f)).lower()
        if base.endswith(".exe"):
            base = base[:-4]
        if base in servers:
            found.append(str(f))
    direct = d.read_text("direct_url.json")
    dists.append({"name": d.metadata["Name"], "version": d.version, "size": size,
                  "requires": d.requires or [], "servers": found,
                  "direct_url": json.loads(direct) if direct else None})
impl = sys.implementation
env = {"implementation_name": impl.name, "os_name": os.name,
       "implementation_version": "%d.%d.%d" % impl.version[:3],
       "platform_machine": platform.machine(), "platform_release": platform.release(),
       "platform_system": platform.system(), "platform_version": platform.version(),
       "python_full_version": platform.python_version(),
       "platform_python_implementation": platform.python_implementation(),
       "python_version": "%d.%d" % sys.version_info[:2], "sys_platform": sys.platform}
print(json.dumps({"dists": dists, "env": env}))
"""

# Import the package and every submodule (``__main__`` excluded); print a JSON report.
IMPORT_PROBE = r"""
import importlib, json, pkgutil, sys
name = sys.argv[1]
report = {"file": None, "modules": 0, "failed": []}
try:
    package = importlib.import_module(name)
except Exception as exc:
    report["failed"].append([name, type(exc).__name__, str(exc), getattr(exc, "name", None)])
else:
    report["file"] = package.__file__
    def onerror(mod):
        exc = sys.exc_info()[1]
        report["failed"].append([mod, type(exc).__name__, str(exc), getattr(exc, "name", None)])
    for info in pkgutil.walk_packages(package.__path__, name + ".", onerror=onerror):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue
        try:
            importlib.import_module(info.name)
            report["modules"] += 1
        except Exception as exc:
            report["failed"].append(
                [info.name, type(exc).__name__, str(exc), getattr(exc, "name", None)])
print(json.dumps(report))
"""

INDEX_PAGE = re.compile(r"(?:Fetching project page and analyzing links|Getting page):? (\S+)")
LEAKING = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "UV_PROJECT_ENVIRONMENT", "CONDA_PREFIX",
           "PYTHONSTARTUP", "PYTHONUSERBASE", "PYTEST_ADDOPTS", "PYTEST_PLUGINS")


def tail(proc: subprocess.CompletedProcess[str], lines: int = 15) -> str:
    text = [line for line in (proc.stdout + proc.stderr).strip().splitlines()
            if "is ignored: it is neither a file nor a directory" not in line]
    return "\n    ".join(text[-lines:])


@dataclass
class Venv:
    """A fresh virtualenv and the environment its commands run in."""

    path: Path
    interpreter: Interpreter
    isolated_pip: bool
    pip_log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.pip_log = self.path.parent / f"{self.path.name}-pip.log"

    @property
    def bin(self) -> Path:
        return self.path / ("Scripts" if os.name == "nt" else "bin")

    @property
    def python(self) -> Path:
        return self.bin / ("python.exe" if os.name == "nt" else "python")

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in LEAKING}
        if self.isolated_pip:
            env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
            env["PIP_CONFIG_FILE"] = os.devnull
        else:
            env["PIP_LOG"] = str(self.pip_log)
        # PIP_NO_COMPILE: pip reads a negative flag's variable as the value of the positive
        # option, so "0" is compile = False, i.e. --no-compile (verified: no .pyc is written).
        env.update(VIRTUAL_ENV=str(self.path), PIP_DISABLE_PIP_VERSION_CHECK="1",
                   PIP_NO_INPUT="1", PIP_NO_COMPILE="0",
                   PATH=str(self.bin) + os.pathsep + env.get("PATH", ""))
        return env

    def index_pages(self) -> list[str]:
        """The index pages pip fetched so far (its log's "Getting page" lines; a virtualenv
        with pip's configuration switched off keeps no log)."""
        try:
            text = self.pip_log.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        return sorted(set(INDEX_PAGE.findall(text)))

    def mts1b_pages(self) -> list[str]:
        """The index pages of ``mts1b-*`` names pip asked for: each one is a squatting risk."""
        return [url for url in self.index_pages()
                if canonicalize_name(url.rstrip("/").rsplit("/", 1)[-1]).startswith("mts1b")]


def make_venv(uv: str, interpreter: Interpreter, path: Path, *, isolated_pip: bool
              ) -> tuple[Venv | None, str]:
    """A seeded virtualenv for ``interpreter`` at ``path``; (None, why) when uv fails."""
    env = {k: v for k, v in os.environ.items() if k not in LEAKING}
    proc = subprocess.run([uv, "venv", "--seed", "--quiet", "--python",  # noqa: S603
                           interpreter.executable, str(path)],
                          capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        return None, f"uv venv --seed --python {interpreter.executable} failed:\n    {tail(proc)}"
    return Venv(path, interpreter, isolated_pip), ""


@dataclass
class Ran:
    """One command's outcome: how long it took and what it printed."""

    argv: tuple[str, ...]
    proc: subprocess.CompletedProcess[str]
    seconds: float

    @property
    def ok(self) -> bool:
        return self.proc.returncode == 0


def run_in(venv: Venv, argv: Sequence[str], cwd: Path, timeout: float = 1800) -> Ran:
    """Run ``argv`` with its program taken from the virtualenv's bin/ only."""
    started = time.monotonic()
    program = shutil.which(argv[0], path=str(venv.bin))
    if program is None:
        proc = subprocess.CompletedProcess(list(argv), 127, "", f"{argv[0]}: not installed in "
                                                                 f"the virtualenv {venv.path}")
        return Ran(tuple(argv), proc, 0.0)
    try:
        proc = subprocess.run([program, *argv[1:]], cwd=cwd, env=venv.env(),  # noqa: S603
                              capture_output=True, text=True, check=False, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        proc = subprocess.CompletedProcess(list(argv), 124, out, f"timed out after {timeout}s")
    return Ran(tuple(argv), proc, time.monotonic() - started)


@dataclass(frozen=True)
class Installed:
    """One distribution in a virtualenv."""

    name: str
    version: str
    size: int
    requires: tuple[str, ...]
    servers: tuple[str, ...]
    direct_url: Mapping[str, Any] | None


@dataclass
class Inventory:
    """What a virtualenv holds, and the marker values of its Python."""

    dists: dict[str, Installed]
    env: dict[str, str]


def inventory(venv: Venv) -> tuple[Inventory | None, str]:
    """Ask the virtualenv's Python what is installed (see INSTALLED_PROBE)."""
    proc = subprocess.run([str(venv.python), "-I", "-c", INSTALLED_PROBE,  # noqa: S603
                           json.dumps(SERVER_EXECUTABLES)], cwd=venv.path.parent,
                          capture_output=True, text=True, check=False, env=venv.env())
    try:
        data = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return None, f"inventory probe failed:\n    {tail(proc)}"
    dists = {
        str(canonicalize_name(d["name"])): Installed(
            str(canonicalize_name(d["name"])), d["version"], int(d["size"]),
            tuple(d["requires"]), tuple(d["servers"]), d["direct_url"])
        for d in data["dists"]
    }
    return Inventory(dists, dict(data["env"])), ""


def import_all(venv: Venv, package: str) -> tuple[dict[str, Any] | None, str]:
    """Import ``package`` and every submodule in isolated mode from a neutral folder."""
    proc = subprocess.run([str(venv.python), "-I", "-c", IMPORT_PROBE, package],  # noqa: S603
                          cwd=venv.path.parent, capture_output=True, text=True, check=False,
                          env=venv.env())
    try:
        return dict(json.loads(proc.stdout.strip().splitlines()[-1])), ""
    except (IndexError, json.JSONDecodeError):
        return None, f"import probe failed:\n    {tail(proc)}"


def dependency_path(
    dists: Mapping[str, Installed], start: Requirement, target: str, env: Mapping[str, str]
) -> list[str]:
    """Who pulls ``target`` in: the chain of requirements from ``start`` (empty if none).

    Follows each installed distribution's Requires-Dist whose marker holds, with the extras
    asked for along the way, so the report names the requirement to change.
    """
    queue: list[tuple[str, frozenset[str], list[str]]] = [
        (str(canonicalize_name(start.name)), frozenset(start.extras), [str(start)])]
    seen: set[tuple[str, frozenset[str]]] = set()
    while queue:
        name, extras, path = queue.pop(0)
        if name == target:
            return path
        if (name, extras) in seen or name not in dists:
            continue
        seen.add((name, extras))
        for text in dists[name].requires:
            try:
                req = Requirement(text)
            except InvalidRequirement:
                continue
            if req.marker and not any(_holds(req.marker, env, extra)
                                      for extra in ("", *sorted(extras))):
                continue
            queue.append((str(canonicalize_name(req.name)), frozenset(req.extras),
                          [*path, f"{name} requires {req}"]))
    return []


def _holds(marker: Marker, env: Mapping[str, str], extra: str) -> bool:
    return bool(marker.evaluate({**env, "extra": extra}))
