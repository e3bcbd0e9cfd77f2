"""The wheel stage: the wheelhouse, the documented installs and the documented test commands.

What runs (every command as the documentation writes it; see tools/README.md):

1. **wheelhouse** (``tools.repocheck.wheelhouse``, the body of ``python3 dev.py wheels``) into
   ``<root>/dist``: each library's wheel, checked to hold exactly its package with ``py.typed`` and
   the root's LICENSE and NOTICE in ``.dist-info/licenses/``; then the locked third-party wheels for
   every Python found, and for each supported Python not found (repos.yaml ``python_versions``),
   with ``pip download --only-binary=:all: --python-version X.Y``: that is the install check of a
   version no interpreter here can run.
2. **README installs** on the running Python: every ``pip install --no-index --find-links dist
   ...`` of the READMEs in its own fresh virtualenv; pip must not fetch any index page. The plain
   install of a library is its *closure*: the distributions it added to the virtualenv. The closure
   must hold nothing of the entry's ``forbidden`` list and no file named like a server executable,
   and its size on disk (without bytecode) must stay within ``max_install_mb``. The installed
   libraries are imported with every submodule (a submodule may fail only for a missing optional
   dependency).
3. **other Pythons**: in one fresh virtualenv per other Python found, every library's plain README
   install in turn, then the same imports.
4. **CONTRIBUTING routes**: each ``every-python`` block on every Python found, each ``collect``
   block on the running Python with ``--collect-only -q`` added to its ``pytest``; pip must not
   fetch an index page of an ``mts1b-*`` name, and every ``mts1b-*`` distribution must be the
   editable install of its folder.

Steps 2 to 4 run in parallel (``--jobs``), never two routes in one library folder at once (their
pytest caches and test files are shared). Each step prints its time.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from packaging.utils import canonicalize_name

from tools.repocheck.commands import (
    Inventory,
    Venv,
    dependency_path,
    import_all,
    inventory,
    make_venv,
    run_in,
    tail,
)
from tools.repocheck.docs import (
    InstallCommand,
    TestRoute,
    base_install_of,
    read_install_commands,
    read_test_routes,
)
from tools.repocheck.interpreters import Interpreter
from tools.repocheck.manifest import Library, Problem, closure
from tools.repocheck.static import LICENSE_FILES, Pyproject
from tools.repocheck.wheelhouse import WheelhouseBuilder

Log = Callable[[str], None]
MiB = 2**20
__all__ = ["WheelReport", "check_wheel_contents", "check_wheels", "closure", "find_uv"]


def find_uv(root: Path) -> str | None:
    """uv as ``uv run`` advertises it ($UV), on PATH, or where dev.py bootstraps it (in ``root``
    or in the repository holding this checker, for a tree checked from outside)."""
    here = Path(__file__).resolve().parents[2]
    for candidate in (os.environ.get("UV"), shutil.which("uv"), str(root / ".bootstrap/bin/uv"),
                      str(here / ".bootstrap/bin/uv")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@dataclass
class Step:
    """One timed piece of work, for the timing summary."""

    name: str
    seconds: float


@dataclass
class WheelReport:
    """Everything the wheel stage found and measured."""

    problems: list[Problem] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    sizes: dict[str, float] = field(default_factory=dict)  # library -> MiB of its closure
    test_run: list[str] = field(default_factory=list)  # "3.12.1" for each Python tests ran on
    install_checked: list[str] = field(default_factory=list)  # "3.14" for versions not found
    wall: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, problems: Sequence[Problem] = (), steps: Sequence[Step] = ()) -> None:
        """Record findings; called from the worker threads and the main thread alike."""
        with self._lock:
            self.problems += problems
            self.steps += steps


Task = Callable[[], tuple[list[Problem], list[Step]]]


class _Pool:
    """Worker threads running tasks; never two tasks with the same key at once."""

    def __init__(self, jobs: int, report: WheelReport) -> None:
        self._queue: list[tuple[str, Task]] = []
        self._busy: set[str] = set()
        self._open = True
        self._cond = threading.Condition()
        self._report = report
        self._threads = [threading.Thread(target=self._work, daemon=True)
                         for _ in range(max(1, jobs))]
        for thread in self._threads:
            thread.start()

    def submit(self, key: str, task: Task) -> None:
        with self._cond:
            self._queue.append((key, task))
            self._cond.notify_all()

    def _work(self) -> None:
        while True:
            with self._cond:
                while True:
                    ready = next((i for i, (key, _) in enumerate(self._queue)
                                  if key not in self._busy), None)
                    if ready is not None or (not self._open and not self._queue):
                        break
                    self._cond.wait()
                if ready is None:
                    return
                key, task = self._queue.pop(ready)
                self._busy.add(key)
            try:
                problems, steps = task()
            except Exception as exc:  # a bug in a task must not hang the pool
                problems, steps = [Problem("repocheck", f"task {key} crashed: {exc!r}")], []
            self._report.add(problems, steps)
            with self._cond:
                self._busy.discard(key)
                self._cond.notify_all()

    def join(self) -> None:
        with self._cond:
            self._open = False
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()


def check_wheel_contents(wheel: Path, lib: Library, root: Path) -> list[str]:
    """The wheel holds exactly ``<import_name>/`` with ``__init__.py`` and ``py.typed``, and the
    root's LICENSE and NOTICE, byte for byte, in ``.dist-info/licenses/``."""
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        licenses = {
            name.rsplit("/", 1)[-1]: zf.read(name) for name in names
            if re.fullmatch(r"[^/]+\.dist-info/licenses/[^/]+", name)
        }
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
    for name in LICENSE_FILES:
        if name not in licenses:
            problems.append(f"wheel {wheel.name} lacks .dist-info/licenses/{name} (pyproject "
                            f"license-files = [\"LICENSE\", \"NOTICE\"])")
        elif (root / name).is_file() and licenses[name] != (root / name).read_bytes():
            problems.append(f"wheel {wheel.name}: .dist-info/licenses/{name} differs from the "
                            f"root {name}")
    return problems


def _optional_ok(missing: str | None, pyproject: Pyproject | None) -> bool:
    if not missing or pyproject is None:
        return False
    wanted = canonicalize_name(missing.split(".")[0])
    return any(
        (name := canonicalize_name(req.name)) == wanted or name.startswith(wanted + "-")
        for req in pyproject.optional
    )


def _import_problems(venv: Venv, lib: Library, pyproject: Pyproject | None, where: str,
                     what: str) -> tuple[list[Problem], int]:
    report, why = import_all(venv, lib.import_name)
    if report is None:
        return [Problem(where, why)], 0
    problems = [
        Problem(where, f"import {module} fails after {what}: {kind}: {message}")
        for module, kind, message, missing in report["failed"]
        if not (kind == "ModuleNotFoundError" and module != lib.import_name
                and _optional_ok(missing, pyproject))
    ]
    installed = report["file"]
    if installed and not Path(installed).resolve().is_relative_to(venv.path.resolve()):
        problems.append(Problem(where, f"{lib.import_name} was imported from {installed}, "
                                       "not from the clean virtualenv"))
    return problems, int(report["modules"]) + 1


def check_closure(
    lib: Library, command: InstallCommand, before: Inventory, after: Inventory
) -> tuple[list[Problem], float, str]:
    """Forbidden distributions, server executables and size of what ``command`` added."""
    added = {n: d for n, d in after.dists.items() if n not in before.dists}
    problems: list[Problem] = []
    start = command.requirements[0]
    for name in lib.forbidden:
        if name in added:
            chain = dependency_path(after.dists, start, name, after.env)
            via = f" ({' -> '.join(chain[1:])})" if len(chain) > 1 else ""
            problems.append(Problem(lib.where, f"field 'forbidden' value {name!r}: "
                                               f"`{command.text}` installs {name} "
                                               f"{added[name].version}{via}"))
    for dist in sorted(added.values(), key=lambda d: d.name):
        for path in dist.servers:
            problems.append(Problem(command.where, f"`{command.text}` installs the server "
                                                   f"executable {path} (from {dist.name} "
                                                   f"{dist.version}): no library's install may "
                                                   "carry a server"))
    size = sum(d.size for d in added.values()) / MiB
    largest = ", ".join(f"{d.name} {d.size / MiB:.1f}" for d in
                        sorted(added.values(), key=lambda d: -d.size)[:4])
    if size > lib.max_install_mb:
        problems.append(Problem(lib.where, f"field 'max_install_mb' value {lib.max_install_mb:g}: "
                                           f"`{command.text}` installs {size:.1f} MiB "
                                           f"({len(added)} distributions; largest: {largest})"))
    return problems, size, f"{len(added)} distributions, {size:.1f} MiB (max " \
                           f"{lib.max_install_mb:g}; largest: {largest})"


@dataclass
class _Context:
    root: Path
    uv: str
    tmp: Path
    libraries: list[Library]
    pyprojects: Mapping[str, Pyproject | None]
    wheels: dict[str, Path]
    report: WheelReport
    log: Log

    @property
    def by_dist(self) -> dict[str, Library]:
        return {str(canonicalize_name(lib.distribution)): lib for lib in self.libraries}

    def venv(self, interpreter: Interpreter, label: str, *, isolated_pip: bool
             ) -> tuple[Venv | None, str]:
        path = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=self.tmp)) / "venv"
        return make_venv(self.uv, interpreter, path, isolated_pip=isolated_pip)

    def drop(self, venv: Venv) -> None:
        shutil.rmtree(venv.path.parent, ignore_errors=True)


def _wrong_origin(ctx: _Context, inv: Inventory, *, editable: bool) -> list[str]:
    """mts1b-* distributions not installed from where the command must take them."""
    wrong = []
    folders = {str(canonicalize_name(lib.distribution)): (ctx.root / lib.path).resolve()
               for lib in ctx.libraries}
    versions = {str(canonicalize_name(lib.distribution)): lib.version for lib in ctx.libraries}
    for name, dist in sorted(inv.dists.items()):
        if not name.startswith("mts1b-"):
            continue
        url = (dist.direct_url or {}).get("url", "")
        if editable:
            path = Path(unquote(urlparse(url).path)).resolve() if url.startswith("file:") else None
            if path != folders.get(name):
                wrong.append(f"{name} {dist.version} from {url or 'an index'}")
        elif dist.direct_url is not None or dist.version != versions.get(name):
            wrong.append(f"{name} {dist.version} from {url or 'an index'}")
    return wrong


def _readme_task(ctx: _Context, command: InstallCommand, interpreter: Interpreter) -> Task:
    def task() -> tuple[list[Problem], list[Step]]:
        label = f"[{interpreter.version}] {command.text}"
        base = base_install_of(command)
        venv, why = ctx.venv(interpreter, "readme", isolated_pip=True)
        if venv is None:
            return [Problem(command.where, why)], []
        try:
            before, why = inventory(venv)
            if before is None:
                return [Problem(command.where, why)], []
            ran = run_in(venv, command.argv, ctx.root)
            steps = [Step(f"{label}: install", ran.seconds)]
            if not ran.ok:
                return [Problem(command.where, f"`{command.text}` fails in a clean virtualenv "
                                               f"(Python {interpreter.full}):\n    "
                                               f"{tail(ran.proc)}")], steps
            problems: list[Problem] = []
            pages = venv.index_pages()
            if pages:
                problems.append(Problem(command.where, f"`{command.text}` made pip read index "
                                                       f"pages: {', '.join(pages[:5])}"))
            after, why = inventory(venv)
            if after is None:
                return [*problems, Problem(command.where, why)], steps
            wrong = _wrong_origin(ctx, after, editable=False)
            if wrong:
                problems.append(Problem(command.where, f"`{command.text}` installed "
                                                       f"{'; '.join(wrong)}, not this "
                                                       "repository's wheels"))
            t1 = time.monotonic()
            modules = 0
            for req in command.requirements:
                lib = ctx.by_dist[str(canonicalize_name(req.name))]
                found, count = _import_problems(venv, lib, ctx.pyprojects.get(lib.name),
                                                command.where, f"`{command.text}`")
                problems += found
                modules += count
            steps.append(Step(f"{label}: import", time.monotonic() - t1))
            detail = ""
            if base is not None:
                lib = ctx.by_dist[str(canonicalize_name(base))]
                found, size, detail = check_closure(lib, command, before, after)
                problems += found
                ctx.report.sizes[lib.name] = size
                detail = f"; closure: {detail}"
            ctx.log(f"repocheck: [{interpreter.version}] `{command.text}` ({command.where}): "
                    f"installed in {ran.seconds:.1f}s, imported {modules} modules in "
                    f"{time.monotonic() - t1:.1f}s{detail}"
                    f"{'' if not problems else f' - {len(problems)} problem(s)'}")
            return problems, steps
        finally:
            ctx.drop(venv)

    return task


def _other_python_task(ctx: _Context, interpreter: Interpreter,
                       commands: Sequence[tuple[Library, InstallCommand]]) -> Task:
    def task() -> tuple[list[Problem], list[Step]]:
        label = f"[{interpreter.version}] README installs of {len(commands)} libraries"
        venv, why = ctx.venv(interpreter, f"py{interpreter.version}", isolated_pip=True)
        if venv is None:
            return [Problem(f"Python {interpreter.full}", why)], []
        try:
            problems: list[Problem] = []
            t0 = time.monotonic()
            for _, command in commands:
                ran = run_in(venv, command.argv, ctx.root)
                if not ran.ok:
                    problems.append(Problem(command.where, f"`{command.text}` fails on Python "
                                                           f"{interpreter.full}:\n    "
                                                           f"{tail(ran.proc)}"))
            installed = time.monotonic() - t0
            pages = venv.index_pages()
            if pages:
                problems.append(Problem(f"Python {interpreter.full}", "the README installs made "
                                        f"pip read index pages: {', '.join(pages[:5])}"))
            t1 = time.monotonic()
            modules = 0
            for lib, command in commands:
                found, count = _import_problems(venv, lib, ctx.pyprojects.get(lib.name),
                                                f"{command.where} (Python {interpreter.full})",
                                                f"`{command.text}` on Python {interpreter.full}")
                problems += found
                modules += count
            imported = time.monotonic() - t1
            ctx.log(f"repocheck: [{interpreter.version}] the README installs of "
                    f"{', '.join(lib.name for lib, _ in commands)}: {installed:.1f}s; imported "
                    f"{modules} modules in {imported:.1f}s"
                    f"{'' if not problems else f' - {len(problems)} problem(s)'}")
            return problems, [Step(f"{label}: install", installed),
                              Step(f"{label}: import", imported)]
        finally:
            ctx.drop(venv)

    return task


PYTEST_SUMMARY = re.compile(r"(\d+ (?:passed|failed|skipped|deselected|errors?|xfailed|xpassed|"
                            r"warnings?|tests? collected)[^=\n]*)")


def pytest_failures(output: str, errors: int = 12) -> str:
    """The lines that say what failed: pytest's short summary and the first ``E`` lines (the tail
    of the output is often warnings)."""
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if "short test summary info" in line), None)
    if start is None:
        return ""
    details = [line for line in lines[:start] if line.startswith(("E ", "ERROR ", "FAILED "))]
    return "\n    ".join([*details[:errors], *lines[start:]])


def _route_task(ctx: _Context, route: TestRoute, interpreter: Interpreter, collect: bool) -> Task:
    def task() -> tuple[list[Problem], list[Step]]:
        what = "collect" if collect else "tests"
        label = f"[{interpreter.version}] {route.label} {what}"
        venv, why = ctx.venv(interpreter, f"route-{route.library}", isolated_pip=False)
        if venv is None:
            return [Problem(route.where, why)], []
        try:
            problems: list[Problem] = []
            steps: list[Step] = []
            cwd = ctx.root
            times: list[str] = []
            summary = ""
            for command in route.commands:
                argv = command.argv
                if argv[0] == "cd":
                    cwd = cwd / argv[1]
                    continue
                if collect and argv[0] == "pytest":
                    argv = (*argv, "--collect-only", "-q")
                ran = run_in(venv, argv, cwd)
                steps.append(Step(f"{label}: {argv[0]} {argv[1] if len(argv) > 1 else ''}"
                                  .rstrip(), ran.seconds))
                times.append(f"{argv[0]} {ran.seconds:.1f}s")
                if argv[0] == "pytest":
                    found = PYTEST_SUMMARY.findall(ran.proc.stdout.strip().splitlines()[-1]
                                                   if ran.proc.stdout.strip() else "")
                    summary = ", ".join(found).strip(" =")
                if not ran.ok:
                    shown = pytest_failures(ran.proc.stdout) if argv[0] == "pytest" else ""
                    problems.append(Problem(command.where, f"`{' '.join(argv)}` fails on Python "
                                                           f"{interpreter.full} ({route.label} "
                                                           f"{what}, exit {ran.proc.returncode})"
                                                           f":\n    {shown or tail(ran.proc, 25)}"))
                    break
                if argv[:2] == ("pip", "install"):
                    pages = venv.mts1b_pages()
                    if pages:
                        problems.append(Problem(command.where, f"`{command.text}` made pip ask "
                                                               f"an index for {', '.join(pages)}"))
                    inv, why = inventory(venv)
                    wrong = _wrong_origin(ctx, inv, editable=True) if inv else [why]
                    if wrong:
                        problems.append(Problem(command.where, f"`{command.text}` installed "
                                                               f"{'; '.join(wrong)}, not the "
                                                               "library folders"))
            ctx.log(f"repocheck: [{interpreter.version}] {route.label} {what} ({route.where}): "
                    f"{', '.join(times)}{f' - {summary}' if summary else ''}"
                    f"{'' if not problems else f' - {len(problems)} problem(s)'}")
            return problems, steps
        finally:
            ctx.drop(venv)

    return task


def check_wheels(
    root: Path,
    libraries: Sequence[Library],
    pyprojects: Mapping[str, Pyproject | None],
    *,
    interpreters: Sequence[Interpreter],
    python_versions: Sequence[str] = (),
    only: Sequence[str] = (),
    jobs: int = 2,
    routes: bool = True,
    log: Log = lambda line: None,
) -> WheelReport:
    """Run the wheel stage (see the module docstring); ``interpreters[0]`` is the running one."""
    report = WheelReport()
    started = time.monotonic()
    uv = find_uv(root)
    if uv is None:
        report.add([Problem("wheels", "uv not found ($UV, PATH, .bootstrap/bin/uv)")])
        return report
    if not interpreters:
        report.add([Problem("wheels", "no Python >= 3.11 found to run the checks")])
        return report
    by_name = {lib.name: lib for lib in libraries}
    unknown = sorted(set(only) - set(by_name))
    if unknown:
        report.add([Problem("wheels", f"unknown library name(s) {unknown}")])
        return report
    present = [lib for lib in libraries if (root / lib.path).is_dir()]
    targets = [lib for lib in present if not only or lib.name in only]
    needed = {lib.name for t in targets for lib in (t, *closure(t, by_name))}
    primary, others = interpreters[0], list(interpreters[1:])
    found = {i.version for i in interpreters}
    missing = [v for v in python_versions if v not in found]
    log("repocheck: Pythons found: " + ", ".join(
        f"{i.full} ({i.executable}{', running' if i is primary else ''})" for i in interpreters)
        + (f"; supported but not found (install-checked only): {', '.join(missing)}"
           if missing else ""))
    installs, _ = read_install_commands(root, present)  # their form: the static checks
    found_routes, _ = read_test_routes(root)
    chosen = {lib.name for lib in targets}
    with tempfile.TemporaryDirectory(prefix="mts1b-repocheck-") as tmp_name:
        ctx = _Context(root, uv, Path(tmp_name), present, pyprojects, {}, report, log)
        pool = _Pool(jobs, report)
        try:
            if routes:
                for route in found_routes:
                    if route.library not in chosen or route.library not in by_name:
                        continue
                    pythons = interpreters if route.mode == "every-python" else [primary]
                    for interpreter in pythons:
                        pool.submit(f"route:{route.library}",
                                    _route_task(ctx, route, interpreter,
                                                collect=route.mode == "collect"))
                report.test_run = [i.full for i in interpreters]
            _wheelhouse(ctx, [lib for lib in present if lib.name in needed], targets,
                        installs, primary, others, missing, pool)
        finally:
            pool.join()
    report.install_checked = missing
    report.wall = time.monotonic() - started
    return report


def _wheelhouse(
    ctx: _Context,
    libraries: Sequence[Library],
    targets: Sequence[Library],
    installs: Sequence[InstallCommand],
    primary: Interpreter,
    others: Sequence[Interpreter],
    missing: Sequence[str],
    pool: _Pool,
) -> None:
    """Build the wheelhouse one Python at a time, queueing each Python's installs when ready."""
    report = ctx.report
    t0 = time.monotonic()
    builder = WheelhouseBuilder(ctx.root, libraries, ctx.root / "dist", ctx.uv, ctx.log,
                                workspace=ctx.libraries)
    try:
        ok = builder.build_libraries()
        report.add(builder.result.problems)
        ctx.wheels.update(builder.result.wheels)
        for lib in libraries:
            wheel = ctx.wheels.get(lib.name)
            if wheel is not None:
                report.add([Problem(f"{lib.path}/", p)
                            for p in check_wheel_contents(wheel, lib, ctx.root)])
        report.add(steps=[Step("wheelhouse: library wheels and uv export",
                               time.monotonic() - t0)])
        if not ok:
            return
        chosen = {lib.name for lib in targets}
        by_dist = ctx.by_dist
        t1 = time.monotonic()
        found = builder.add_python(primary.version, primary.executable)
        report.add(found, [Step(f"wheelhouse: Python {primary.version}", time.monotonic() - t1)])
        seen: set[str] = set()
        for command in installs:
            names = {by_dist[str(canonicalize_name(r.name))].name for r in command.requirements}
            if found or command.text in seen or not names & chosen:
                continue
            seen.add(command.text)
            pool.submit(f"readme:{command.text}", _readme_task(ctx, command, primary))
        bases = [(lib, c) for lib in ctx.libraries for c in installs
                 if lib.name in chosen and c.file.startswith(f"{lib.path}/")
                 and base_install_of(c) == lib.distribution]
        for interpreter in others:
            t1 = time.monotonic()
            found = builder.add_python(interpreter.version, interpreter.executable)
            report.add(found, [Step(f"wheelhouse: Python {interpreter.version}",
                                    time.monotonic() - t1)])
            if not found and bases:
                pool.submit(f"python:{interpreter.version}",
                            _other_python_task(ctx, interpreter, bases))
        for version in missing:
            t1 = time.monotonic()
            found = builder.add_python(version, None)
            report.add([Problem(p.where, f"{p.message} (install check of Python {version}, "
                                         "which is not on this machine)") for p in found],
                       [Step(f"wheelhouse: Python {version} (install check)",
                             time.monotonic() - t1)])
    finally:
        builder.close()
