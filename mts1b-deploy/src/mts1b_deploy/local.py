"""The ``local`` target: releases side by side on this machine, ``current`` switched atomically.

Layout (Capistrano's, with NixOS-style generations keyed by commit)::

    <root>/releases/<generation>-<sha12>/   venv/, wheels/, requirements.txt, config/, release.json
    <root>/current -> releases/<generation>-<sha12>
    <root>/generations.jsonl                every release and every switch (history.py)

An install builds the whole release beside the others - its own wheelhouse checked against the
lock (:mod:`mts1b_deploy.wheelhouse`), a virtualenv filled with ``uv pip install --no-index
--require-hashes`` from it alone, the rendered config - and writes ``release.json`` last; only a
folder with ``release.json`` counts as kept. Then ``current`` is replaced by ``rename(2)`` of a
new symlink over it: a reader sees the old release or the new one, never neither. A failed
install removes its folder and leaves ``current`` alone. The newest ``keep`` releases are kept
(never the current one removed); the history keeps every line.

Starting the services, the health gates and the automatic rollback: :mod:`mts1b_deploy.rollout`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mts1b_deploy.errors import ReleaseError, RollbackRefused
from mts1b_deploy.history import Generation, Switch, append, now, read_history, who
from mts1b_deploy.pins import find_uv, locked_closure
from mts1b_deploy.rendered import config_sha256
from mts1b_deploy.schema import oldest_compatible, schema_block, schema_versions
from mts1b_deploy.supervisor import SERVICES_FILE, ServiceSpec, read_services, services_json
from mts1b_deploy.wheelhouse import collect_wheels, requirements_text, sha256_of

__all__ = ["KeptRelease", "LocalTarget", "ReleaseRequest", "read_config_dir"]

_SHA = re.compile(r"^[0-9a-f]{7,40}$")
_CONFIG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
Log = Callable[[str], None]


@dataclass(frozen=True)
class ReleaseRequest:
    """What to release: libraries (``mts1b-oms``, ``mts1b-platform[vault]``) from the checkout
    ``repo`` at commit ``sha`` (default: its HEAD), wheels from ``wheelhouse``, config files
    and the services' commands (:class:`~mts1b_deploy.supervisor.ServiceSpec`)."""

    repo: Path
    libraries: tuple[str, ...]
    wheelhouse: Path
    sha: str | None = None
    config: Mapping[str, str] = field(default_factory=dict)
    services: Mapping[str, ServiceSpec] = field(default_factory=dict)
    python: str = sys.executable


@dataclass(frozen=True)
class KeptRelease:
    """A generation with its folder still present, and whether ``current`` points at it."""

    generation: Generation
    current: bool


def read_config_dir(folder: Path) -> tuple[dict[str, str], dict[str, ServiceSpec]]:
    """The files of ``folder`` for a release's ``config/`` (``{name: text}``) and the services
    of its ``services.json`` (none without one). Refused: a sub-folder, a name that is not a
    plain file name, and a private signing key (it never goes into a release)."""
    if not folder.is_dir():
        raise ReleaseError(f"--config-dir {folder} is not a folder", field="--config-dir",
                           value=str(folder))
    files: dict[str, str] = {}
    specs: dict[str, ServiceSpec] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or not _CONFIG_NAME.match(path.name):
            raise ReleaseError(f"--config-dir {folder}: {path.name!r} is not a plain file",
                               field="--config-dir", value=path.name)
        if path.name == SERVICES_FILE:
            specs = read_services(path)
            continue
        text = path.read_text(encoding="utf-8")
        if '"mts1b-oms-signing-key"' in text:
            raise ReleaseError(f"--config-dir {folder}: {path.name} is a private signing key; "
                               "keep it out of releases", field="--config-dir",
                               value=path.name)
        files[path.name] = text
    return files, specs


def _run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)  # noqa: S603


def _tail(proc: subprocess.CompletedProcess[str]) -> str:
    return " / ".join((proc.stderr or proc.stdout).strip().splitlines()[-4:])


class LocalTarget:
    """Releases under ``root`` on this machine (see the module docstring)."""

    def __init__(self, root: Path, keep: int = 10) -> None:
        if keep < 1:
            raise ReleaseError(f"keep={keep}: at least the current release is kept",
                               field="keep", value=keep)
        self.root = root
        self.keep = keep
        self.releases = root / "releases"
        self.current_link = root / "current"

    # -- reading --------------------------------------------------------------------------

    def current(self) -> Generation | None:
        """The generation ``current`` points at, or None before the first install."""
        if not self.current_link.is_symlink():
            return None
        name = os.readlink(self.current_link).rsplit("/", 1)[-1]
        generations, _ = read_history(self.root)
        return next((g for g in generations if g.directory == name), None)

    def kept(self) -> list[KeptRelease]:
        """The generations whose folder is complete, newest first."""
        generations, _ = read_history(self.root)
        current = self.current()
        return [KeptRelease(g, current is not None and g.generation == current.generation)
                for g in sorted(generations, key=lambda g: -g.generation)
                if (self.releases / g.directory / "release.json").is_file()]

    # -- install --------------------------------------------------------------------------

    def install(self, request: ReleaseRequest, log: Log = lambda _: None) -> Generation:
        """Build, install and switch to a new release; returns its generation."""
        sha = request.sha or self._head(request.repo)
        if not _SHA.match(sha):
            raise ReleaseError(f"sha: {sha!r} is not a commit id (7-40 lower-case hex digits)",
                               field="sha", value=sha)
        config = dict(request.config)
        if request.services:
            config[SERVICES_FILE] = services_json(request.services)
        bad = [n for n in config if not _CONFIG_NAME.match(n)]
        if bad:
            raise ReleaseError(f"config: {bad[0]!r} is not a plain file name", field="config",
                               value=bad[0])
        self.releases.mkdir(parents=True, exist_ok=True)
        generations, _ = read_history(self.root)
        number = max((g.generation for g in generations), default=0) + 1
        name = f"{number}-{sha[:12]}"
        folder = self.releases / name
        if folder.exists():
            raise ReleaseError(f"{folder} exists but the history has no generation {number}",
                               path=str(folder))
        closure = locked_closure(request.repo, request.libraries)
        log(f"release {name}: {len(closure.members)} libraries and {len(closure.pins)} "
            "pinned dependencies from uv.lock")
        try:
            wheels = collect_wheels(request.repo, closure, request.wheelhouse,
                                    folder / "wheels")
            (folder / "requirements.txt").write_text(requirements_text(wheels),
                                                     encoding="utf-8")
            (folder / "config").mkdir()
            for file, text in config.items():
                (folder / "config" / file).write_text(text, encoding="utf-8")
            self._venv(find_uv(request.repo), request.python, folder)
            generation = Generation(
                generation=number, sha=sha, directory=name,
                libraries={w.name: w.version for w in wheels if w.name.startswith("mts1b-")},
                schema=schema_versions(self._site_packages(folder)),
                lock_sha256=sha256_of(request.repo / "uv.lock"),
                config_sha256=config_sha256(config), installed_at=now(), by=who())
            (folder / "release.json").write_text(json.dumps(
                {**asdict(generation), "wheels": [asdict(w) for w in wheels]}, indent=1,
                sort_keys=True) + "\n", encoding="utf-8")
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        append(self.root, generation)
        self._switch(generation, "install")
        log(f"release {name} installed and current (schema {generation.schema or 'none'})")
        self.prune(log)
        return generation

    def _head(self, repo: Path) -> str:
        proc = _run(["git", "-C", str(repo), "rev-parse", "HEAD"])
        if proc.returncode != 0:
            raise ReleaseError(f"cannot read the commit of {repo} (git rev-parse HEAD: "
                               f"{_tail(proc)}); give --sha", repo=str(repo))
        return proc.stdout.strip()

    def _venv(self, uv: str, python: str, folder: Path) -> None:
        """The release's virtualenv, filled from its own wheels only (uv's pip: seconds where
        pip takes a minute; the same ``--no-index --require-hashes`` contract)."""
        venv = folder / "venv"
        proc = _run([uv, "venv", "--quiet", "--python", python, str(venv)])
        if proc.returncode != 0:
            raise ReleaseError(f"uv venv failed: {_tail(proc)}", python=python)
        proc = _run([uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
                     "--no-index", "--find-links", str(folder / "wheels"), "--require-hashes",
                     "--no-deps", "--requirement", str(folder / "requirements.txt")])
        if proc.returncode != 0:
            raise ReleaseError(f"pip install --no-index --require-hashes failed: {_tail(proc)}")

    @staticmethod
    def _site_packages(folder: Path) -> Path:
        found = sorted((folder / "venv" / "lib").glob("python3.*/site-packages"))
        if len(found) != 1:
            raise ReleaseError(f"{folder}/venv has {len(found)} site-packages folders")
        return found[0]

    # -- switch, rollback, prune ------------------------------------------------------------

    def switch_to(self, generation: Generation, reason: str) -> None:
        """Point ``current`` at a kept ``generation`` (an automatic rollback's way back)."""
        self._switch(generation, reason)

    def _switch(self, generation: Generation, reason: str) -> None:
        tmp = self.root / f".current-{secrets.token_hex(6)}"
        os.symlink(f"releases/{generation.directory}", tmp)
        os.replace(tmp, self.current_link)  # rename(2): atomic
        append(self.root, Switch(generation.generation, reason))

    def rollback(self, to: str, log: Log = lambda _: None) -> Generation:
        """Point ``current`` at a kept release: a generation number or a commit sha (prefix
        of 7+ digits; the newest generation of that commit). Refused, saying why, when it is
        not kept, is current already, or is older than the database's schema allows."""
        generations, _ = read_history(self.root)
        target = self._resolve(to, generations)
        kept = self.kept()
        current = self.current()
        if not any(k.generation.generation == target.generation for k in kept):
            names = ", ".join(f"{k.generation.generation} ({k.generation.sha[:12]})"
                              for k in kept)
            raise RollbackRefused(f"rollback to {to}: generation {target.generation} is no "
                                  f"longer kept (its folder was pruned); kept: {names}",
                                  to=to, reason="not_kept")
        if current is not None and current.generation == target.generation:
            raise RollbackRefused(f"rollback to {to}: generation {target.generation} is "
                                  "already current", to=to, reason="current")
        schemas = [g.schema for g in sorted(generations, key=lambda g: g.generation)]
        block = schema_block(schemas, target.schema)
        if block is not None:
            oldest = oldest_compatible(schemas, [(k.generation.generation, k.generation.schema)
                                                 for k in kept])
            where = "none is kept" if oldest is None else (
                f"generation {oldest} ({next(k.generation.sha[:12] for k in kept if k.generation.generation == oldest)})")  # noqa: E501
            raise RollbackRefused(
                f"rollback to {to} (generation {target.generation}) refused: "
                f"{block.reason()}; the oldest schema-compatible kept release is {where}",
                to=to, reason="schema", package=block.package)
        self._switch(target, f"rollback to {to}")
        log(f"current is generation {target.generation} ({target.sha[:12]}) again: its code "
            "and config")
        return target

    @staticmethod
    def _resolve(to: str, generations: list[Generation]) -> Generation:
        to = to.strip().lower()
        if to.isdigit() and len(to) < 7:
            found = [g for g in generations if g.generation == int(to)]
        elif _SHA.match(to):
            found = sorted((g for g in generations if g.sha.startswith(to)),
                           key=lambda g: -g.generation)[:1]
        else:
            raise RollbackRefused(f"--to {to!r} is neither a generation number nor a commit "
                                  "sha (7-40 hex digits)", to=to, reason="bad_target")
        if not found:
            raise RollbackRefused(f"rollback to {to}: no such generation or commit in the "
                                  "history", to=to, reason="unknown")
        return found[0]

    def prune(self, log: Log = lambda _: None) -> None:
        """Remove the folders of all but the newest ``keep`` releases (never the current)."""
        current = self.current()
        for release in self.kept()[self.keep:]:
            if current is not None and release.generation.generation == current.generation:
                continue
            shutil.rmtree(self.releases / release.generation.directory)
            log(f"pruned generation {release.generation.generation} "
                f"({release.generation.directory}); its history line stays")
