"""``python3 dev.py wheels``: a local wheelhouse in ``dist/`` that installs without any index.

Why: no ``mts1b-*`` name is registered on PyPI, so ``pip install mts1b-quantkit`` (or pip
resolving ``mts1b-foundation`` for it) would install whoever registers the name first. The README
install is therefore ``pip install --no-index --find-links dist mts1b-<name>``, and ``dist/`` must
hold everything that command needs:

1. every library's wheel, built with ``uv build --wheel`` from the working tree;
2. the third-party wheels of their runtime closure, exactly as ``uv.lock`` pins them: ``uv export``
   (no dev group, no workspace members, every extra except those in ``SKIPPED_EXTRAS``) gives the
   pins with their sha256 hashes, and ``pip download --require-hashes --only-binary=:all:
   --no-deps`` fetches them, so a file whose hash the lock does not list is refused;
3. a wheel built locally (``pip wheel --require-hashes``) for a pin that has only an sdist on the
   index, from the hash-checked sdist; the build tools themselves come from the index unpinned,
   which is pip's limit, and the summary names each such pin.

Extras: ``bus``, ``vault``, ``otlp``, ``devservers`` (and the datalake's ``bus``) are in, so
``pip install --no-index --find-links dist "mts1b-platform[devservers]"`` works offline. ``dev``
(test tools), ``gpu`` (cupy for CUDA, hardware specific) and ``ray`` (hundreds of MB) are out:
their dependencies are third-party, so installing them from PyPI afterwards never takes an
``mts1b-*`` name from an index.

Each target Python gets its own wheels (``--python 3.13`` uses pip's ``--python-version``), all in
the same folder: pip picks the files whose tags fit. The folder is reused: a pin whose file is
already there with a hash the lock lists is not fetched again, and wheels the lock no longer pins
are removed, so ``dist/`` never offers pip a version the lock does not.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mts1b_deploy.errors import ReleaseError
from mts1b_deploy.pins import Pin as Pin  # the tools and their tests name it here too
from mts1b_deploy.pins import parse_export as read_export
from mts1b_deploy.wheelhouse import BUILT_RECORD
from mts1b_deploy.wheelhouse import sha256_of as sha256
from packaging.markers import Marker, default_environment
from packaging.tags import Tag, compatible_tags, cpython_tags, platform_tags, sys_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from tools.repocheck.manifest import Library, Problem

SKIPPED_EXTRAS: Mapping[str, str] = {
    "dev": "test tools, installed from a library's folder (CONTRIBUTING.md)",
    "gpu": "cupy for NVIDIA CUDA: hardware specific and several hundred MB",
    "ray": "Ray: several hundred MB, only for the ray ladder executor",
}


Log = Callable[[str], None]


@dataclass
class Wheelhouse:
    """What one build put in (or found in) the wheelhouse, and what went wrong."""

    dest: Path
    wheels: dict[str, Path] = field(default_factory=dict)  # library name -> its wheel
    pins: int = 0
    present: int = 0
    downloaded: list[str] = field(default_factory=list)
    built: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def parse_export(text: str) -> list[Pin]:
    """The pins of ``uv export --format requirements-txt`` output, read by the one reader of
    it (:func:`mts1b_deploy.pins.parse_export`, which a release installs from too); a line
    that is not pinned with ``==`` and hashes is a ``ValueError``."""
    try:
        return list(read_export(text).pins)
    except ReleaseError as exc:
        raise ValueError(exc.message) from None


def marker_environment(version: str, interpreter: str | None = None) -> dict[str, str]:
    """PEP 508 marker values for ``version``: asked of ``interpreter`` when there is one,
    else this interpreter's values with the Python version replaced."""
    if interpreter:
        probe = ("import json, os, platform, sys; impl = sys.implementation; "
                 "v = impl.version; iv = f'{v.major}.{v.minor}.{v.micro}'; "
                 "print(json.dumps({'implementation_name': impl.name, "
                 "'implementation_version': iv, 'os_name': os.name, "
                 "'platform_machine': platform.machine(), 'platform_release': platform.release(), "
                 "'platform_system': platform.system(), 'platform_version': platform.version(), "
                 "'python_full_version': platform.python_version(), "
                 "'platform_python_implementation': platform.python_implementation(), "
                 "'python_version': '.'.join(platform.python_version_tuple()[:2]), "
                 "'sys_platform': sys.platform}))")
        out = subprocess.run([interpreter, "-I", "-c", probe], capture_output=True, text=True,  # noqa: S603
                             check=False, timeout=60)
        if out.returncode == 0:
            return dict(json.loads(out.stdout))
    env = {key: str(value) for key, value in default_environment().items()}
    if env["python_version"] != version:
        env.update(python_version=version, python_full_version=f"{version}.0",
                   implementation_version=f"{version}.0")
    return env


def target_tags(version: str) -> set[Tag]:
    """The wheel tags pip accepts for CPython ``version`` on this platform."""
    major, minor = (int(part) for part in version.split("."))
    if (major, minor) == sys.version_info[:2]:
        return set(sys_tags())
    platforms = list(platform_tags())
    return set(cpython_tags((major, minor), platforms=platforms)) | set(
        compatible_tags((major, minor), interpreter=f"cp{major}{minor}", platforms=platforms))


def _wheel_key(path: Path) -> tuple[str, str, frozenset[Tag]] | None:
    try:
        name, version, _, tags = parse_wheel_filename(path.name)
    except InvalidWheelFilename:
        return None
    return str(name), str(version), tags


def applicable(pins: Iterable[Pin], env: Mapping[str, str]) -> list[Pin]:
    """The pins whose marker holds in ``env`` (no extra is active: uv export resolved them)."""
    return [p for p in pins if not p.marker or Marker(p.marker).evaluate({**env, "extra": ""})]


def find_present(
    pins: Sequence[Pin], dest: Path, tags: set[Tag], built: Mapping[str, Mapping[str, object]]
) -> tuple[list[Pin], list[Pin]]:
    """(pins already in ``dest`` for these tags with a locked hash, pins still to fetch)."""
    files: dict[tuple[str, str], list[tuple[Path, frozenset[Tag]]]] = {}
    for path in dest.glob("*.whl"):
        key = _wheel_key(path)
        if key:
            files.setdefault((key[0], key[1]), []).append((path, key[2]))
    present: list[Pin] = []
    missing: list[Pin] = []
    for pin in pins:
        ok = False
        for path, wheel_tags in files.get((pin.name, pin.version), []):
            if not wheel_tags & tags:
                continue
            record = built.get(path.name)
            digest = sha256(path)
            if digest in pin.hashes or (
                isinstance(record, dict) and record.get("sha256") == digest
                and set(record.get("sdist_hashes", [])) & pin.hashes
            ):
                ok = True
                break
        (present if ok else missing).append(pin)
    return present, missing


def locked_wheels(root: Path) -> dict[tuple[str, str], list[str]]:
    """(name, version) -> wheel filenames uv.lock knows for it (an empty list: sdist only)."""
    data = tomllib.loads((root / "uv.lock").read_text(encoding="utf-8"))
    found: dict[tuple[str, str], list[str]] = {}
    for package in data.get("package", []):
        if "version" not in package:
            continue
        names = [str(w.get("url", w.get("path", ""))).rsplit("/", 1)[-1]
                 for w in package.get("wheels", [])]
        found[(str(canonicalize_name(package["name"])), str(package["version"]))] = names
    return found


def extras_to_export(root: Path, libraries: Sequence[Library]) -> list[str]:
    """Every extra any library declares, except SKIPPED_EXTRAS."""
    extras: set[str] = set()
    for lib in libraries:
        try:
            project = tomllib.loads((root / lib.path / "pyproject.toml").read_text(
                encoding="utf-8")).get("project", {})
        except (OSError, tomllib.TOMLDecodeError):
            continue  # reported by the static checks
        extras |= set(project.get("optional-dependencies", {}))
    return sorted(extras - set(SKIPPED_EXTRAS))


def _run(argv: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, check=False,  # noqa: S603
                          env=None if env is None else dict(env))


def _tail(proc: subprocess.CompletedProcess[str], lines: int = 12) -> str:
    text = [line for line in (proc.stdout + proc.stderr).strip().splitlines()
            if "is ignored: it is neither a file nor a directory" not in line]
    return "\n    ".join(text[-lines:])


def build_library_wheels(
    uv: str, root: Path, libraries: Sequence[Library], dest: Path, log: Log
) -> tuple[dict[str, Path], list[Problem]]:
    """``uv build --wheel`` of each library into ``dest``; its older wheels there go first."""
    wheels: dict[str, Path] = {}
    problems: list[Problem] = []
    for lib in libraries:
        t0 = time.monotonic()
        dist = canonicalize_name(lib.distribution)
        for old in dest.glob("*.whl"):
            key = _wheel_key(old)
            if key and key[0] == dist:
                old.unlink()
        with tempfile.TemporaryDirectory(prefix="mts1b-wheel-") as tmp:
            proc = _run([uv, "build", "--wheel", "--quiet", "--out-dir", tmp,
                         str(root / lib.path)], cwd=root)
            built = sorted(Path(tmp).glob("*.whl"))
            if proc.returncode != 0 or len(built) != 1:
                problems.append(Problem(f"{lib.path}/", f"wheel build failed:\n    {_tail(proc)}"))
                continue
            target = dest / built[0].name
            shutil.move(str(built[0]), target)
        wheels[lib.name] = target
        log(f"wheelhouse: built {target.name} in {time.monotonic() - t0:.1f}s")
    return wheels, problems


def export_pins(uv: str, root: Path, libraries: Sequence[Library]) -> list[Pin]:
    """The third-party runtime pins of uv.lock with their hashes (raises ValueError)."""
    argv = [uv, "export", "--format", "requirements-txt", "--all-packages", "--no-dev",
            "--no-emit-workspace", "--locked", "--no-header", "--no-annotate", "--quiet"]
    for extra in extras_to_export(root, libraries):
        argv += ["--extra", extra]
    proc = _run(argv, cwd=root)
    if proc.returncode != 0:
        raise ValueError(f"`{' '.join(argv[1:])}` failed:\n    {_tail(proc)}")
    return parse_export(proc.stdout)


class PipRunner:
    """A pip of its own (``uv venv --seed``) for downloads, so the caller's venv needs none."""

    def __init__(self, uv: str, tmp: Path) -> None:
        self.uv = uv
        self.tmp = tmp
        self._python: Path | None = None

    def python(self) -> Path:
        if self._python is None:
            venv = self.tmp / "pip-venv"
            proc = _run([self.uv, "venv", "--seed", "--quiet", "--python", sys.executable,
                         str(venv)], cwd=self.tmp)
            if proc.returncode != 0:
                raise ValueError(f"uv venv --seed failed:\n    {_tail(proc)}")
            self._python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
        return self._python

    def __call__(self, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        return _run([str(self.python()), "-m", "pip", *args], cwd=self.tmp, env=env)


def fetch(
    pins: Sequence[Pin],
    version: str,
    dest: Path,
    pip: PipRunner,
    locked: Mapping[tuple[str, str], list[str]],
    tags: set[Tag],
    built: dict[str, dict[str, object]],
    result: Wheelhouse,
    log: Log,
) -> None:
    """Download the wheels of ``pins`` for Python ``version``; build sdist-only pins."""
    here = version == f"{sys.version_info[0]}.{sys.version_info[1]}"
    target = [] if here else ["--python-version", version, "--implementation", "cp"]
    sdist_only = [p for p in pins if not locked.get((p.name, p.version))]
    wheel_pins = [p for p in pins if p not in sdist_only]
    where = f"wheelhouse (Python {version})"
    if wheel_pins:
        unfit = [p for p in wheel_pins
                 if not any((k := _wheel_key(Path(f))) and k[2] & tags
                            for f in locked.get((p.name, p.version), []))]
        requirements = pip.tmp / f"wheels-{version}.txt"
        requirements.write_text("".join(p.line + "\n" for p in wheel_pins), encoding="utf-8")
        proc = pip(["download", "--require-hashes", "--only-binary=:all:", "--no-deps",
                    *target, "--dest", str(dest), "--requirement", str(requirements)])
        if proc.returncode != 0:
            names = ", ".join(f"{p.name} {p.version}" for p in unfit)
            why = f" (uv.lock lists no wheel for Python {version} of: {names})" if unfit else ""
            result.problems.append(Problem(where, f"pip download --only-binary=:all: failed"
                                                  f"{why}:\n    {_tail(proc)}"))
        else:
            result.downloaded += [f"{p.name} {p.version}" for p in wheel_pins]
    for pin in sdist_only:
        with tempfile.TemporaryDirectory(prefix="mts1b-sdist-", dir=pip.tmp) as out:
            requirements = Path(out) / "sdist.txt"
            requirements.write_text(pin.line + "\n", encoding="utf-8")
            proc = pip(["wheel", "--require-hashes", "--no-deps", "--no-binary", pin.name,
                        "--wheel-dir", out, "--requirement", str(requirements)])
            made = sorted(Path(out).glob("*.whl"))
            if proc.returncode != 0 or len(made) != 1:
                result.problems.append(Problem(where, f"{pin.name} {pin.version} has no wheel "
                                                      f"on the index and its sdist did not build:"
                                                      f"\n    {_tail(proc)}"))
                continue
            key = _wheel_key(made[0])
            if not here and key and not key[2] & tags:
                result.problems.append(Problem(where, f"{pin.name} {pin.version} has no wheel "
                                                      f"on the index and its sdist builds "
                                                      f"{made[0].name}, which does not fit "
                                                      f"Python {version}"))
                continue
            shutil.move(str(made[0]), dest / made[0].name)
            built[made[0].name] = {"name": pin.name, "version": pin.version,
                                   "sha256": sha256(dest / made[0].name),
                                   "sdist_hashes": sorted(pin.hashes)}
            result.built.append(f"{pin.name} {pin.version}")
            log(f"wheelhouse: {pin.name} {pin.version} has only an sdist on the index: built "
                f"{made[0].name} from its hash-checked sdist")


def prune(dest: Path, pins: Sequence[Pin], wheels: Mapping[str, Path],
          built: dict[str, dict[str, object]], log: Log) -> None:
    """Remove wheels no pin and no library wheel of this build accounts for."""
    pinned = {(p.name, p.version) for p in pins}
    ours = {path.name for path in wheels.values()}
    removed = []
    for path in sorted(dest.glob("*.whl")):
        key = _wheel_key(path)
        if path.name in ours or (key and (key[0], key[1]) in pinned):
            continue
        if key and key[0].startswith("mts1b-"):
            continue  # a library not built in this run (--library): leave it alone
        path.unlink()
        built.pop(path.name, None)
        removed.append(path.name)
    if removed:
        log(f"wheelhouse: removed {len(removed)} wheel(s) uv.lock no longer pins: "
            f"{', '.join(removed)}")


class WheelhouseBuilder:
    """Fills ``dest``: the libraries' wheels once, then the third-party wheels per Python.

    repocheck adds one Python at a time so that installs on a Python can start while the next
    one's wheels download; ``python3 dev.py wheels`` runs it all at once (build_wheelhouse).
    """

    def __init__(self, root: Path, libraries: Sequence[Library], dest: Path, uv: str,
                 log: Log = lambda line: None, workspace: Sequence[Library] = ()) -> None:
        self.root = root
        self.libraries = list(libraries)
        # the pins always cover every library's extras: with fewer, prune() would remove the
        # wheels of the others (repocheck --library builds only some libraries)
        self.workspace = list(workspace) or self.libraries
        self.uv = uv
        self.log = log
        self.result = Wheelhouse(dest)
        self.pins: list[Pin] = []
        self.locked: dict[tuple[str, str], list[str]] = {}
        self.built: dict[str, dict[str, object]] = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="mts1b-wheelhouse-")
        self._pip = PipRunner(uv, Path(self._tmp.name))
        self._exported = False

    def build_libraries(self) -> bool:
        """Build the wheels, read the pins, drop stale wheels; False when the pins are unknown."""
        dest = self.result.dest
        dest.mkdir(parents=True, exist_ok=True)
        wheels, problems = build_library_wheels(self.uv, self.root, self.libraries, dest, self.log)
        self.result.wheels.update(wheels)
        self.result.problems += problems
        try:
            self.pins = export_pins(self.uv, self.root, self.workspace)
            self.locked = locked_wheels(self.root)
        except (ValueError, OSError, tomllib.TOMLDecodeError) as exc:
            self.result.problems.append(Problem("uv.lock", str(exc)))
            return False
        try:
            self.built = json.loads((dest / BUILT_RECORD).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.built = {}
        prune(dest, self.pins, self.result.wheels, self.built, self.log)
        self._exported = True
        return True

    def add_python(self, version: str, interpreter: str | None = None) -> list[Problem]:
        """Fetch what Python ``version`` needs; the problems of this step only."""
        if not self._exported:
            return [Problem(f"wheelhouse (Python {version})", "no pins: the export failed")]
        t0 = time.monotonic()
        wanted = applicable(self.pins, marker_environment(version, interpreter))
        tags = target_tags(version)
        present, missing = find_present(wanted, self.result.dest, tags, self.built)
        result = self.result
        result.pins += len(wanted)
        result.present += len(present)
        before = len(result.problems)
        if missing:
            try:
                fetch(missing, version, result.dest, self._pip, self.locked, tags, self.built,
                      result, self.log)
            except ValueError as exc:
                result.problems.append(Problem(f"wheelhouse (Python {version})", str(exc)))
        (result.dest / BUILT_RECORD).write_text(
            json.dumps(self.built, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        found = result.problems[before:]
        fetched = f"{len(missing)} fetched" if not found else f"{len(missing)} to fetch: FAILED"
        self.log(f"wheelhouse: Python {version}: {len(wanted)} third-party pins, {len(present)} "
                 f"already in {result.dest.name}/, {fetched} in {time.monotonic() - t0:.1f}s")
        return found

    def close(self) -> None:
        dest = self.result.dest
        size = sum(p.stat().st_size for p in dest.glob("*.whl")) / 2**20
        self.log(f"wheelhouse: {dest} holds {len(list(dest.glob('*.whl')))} wheels "
                 f"({size:.0f} MiB); extras left out: "
                 + "; ".join(f"{k} ({v})" for k, v in SKIPPED_EXTRAS.items()))
        self._tmp.cleanup()


def build_wheelhouse(
    root: Path,
    libraries: Sequence[Library],
    dest: Path,
    versions: Sequence[tuple[str, str | None]],
    uv: str,
    log: Log = lambda line: None,
) -> Wheelhouse:
    """Fill ``dest`` for each (Python version, its interpreter or None) in ``versions``."""
    builder = WheelhouseBuilder(root, libraries, dest, uv, log)
    try:
        if builder.build_libraries():
            for version, interpreter in versions:
                builder.add_python(version, interpreter)
    finally:
        builder.close()
    return builder.result


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """The body of ``python3 dev.py wheels``."""
    from tools.repocheck.static import check_static  # the manifest as repocheck reads it
    from tools.repocheck.wheels import find_uv

    parser = argparse.ArgumentParser(
        prog="python3 dev.py wheels",
        description="Build every library's wheel and download the locked third-party wheels "
        "they need into dist/, so `pip install --no-index --find-links dist mts1b-<name>` "
        "works offline.")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2])
    parser.add_argument("--dest", type=Path, default=None, help="default: <root>/dist")
    parser.add_argument("--python", action="append", default=[], metavar="X.Y",
                        help="fetch the wheels for this Python version (repeatable; default: "
                        "the running one)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    versions = list(dict.fromkeys(args.python)) or [f"{sys.version_info[0]}.{sys.version_info[1]}"]
    bad = [v for v in versions if not re.fullmatch(r"3\.\d+", v)]
    if bad:
        parser.error(f"--python takes versions like 3.13, got {bad}")
    uv = find_uv(root)
    if uv is None:
        _say("wheelhouse: uv not found ($UV, PATH, .bootstrap/bin/uv)")
        return 1
    static = check_static(root)
    result = build_wheelhouse(root, static.libraries, args.dest or root / "dist",
                              [(v, None) for v in versions], uv,
                              log=_say)
    for problem in result.problems:
        _say(problem.render())
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
