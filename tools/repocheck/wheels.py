"""The wheel stage: the wheelhouse, the documented installs and the documented test commands.

What runs (every command as the documentation writes it; see tools/README.md):

1. **wheelhouse** (``tools.repocheck.wheelhouse``, the body of ``python3 dev.py wheels``) into
   ``<root>/dist``: each library's wheel, checked to hold exactly its package with ``py.typed`` and
   the root's LICENSE and NOTICE in ``.dist-info/licenses/``; then the locked third-party wheels for
   every Python found, and for each supported Python not found (repos.yaml ``python_versions``),
   with ``pip download --only-binary=:all: --python-version X.Y``: that is the install check of a
   version no interpreter here can run.
2. **README installs** on the running Python: every ``pip install --no-index --find-links dist
   ...`` of the documentation in its own fresh virtualenv, with pip's configuration switched off;
   every ``mts1b-*`` distribution must be this repository's, from ``dist/``. The plain install
   of a library is its *closure*: the distributions it added to the virtualenv. The closure must
   hold nothing of the entry's ``forbidden`` list and no file named like a server executable, and
   its size on disk (without bytecode) must stay within ``max_install_mb``. The installed
   libraries are imported with every submodule (a submodule may fail only for a missing optional
   dependency).
3. **other Pythons**: every library's plain README install, alone, with the same closure checks
   and imports. Libraries share a virtualenv along a *chain* (``install_chains``) in which each
   library depends on all the ones before it: after its install the virtualenv holds exactly what
   installing it alone into a clean one would, and the wheels already unpacked are not unpacked
   again.
4. **CONTRIBUTING routes**, each in a fresh virtualenv: each ``every-python`` block runs its tests
   on every other Python found; on the running Python, whose tests ``python3 dev.py test`` runs
   already, it and each ``collect`` block install and run their ``pytest`` with ``--collect-only
   -q`` added. pip must not fetch an index page of an ``mts1b-*`` name, and every ``mts1b-*``
   distribution must be the editable install of its folder.

Steps 2 to 4 run in parallel (``--jobs``), the longest first (as timed by the last run, see
``Timings``), never two routes in one library folder at once (their pytest caches and test files
are shared). Each step prints its time.
"""

from __future__ import annotations

import json
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
__all__ = ["Timings", "WheelReport", "check_wheel_contents", "check_wheels", "closure", "find_uv",
           "install_chains"]


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
    sizes: dict[str, float] = field(default_factory=dict)  # library -> MiB, running Python
    # "3.12.1" -> library -> MiB of its closure, for every Python found
    sizes_by_python: dict[str, dict[str, float]] = field(default_factory=dict)
    test_run: list[str] = field(default_factory=list)  # "3.12.1" for each Python tests ran on
    collected: list[str] = field(default_factory=list)  # routes installed and collected only
    install_checked: list[str] = field(default_factory=list)  # "3.14" for versions not found
    wall: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, problems: Sequence[Problem] = (), steps: Sequence[Step] = ()) -> None:
        """Record findings; called from the worker threads and the main thread alike."""
        with self._lock:
            self.problems += problems
            self.steps += steps


Task = Callable[[], tuple[list[Problem], list[Step]]]


class Timings:
    """How long each task took on the last run, so that the longest start first.

    With two workers the wall time is at least half the steps' sum, and more by whatever runs
    alone at the end: starting the longest tasks first (and the short ones last) keeps that tail
    short. A task's time depends on the machine and its caches, so the last run's time on this
    machine is the estimate; a task not seen before gets its kind's default. The record lives
    beside pip's and uv's caches (``$XDG_CACHE_HOME`` or ``~/.cache``), which CI keeps between
    runs; a missing or unreadable file only costs the order.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._seconds: dict[str, float] = {}
        self._new: dict[str, float] = {}
        self._lock = threading.Lock()
        if path is not None:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                self._seconds = {str(k): float(v) for k, v in data.items()}
            except (OSError, ValueError, AttributeError, TypeError):
                self._seconds = {}

    @staticmethod
    def default_path() -> Path:
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(cache) / "mts1b" / "repocheck-timings.json"

    def estimate(self, name: str, default: float) -> float:
        return self._seconds.get(name, default)

    def record(self, name: str, seconds: float) -> None:
        with self._lock:
            self._new[name] = seconds

    def save(self) -> None:
        if self.path is None or not self._new:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            merged = {**self._seconds, **self._new}
            self.path.write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n",
                                 encoding="utf-8")
        except OSError:
            pass  # only the next run's order suffers


class _Pool:
    """Worker threads running tasks, the longest estimate first; never two tasks with the same
    key at once. Each task's time goes to ``timings`` under its name."""

    def __init__(self, jobs: int, report: WheelReport, timings: Timings) -> None:
        self._queue: list[tuple[float, int, str, str, Task]] = []
        self._busy: set[str] = set()
        self._open = True
        self._cond = threading.Condition()
        self._report = report
        self._timings = timings
        self._threads = [threading.Thread(target=self._work, daemon=True)
                         for _ in range(max(1, jobs))]
        for thread in self._threads:
            thread.start()

    def submit(self, key: str, name: str, default: float, task: Task) -> None:
        """Queue ``task``; ``name`` identifies it across runs, ``default`` is its estimate in
        seconds when the last run did not time it."""
        with self._cond:
            cost = self._timings.estimate(name, default)
            self._queue.append((cost, len(self._queue), key, name, task))
            self._cond.notify_all()

    def _work(self) -> None:
        while True:
            with self._cond:
                while True:
                    ready = [entry for entry in self._queue if entry[2] not in self._busy]
                    if ready or (not self._open and not self._queue):
                        break
                    self._cond.wait()
                if not ready:
                    return
                entry = max(ready, key=lambda e: (e[0], -e[1]))
                self._queue.remove(entry)
                _, _, key, name, task = entry
                self._busy.add(key)
            started = time.monotonic()
            try:
                problems, steps = task()
            except Exception as exc:  # a bug in a task must not hang the pool
                problems, steps = [Problem("repocheck", f"task {key} crashed: {exc!r}")], []
            self._timings.record(name, time.monotonic() - started)
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


# Import names whose distribution is named otherwise (the rest match, or are a prefix of it:
# ``nats`` -> ``nats-py``).
_DISTRIBUTION_OF = {"nacl": "pynacl", "yaml": "pyyaml", "dotenv": "python-dotenv", "jwt": "pyjwt"}


def _optional_ok(missing: str | None, pyproject: Pyproject | None) -> bool:
    """Whether the module that failed to import belongs to one of the library's extras."""
    if not missing or pyproject is None:
        return False
    top = missing.split(".")[0]
    wanted = canonicalize_name(_DISTRIBUTION_OF.get(top, top))
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
    primary: Interpreter

    @property
    def by_dist(self) -> dict[str, Library]:
        return {str(canonicalize_name(lib.distribution)): lib for lib in self.libraries}

    def venv(self, interpreter: Interpreter, label: str, *, isolated_pip: bool
             ) -> tuple[Venv | None, str]:
        path = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=self.tmp)) / "venv"
        return make_venv(self.uv, interpreter, path, isolated_pip=isolated_pip)

    def drop(self, venv: Venv) -> None:
        shutil.rmtree(venv.path.parent, ignore_errors=True)

    def record_size(self, interpreter: Interpreter, lib: Library, size: float) -> None:
        with self.report._lock:
            self.report.sizes_by_python.setdefault(interpreter.full, {})[lib.name] = size
            if interpreter is self.primary:
                self.report.sizes[lib.name] = size


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


def _after_install(ctx: _Context, venv: Venv, command: InstallCommand, interpreter: Interpreter,
                   seed: Inventory, imports: Sequence[Library]) -> tuple[list[Problem], str]:
    """What one wheelhouse install left in ``venv``: every ``mts1b-*`` distribution from
    ``dist/``; for the plain install of a library, its closure (what the virtualenv holds beyond
    ``seed``) checked against the manifest; then ``imports`` imported with every submodule.
    Returns the problems and a line saying what was found."""
    on = f" on Python {interpreter.full}" if interpreter is not ctx.primary else ""
    where = command.where
    after, why = inventory(venv)
    if after is None:
        return [Problem(where, why)], ""
    problems: list[Problem] = []
    wrong = _wrong_origin(ctx, after, editable=False)
    if wrong:
        problems.append(Problem(where, f"`{command.text}`{on} installed {'; '.join(wrong)}, not "
                                       "this repository's wheels"))
    detail = ""
    base = base_install_of(command)
    if base is not None:
        lib = ctx.by_dist[str(canonicalize_name(base))]
        found, size, detail = check_closure(lib, command, seed, after)
        problems += [Problem(p.where, p.message + on) for p in found]
        ctx.record_size(interpreter, lib, size)
        detail = f"; closure: {detail}"
    t0 = time.monotonic()
    modules = 0
    for lib in imports:
        found_imports, count = _import_problems(venv, lib, ctx.pyprojects.get(lib.name), where,
                                                f"`{command.text}`{on}")
        problems += found_imports
        modules += count
    return problems, f"imported {modules} modules in {time.monotonic() - t0:.1f}s{detail}"


def _readme_task(ctx: _Context, command: InstallCommand, interpreter: Interpreter) -> Task:
    """One documented wheelhouse install, alone in a clean virtualenv."""
    def task() -> tuple[list[Problem], list[Step]]:
        label = f"[{interpreter.version}] {command.text}"
        venv, why = ctx.venv(interpreter, "readme", isolated_pip=True)
        if venv is None:
            return [Problem(command.where, why)], []
        try:
            seed, why = inventory(venv)
            if seed is None:
                return [Problem(command.where, why)], []
            ran = run_in(venv, command.argv, ctx.root)
            steps = [Step(f"{label}: install", ran.seconds)]
            if not ran.ok:
                return [Problem(command.where, f"`{command.text}` fails in a clean virtualenv "
                                               f"(Python {interpreter.full}):\n    "
                                               f"{tail(ran.proc)}")], steps
            problems: list[Problem] = []
            t1 = time.monotonic()
            imports = [ctx.by_dist[str(canonicalize_name(req.name))]
                       for req in command.requirements]
            found, detail = _after_install(ctx, venv, command, interpreter, seed, imports)
            problems += found
            steps.append(Step(f"{label}: checks and imports", time.monotonic() - t1))
            ctx.log(f"repocheck: [{interpreter.version}] `{command.text}` ({command.where}): "
                    f"installed in {ran.seconds:.1f}s, {detail}"
                    f"{'' if not problems else f' - {len(problems)} problem(s)'}")
            return problems, steps
        finally:
            ctx.drop(venv)

    return task


def install_chains(
    installs: Sequence[tuple[Library, InstallCommand]], by_name: Mapping[str, Library]
) -> list[list[tuple[Library, InstallCommand]]]:
    """The plain installs grouped into chains in which each library depends on every library
    before it (``depends_on``, transitively).

    Installed in one virtualenv in chain order, each library's install then finds exactly its
    own closure in place and adds nothing of another's: the virtualenv afterwards holds what
    installing it alone into a clean one would (the static checks make each pyproject's sibling
    requirements equal ``depends_on``). Libraries are taken by the size of their dependency
    closure, each appended to the chain whose last library it depends on with the largest
    closure, or starting a new one.
    """
    below = {lib.name: {dep.name for dep in closure(lib, by_name)} for lib, _ in installs}
    chains: list[list[tuple[Library, InstallCommand]]] = []
    for lib, command in sorted(installs, key=lambda item: (len(below[item[0].name]),
                                                           item[0].name)):
        fits = [chain for chain in chains if chain[-1][0].name in below[lib.name]]
        if fits:
            max(fits, key=lambda chain: len(below[chain[-1][0].name])).append((lib, command))
        else:
            chains.append([(lib, command)])
    return chains


def _chain_task(ctx: _Context, interpreter: Interpreter,
                chain: Sequence[tuple[Library, InstallCommand]]) -> Task:
    """The plain README installs of a chain, one after the other in one virtualenv."""
    def task() -> tuple[list[Problem], list[Step]]:
        names = " > ".join(lib.name for lib, _ in chain)
        label = f"[{interpreter.version}] README installs {names}"
        venv, why = ctx.venv(interpreter, f"py{interpreter.version}", isolated_pip=True)
        if venv is None:
            return [Problem(f"Python {interpreter.full}", why)], []
        try:
            seed, why = inventory(venv)
            if seed is None:
                return [Problem(f"Python {interpreter.full}", why)], []
            problems: list[Problem] = []
            installing = checking = 0.0
            for i, (lib, command) in enumerate(chain):
                ran = run_in(venv, command.argv, ctx.root)
                installing += ran.seconds
                if not ran.ok:
                    rest = [other.name for other, _ in chain[i + 1:]]
                    after = f" (so {', '.join(rest)}, which need it, were not installed on " \
                            "this Python)" if rest else ""
                    problems.append(Problem(command.where, f"`{command.text}` fails on Python "
                                                           f"{interpreter.full}{after}:\n    "
                                                           f"{tail(ran.proc)}"))
                    break
                t0 = time.monotonic()
                found, detail = _after_install(ctx, venv, command, interpreter, seed, [lib])
                checking += time.monotonic() - t0
                problems += found
                before = f", after {' > '.join(o.name for o, _ in chain[:i])}" if i else ""
                ctx.log(f"repocheck: [{interpreter.version}] `{command.text}` ({command.where}"
                        f"{before}): installed in {ran.seconds:.1f}s, {detail}"
                        f"{'' if not found else f' - {len(found)} problem(s)'}")
            return problems, [Step(f"{label}: install", installing),
                              Step(f"{label}: checks and imports", checking)]
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
    test_running: bool = False,
    timings: Timings | None = None,
    log: Log = lambda line: None,
) -> WheelReport:
    """Run the wheel stage (see the module docstring); ``interpreters[0]`` is the running one.

    ``test_running`` runs the ``every-python`` tests on the running Python too (by default they
    are only installed and collected there: ``python3 dev.py test`` runs them). ``timings``
    orders the tasks (none: by kind) and is updated with this run's times.
    """
    report = WheelReport()
    started = time.monotonic()
    timings = timings or Timings(None)
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
        ctx = _Context(root, uv, Path(tmp_name), present, pyprojects, {}, report, log, primary)
        pool = _Pool(jobs, report, timings)
        try:
            if routes:
                _submit_routes(ctx, pool, [r for r in found_routes
                                           if r.library in chosen and r.library in by_name],
                               interpreters, test_running)
            _wheelhouse(ctx, [lib for lib in present if lib.name in needed], targets,
                        installs, primary, others, missing, pool)
        finally:
            pool.join()
    timings.save()
    report.install_checked = missing
    report.wall = time.monotonic() - started
    return report


def _submit_routes(ctx: _Context, pool: _Pool, routes: Sequence[TestRoute],
                   interpreters: Sequence[Interpreter], test_running: bool) -> None:
    """Queue each route on its Pythons; say in the report which Pythons ran tests."""
    primary = interpreters[0]
    tested: set[str] = set()
    for route in routes:
        pythons = interpreters if route.mode == "every-python" else [primary]
        if route.mode == "every-python" and len(pythons) > 1 and not test_running:
            # The command runs whole on the other Pythons, and the running one runs its tests
            # in the workspace: installing it once more here only to collect adds nothing
            # but a minute of pip.
            pythons = [i for i in pythons if i is not primary]
        for interpreter in pythons:
            collect = route.mode == "collect" or (interpreter is primary and not test_running)
            if not collect:
                tested.add(interpreter.full)
            name = f"[{interpreter.version}] {route.label} {'collect' if collect else 'tests'}"
            pool.submit(f"route:{route.library}", name, 40.0 if collect else 100.0,
                        _route_task(ctx, route, interpreter, collect))
    ctx.report.test_run = [i.full for i in interpreters if i.full in tested]
    if routes and primary.full not in tested:
        ctx.report.collected = [primary.full]


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
        by_name = {lib.name: lib for lib in ctx.libraries}
        t1 = time.monotonic()
        found = builder.add_python(primary.version, primary.executable)
        report.add(found, [Step(f"wheelhouse: Python {primary.version}", time.monotonic() - t1)])
        seen: set[str] = set()
        for command in installs:
            names = {by_dist[str(canonicalize_name(r.name))].name for r in command.requirements}
            if found or command.text in seen or not names & chosen:
                continue
            seen.add(command.text)
            pool.submit(f"readme:{command.text}", f"[{primary.version}] {command.text}", 20.0,
                        _readme_task(ctx, command, primary))
        bases: dict[str, tuple[Library, InstallCommand]] = {}
        for command in installs:
            base = base_install_of(command)
            owner = by_dist.get(str(canonicalize_name(base))) if base else None
            if owner is not None and owner.name in chosen \
                    and command.file.startswith(f"{owner.path}/"):
                bases.setdefault(owner.name, (owner, command))
        chains = install_chains([bases[name] for name in sorted(bases)], by_name)
        for interpreter in others:
            t1 = time.monotonic()
            found = builder.add_python(interpreter.version, interpreter.executable)
            report.add(found, [Step(f"wheelhouse: Python {interpreter.version}",
                                    time.monotonic() - t1)])
            if found:
                continue
            for chain in chains:
                order = " > ".join(member.name for member, _ in chain)
                pool.submit(f"chain:{interpreter.version}:{order}",
                            f"[{interpreter.version}] README installs {order}",
                            10.0 + 10.0 * len(chain), _chain_task(ctx, interpreter, chain))
        for version in missing:
            t1 = time.monotonic()
            found = builder.add_python(version, None)
            report.add([Problem(p.where, f"{p.message} (install check of Python {version}, "
                                         "which is not on this machine)") for p in found],
                       [Step(f"wheelhouse: Python {version} (install check)",
                             time.monotonic() - t1)])
    finally:
        builder.close()
