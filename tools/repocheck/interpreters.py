"""The CPython interpreters >= 3.11 on this machine: one per minor version.

repocheck test-runs the libraries on each Python it finds and only install-checks (every
dependency has a wheel) the supported versions it does not find. Where to look: the running
interpreter first (it is the one the workspace uses), then ``python3.N`` on PATH, then pyenv's
``versions/*/bin`` (pyenv's PATH shims answer only for the selected version, so the real binaries
are looked up too). Each candidate is asked for its version and real path; one that fails to
answer (a shim for an unselected version, a broken link) is skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

MIN_VERSION = (3, 11)
MAX_MINOR = 30  # python3.11 .. python3.30 on PATH
NAME = re.compile(r"^python3\.(\d+)$")
PROBE = ("import json, platform, sys; print(json.dumps({'impl': platform.python_implementation(),"
         " 'version': list(sys.version_info[:3]), 'executable': sys.executable,"
         " 'gil': not hasattr(sys, '_is_gil_enabled') or sys._is_gil_enabled()}))")


@dataclass(frozen=True)
class Interpreter:
    """One Python: ``version`` is "3.N", ``full`` "3.N.M", ``executable`` its real path."""

    version: str
    full: str
    executable: str


def _candidates(path: str | None, pyenv_root: Path | None) -> Iterable[str]:
    for minor in range(MIN_VERSION[1], MAX_MINOR + 1):
        found = shutil.which(f"python3.{minor}", path=path)
        if found:
            yield found
    if pyenv_root is not None:
        for binary in sorted((pyenv_root / "versions").glob("*/bin/python3.*")):
            if NAME.match(binary.name):
                yield str(binary)


def probe(executable: str) -> Interpreter | None:
    """Ask ``executable`` what it is; None unless it is a working CPython >= 3.11 with a GIL."""
    try:
        out = subprocess.run([executable, "-I", "-c", PROBE], capture_output=True,  # noqa: S603
                             text=True, timeout=30, check=False)
        info = json.loads(out.stdout) if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    if not isinstance(info, dict) or info.get("impl") != "CPython" or not info.get("gil"):
        return None
    major, minor, micro = info["version"]
    if (major, minor) < MIN_VERSION:
        return None
    return Interpreter(f"{major}.{minor}", f"{major}.{minor}.{micro}", str(info["executable"]))


def find_interpreters(
    path: str | None = None,
    pyenv_root: Path | None = None,
    running: str = sys.executable,
    explicit: Sequence[str] = (),
) -> list[Interpreter]:
    """The running interpreter first, then one per other minor version, sorted by version.

    ``explicit`` replaces the search (``--python`` of repocheck); ``path`` defaults to $PATH and
    ``pyenv_root`` to $PYENV_ROOT or ~/.pyenv.
    """
    if pyenv_root is None:
        pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    found: dict[str, Interpreter] = {}
    first = probe(running)
    if first:
        found[first.version] = first
    for candidate in explicit or _candidates(path, pyenv_root):
        if any(Path(i.executable) == Path(candidate) for i in found.values()):
            continue
        interpreter = probe(candidate)
        if interpreter and interpreter.version not in found:
            found[interpreter.version] = interpreter
    others = sorted((i for v, i in found.items() if first is None or v != first.version),
                    key=lambda i: tuple(int(p) for p in i.version.split(".")))
    return ([first] if first else []) + others
