"""Each library builds a wheel, and each wheel installs alone in a clean virtualenv and imports.

For every library (dependencies first): ``uv build --wheel`` into a temporary folder; check that
the wheel holds exactly its package (with ``py.typed``); create a fresh virtualenv with
``uv venv``; install the wheel plus the wheels of its ``depends_on`` closure (built in the same
run, so siblings never come from an index), letting uv fetch the PyPI dependencies (its cache
makes repeated runs cheap); then, in isolated mode (``python -I``) from a neutral directory,
import the package and every submodule. A submodule may fail to import only with a
``ModuleNotFoundError`` for a distribution listed in the library's optional dependencies.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from tools.repocheck.manifest import Library, Problem
from tools.repocheck.static import Pyproject

# Run inside the clean virtualenv: import the package and every submodule; print a JSON report.
IMPORT_PROBE = """
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


def find_uv(root: Path) -> str | None:
    """uv as ``uv run`` advertises it ($UV), on PATH, or where dev.py bootstraps it."""
    for candidate in (os.environ.get("UV"), shutil.which("uv"), str(root / ".bootstrap/bin/uv")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@dataclass
class _Runner:
    uv: str
    env: dict[str, str]

    def __call__(self, argv: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - argv is built here from fixed parts and paths
            list(argv), cwd=cwd, env=self.env, capture_output=True, text=True, check=False
        )


def _clean_env() -> dict[str, str]:
    """The environment minus what would leak the workspace's own venv into the checks."""
    drop = {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "UV_PROJECT_ENVIRONMENT", "CONDA_PREFIX"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def _tail(proc: subprocess.CompletedProcess[str], lines: int = 15) -> str:
    text = (proc.stdout + proc.stderr).strip().splitlines()
    return "\n    ".join(text[-lines:])


def closure(lib: Library, by_name: Mapping[str, Library]) -> list[Library]:
    """``lib``'s depends_on, transitively (known libraries only), in a stable order."""
    seen: dict[str, Library] = {}
    stack = list(lib.depends_on)
    while stack:
        name = stack.pop()
        if name in seen or name not in by_name or name == lib.name:
            continue
        seen[name] = by_name[name]
        stack.extend(by_name[name].depends_on)
    return [seen[n] for n in sorted(seen)]


def _check_wheel_contents(wheel: Path, lib: Library) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    tops = {n.split("/", 1)[0] for n in names} - {
        n.split("/", 1)[0] for n in names if n.split("/", 1)[0].endswith((".dist-info", ".data"))
    }
    problems = []
    if tops != {lib.import_name}:
        problems.append(
            f"wheel top-level entries are {sorted(tops)}, expected [{lib.import_name!r}]"
        )
    for required in ("__init__.py", "py.typed"):
        if f"{lib.import_name}/{required}" not in names:
            problems.append(f"wheel lacks {lib.import_name}/{required}")
    return problems


def _optional_ok(missing: str | None, pyproject: Pyproject | None) -> bool:
    if not missing or pyproject is None:
        return False
    wanted = canonicalize_name(missing.split(".")[0])
    return any(
        (name := canonicalize_name(req.name)) == wanted or name.startswith(wanted + "-")
        for req in pyproject.optional
    )


def check_wheels(
    root: Path,
    libraries: Sequence[Library],
    pyprojects: Mapping[str, Pyproject | None],
    *,
    only: Sequence[str] = (),
    log: Callable[[str], None] = lambda line: None,
) -> list[Problem]:
    """Build, install alone and import each library (``only``: these names and what they need)."""
    uv = find_uv(root)
    if uv is None:
        return [Problem("wheels", "uv not found ($UV, PATH, .bootstrap/bin/uv)")]
    by_name = {lib.name: lib for lib in libraries}
    unknown = sorted(set(only) - set(by_name))
    if unknown:
        return [Problem("wheels", f"unknown library name(s) {unknown}")]
    targets = [by_name[n] for n in only] if only else list(libraries)
    needed = {lib.name for t in targets for lib in (t, *closure(t, by_name))}
    run = _Runner(uv, _clean_env())
    problems: list[Problem] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mts1b-repocheck-") as tmp_name:
        tmp = Path(tmp_name)
        wheels: dict[str, Path] = {}
        for lib in (lib for lib in libraries if lib.name in needed):
            t0 = time.monotonic()
            out = tmp / "wheels" / lib.name
            proc = run([uv, "build", "--wheel", "--quiet", "--out-dir", str(out),
                        str(root / lib.path)], cwd=root)
            built = sorted(out.glob("*.whl"))
            if proc.returncode != 0 or len(built) != 1:
                problems.append(Problem(f"{lib.path}/", f"wheel build failed:\n    {_tail(proc)}"))
                continue
            wheels[lib.name] = built[0]
            problems += [Problem(f"{lib.path}/", p) for p in _check_wheel_contents(built[0], lib)]
            log(f"repocheck: built {built[0].name} in {time.monotonic() - t0:.1f}s")
        for lib in targets:
            if lib.name not in wheels:
                continue
            problems += _install_and_import(lib, closure(lib, by_name), wheels, tmp, run,
                                            pyprojects.get(lib.name), log)
    log(f"repocheck: wheel checks of {len(targets)} libraries took "
        f"{time.monotonic() - started:.1f}s")
    return problems


def _install_and_import(
    lib: Library,
    deps: Sequence[Library],
    wheels: Mapping[str, Path],
    tmp: Path,
    run: _Runner,
    pyproject: Pyproject | None,
    log: Callable[[str], None],
) -> list[Problem]:
    where = f"{lib.path}/ (wheel)"
    missing = [d.name for d in deps if d.name not in wheels]
    if missing:
        return [Problem(where, f"not installed: the wheels of {missing} did not build")]
    t0 = time.monotonic()
    venv = tmp / f"venv-{lib.name}"
    proc = run([run.uv, "venv", "--quiet", "--python", sys.executable, str(venv)], cwd=tmp)
    if proc.returncode != 0:
        return [Problem(where, f"uv venv failed:\n    {_tail(proc)}")]
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    files = [str(wheels[lib.name]), *(str(wheels[d.name]) for d in deps)]
    proc = run([run.uv, "pip", "install", "--quiet", "--python", str(python), *files], cwd=tmp)
    if proc.returncode != 0:
        return [Problem(where, "does not install alone with its declared dependencies "
                               f"({', '.join(d.name for d in deps) or 'no siblings'}):\n"
                               f"    {_tail(proc)}")]
    t1 = time.monotonic()
    proc = run([str(python), "-I", "-c", IMPORT_PROBE, lib.import_name], cwd=tmp)
    try:
        report = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return [Problem(where, f"import probe failed:\n    {_tail(proc)}")]
    problems = [
        Problem(where, f"import {module} fails in a clean virtualenv: {kind}: {message}")
        for module, kind, message, missing_name in report["failed"]
        if not (kind == "ModuleNotFoundError" and module != lib.import_name
                and _optional_ok(missing_name, pyproject))
    ]
    installed = report["file"]
    if installed and not Path(installed).resolve().is_relative_to(venv.resolve()):
        problems.append(Problem(where, f"{lib.import_name} was imported from {installed}, "
                                       "not from the clean virtualenv"))
    log(f"repocheck: {lib.name}: installed alone in {t1 - t0:.1f}s "
        f"(+ {', '.join(d.name for d in deps) or 'no siblings'}), imported "
        f"{report['modules'] + 1} modules in {time.monotonic() - t1:.1f}s")
    return problems
