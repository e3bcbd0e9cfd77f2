"""A release's own wheelhouse: every wheel it installs, checked against the lock's hashes.

Why copy the wheels into the release: a release must install again later (a rollback on a
new machine, a rebuilt container) without any index and without ``dist/``, which the next
``python3 dev.py wheels`` replaces. Third-party wheels are taken only when their sha256 is one
the lock lists for that pin, and fit the running Python - or, for a pin the index has only as
an sdist, when the wheelhouse's ``.wheelhouse-built.json`` (written by ``python3 dev.py
wheels``) records that this very file (its sha256) was built from an sdist whose hash the lock
lists; the workspace libraries' wheels are hashed here. The ``requirements.txt`` written beside
them pins every file by its hash, so ``pip install --require-hashes --no-index`` installs these
exact bytes or nothing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.tags import sys_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from mts1b_deploy.errors import ReleaseError
from mts1b_deploy.pins import Closure

__all__ = ["BUILT_RECORD", "Wheel", "collect_wheels", "requirements_text", "sha256_of"]

BUILT_RECORD = ".wheelhouse-built.json"


@dataclass(frozen=True)
class Wheel:
    """One wheel of the release: distribution, version, file name and sha256."""

    name: str
    version: str
    file: str
    sha256: str


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _member_distribution(root: Path, folder: str) -> tuple[str, str]:
    project = tomllib.loads((root / folder / "pyproject.toml").read_text(encoding="utf-8"))
    return str(canonicalize_name(project["project"]["name"])), str(project["project"]["version"])


def collect_wheels(root: Path, closure: Closure, wheelhouse: Path, dest: Path) -> list[Wheel]:
    """Copy the wheel of every member and pin from ``wheelhouse`` to ``dest``, checked.

    Raises :class:`ReleaseError` listing every pin without a fitting wheel whose hash the lock
    lists (and naming ``python3 dev.py wheels``, which fills ``dist/``).
    """
    tags = set(sys_tags())
    by_key: dict[tuple[str, str], list[Path]] = {}
    for path in sorted(wheelhouse.glob("*.whl")):
        try:
            name, version, _, wheel_tags = parse_wheel_filename(path.name)
        except InvalidWheelFilename:
            continue
        if wheel_tags & tags:
            by_key.setdefault((str(name), str(version)), []).append(path)
    wanted: list[tuple[str, str, frozenset[str] | None]] = [
        (*_member_distribution(root, m), None) for m in closure.members]
    wanted += [(p.name, p.version, p.hashes) for p in closure.pins]
    built = _built_from_sdists(wheelhouse)
    dest.mkdir(parents=True, exist_ok=True)
    wheels: list[Wheel] = []
    missing: list[str] = []
    for want_name, want_version, hashes in wanted:
        chosen = None
        for path in by_key.get((want_name, want_version), []):
            digest = sha256_of(path)
            from_sdist = built.get(path.name)
            if hashes is None or digest in hashes or (
                    from_sdist is not None and from_sdist[0] == digest
                    and from_sdist[1] & hashes):
                chosen = (path, digest)
                break
        if chosen is None:
            missing.append(f"{want_name}=={want_version}")
            continue
        shutil.copy2(chosen[0], dest / chosen[0].name)
        wheels.append(Wheel(want_name, want_version, chosen[0].name, chosen[1]))
    if missing:
        raise ReleaseError(f"{wheelhouse} holds no wheel for this Python whose hash uv.lock "
                           f"lists for: {', '.join(missing)} (python3 dev.py wheels fills "
                           "dist/)", wheelhouse=str(wheelhouse), missing=missing)
    return wheels


def _built_from_sdists(wheelhouse: Path) -> dict[str, tuple[str, frozenset[str]]]:
    """``{file: (its sha256, the sdist hashes it was built from)}`` of ``dev.py wheels``."""
    record = wheelhouse / BUILT_RECORD
    if not record.is_file():
        return {}
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
        return {str(name): (str(entry["sha256"]), frozenset(map(str, entry["sdist_hashes"])))
                for name, entry in data.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}


def requirements_text(wheels: list[Wheel]) -> str:
    """``name==version --hash=sha256:...`` for every wheel: what pip installs, by hash."""
    return "".join(f"{w.name}=={w.version} --hash=sha256:{w.sha256}\n"
                   for w in sorted(wheels, key=lambda w: w.name))
