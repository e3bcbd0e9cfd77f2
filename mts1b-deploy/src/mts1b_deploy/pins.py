"""The pins of a release: what ``uv.lock`` locks for the chosen libraries, with its hashes.

Why from the lock and not a fresh resolve: a release must install exactly what the tests ran
against. ``uv export --frozen --package ...`` lists the closure of the chosen workspace
libraries as the lock pins it (``name==version`` with every sha256 the lock knows, and the
environment marker), and the workspace members of that closure as ``-e ./<folder>`` lines.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from mts1b_deploy.errors import ReleaseError

__all__ = ["Closure", "Pin", "find_uv", "locked_closure", "parse_export"]


@dataclass(frozen=True)
class Pin:
    """One third-party requirement of the lock: name, version, marker and sha256 hashes."""

    name: str
    version: str
    marker: str
    hashes: frozenset[str]

    def applies(self) -> bool:
        """Whether the pin is for the running Python and platform."""
        return not self.marker or Marker(self.marker).evaluate()

    @property
    def line(self) -> str:
        """The pin as a requirements line with its hashes (for ``pip --require-hashes``)."""
        hashes = " ".join(f"--hash=sha256:{h}" for h in sorted(self.hashes))
        return f"{self.name}=={self.version} {hashes}"


@dataclass(frozen=True)
class Closure:
    """What a release installs: the workspace folders and the third-party pins."""

    members: tuple[str, ...]
    pins: tuple[Pin, ...]


def find_uv(root: Path) -> str:
    """``uv`` on PATH, else the one ``dev.py`` installs into ``.bootstrap/``."""
    found = shutil.which("uv")
    if found:
        return found
    local = root / ".bootstrap" / "bin" / "uv"
    if local.exists():
        return str(local)
    raise ReleaseError(f"uv is not on PATH nor in {root}/.bootstrap/bin: run python3 dev.py "
                       "wheels once (it installs uv), or install uv", root=str(root))


def parse_export(text: str) -> Closure:
    """The members and pins of ``uv export --format requirements-txt`` output."""
    members: list[str] = []
    pins: list[Pin] = []
    for entry in text.replace("\\\n", " ").splitlines():
        entry = entry.strip()
        if not entry or entry.startswith("#"):
            continue
        if entry.startswith("-e "):
            members.append(entry[3:].strip().removeprefix("./"))
            continue
        hashes = frozenset(re.findall(r"--hash=sha256:([0-9a-f]{64})", entry))
        requirement = re.split(r"\s--hash=", entry, maxsplit=1)[0].strip()
        try:
            req = Requirement(requirement)
        except InvalidRequirement as exc:
            raise ReleaseError(f"uv export line {entry[:120]!r}: {exc}") from None
        spec = list(req.specifier)
        if len(spec) != 1 or spec[0].operator != "==" or not hashes:
            raise ReleaseError(f"uv export line {entry[:120]!r} is not pinned with == and "
                               "hashes")
        pins.append(Pin(str(canonicalize_name(req.name)), spec[0].version,
                        str(req.marker) if req.marker else "", hashes))
    return Closure(tuple(members), tuple(pins))


def locked_closure(root: Path, libraries: tuple[str, ...], uv: str | None = None) -> Closure:
    """The closure of ``libraries`` (distribution names, with ``[extras]``) in ``root``'s
    ``uv.lock``, for the running Python; the lock is used as it is (``--frozen``)."""
    if not (root / "uv.lock").is_file():
        raise ReleaseError(f"{root} has no uv.lock: a release is built from a checkout",
                           root=str(root))
    argv = [uv or find_uv(root), "export", "--format", "requirements-txt", "--frozen",
            "--no-dev", "--no-header", "--no-annotate", "--quiet"]
    extras: set[str] = set()
    for spec in libraries:
        name, _, rest = spec.partition("[")
        argv += ["--package", name.strip()]
        extras |= {e.strip() for e in rest.rstrip("]").split(",") if e.strip()}
    for extra in sorted(extras):
        argv += ["--extra", extra]
    proc = subprocess.run(argv, cwd=root, capture_output=True, text=True, check=False)  # noqa: S603
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ReleaseError(f"uv export failed for {list(libraries)}: {' / '.join(tail)}",
                           libraries=list(libraries))
    closure = parse_export(proc.stdout)
    return Closure(closure.members, tuple(p for p in closure.pins if p.applies()))
