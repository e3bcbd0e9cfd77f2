#!/usr/bin/env python3
"""The commands of the README, runnable on a fresh machine with only Python >= 3.11.

    python3 dev.py test   # set up, then lint, type-check, test, docs, dedupe, repocheck
    python3 dev.py demo   # set up the workspace, then run a backtest on the synthetic market
    python3 dev.py wheels [--python X.Y ...]   # every wheel into dist/, for the offline install

``wheels`` builds each library's wheel and downloads the third-party wheels of their runtime
closure, pinned and hash-checked from uv.lock, for the Python running this script (and each
``--python X.Y``), so that ``pip install --no-index --find-links dist mts1b-<name>`` works on a
machine that never asks an index for an ``mts1b-*`` name (none is registered on PyPI).

Why a Python script and not a Makefile: the only thing we may assume on a new machine is Python.
The script finds ``uv`` (or installs it from PyPI into ``.bootstrap/``), syncs the whole workspace
into ``.venv/`` and runs each step through ``uv run``. Every step runs even when an earlier one
fails, so one run shows every problem; the exit status is non-zero if any step failed.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent
BOOTSTRAP = ROOT / ".bootstrap"

if sys.version_info < (3, 11):  # noqa: UP036 - the guard exists for old interpreters
    sys.exit(f"MTS1B needs Python >= 3.11, this is {sys.version.split()[0]}")


def _uv() -> str:
    """Path of a usable ``uv``: on PATH, else installed from PyPI into .bootstrap/."""
    found = shutil.which("uv")
    if found:
        return found
    bindir = BOOTSTRAP / ("Scripts" if os.name == "nt" else "bin")
    candidate = bindir / ("uv.exe" if os.name == "nt" else "uv")
    if not candidate.exists():
        print("[dev] uv not found: installing it from PyPI into .bootstrap/", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(BOOTSTRAP)
        python = bindir / ("python.exe" if os.name == "nt" else "python")
        subprocess.run([str(python), "-m", "pip", "install", "-q", "uv>=0.9,<1"], check=True)
    return str(candidate)


def _run(step: str, argv: Sequence[str], env: dict[str, str] | None = None,
         out: IO[str] | None = None) -> bool:
    """Run one step, saying what it runs, how it ended and how long it took (on ``out``, which
    the child writes to as well: stdout when None)."""
    def say(line: str) -> None:
        if out is None:
            print(line, flush=True)
        else:
            out.write(line + "\n")
            out.flush()
    say(f"\n[dev] === {step}: {' '.join(argv)}")
    started = time.monotonic()
    code = subprocess.run(list(argv), cwd=ROOT, env=env, stdout=out,
                          stderr=subprocess.STDOUT if out is not None else None).returncode
    say(f"[dev] === {step}: {'ok' if code == 0 else f'FAILED (exit {code})'} "
        f"in {time.monotonic() - started:.1f}s")
    return code == 0


Lane = Callable[[IO[str]], dict[str, bool]]


def _side_by_side(*lanes: Lane) -> dict[str, bool]:
    """Run ``lanes`` at once, each writing to its own log, then print the logs one after the
    other and return every step's result.

    Why: most of the suite waits - on servers, on processes it starts and stops, on pip and
    its index - and one step at a time left the cores idle; run one after the other the steps
    took over 24 minutes. What shares the machine must not share state: the two pytest lanes
    hold different libraries' tests (each test makes its own NATS namespace and PostgreSQL
    schema), the wheel-server run has servers of its own, and the checks write only ``site/``,
    ``dist/`` and temporary folders.
    """
    results: dict[str, bool] = {}
    with tempfile.TemporaryDirectory(prefix="mts1b-dev-") as folder:
        logs = [Path(folder) / f"lane{n}.log" for n in range(len(lanes))]

        def work(lane: Lane, log: Path) -> dict[str, bool]:
            with log.open("w") as out:
                return lane(out)
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(len(lanes)) as pool:
            done = [pool.submit(work, lane, log) for lane, log in zip(lanes, logs, strict=True)]
            while concurrent.futures.wait(done, timeout=60).not_done:  # a sign of life for CI
                print(f"[dev] {len(lanes)} lanes side by side, "
                      f"{time.monotonic() - started:.0f}s so far", flush=True)
            for future, log in zip(done, logs, strict=True):
                results.update(future.result())
                sys.stdout.write(log.read_text())
                sys.stdout.flush()
    return results


def _sync(uv: str) -> None:
    # --extra dev: every library's own test dependencies (its `dev` extra) in one environment.
    if not _run("sync", [uv, "sync", "--all-packages", "--all-groups", "--extra", "dev",
                         "--locked"]):
        sys.exit("[dev] could not set up the workspace environment")


def _services_env(uv: str, *extra: str, dev_dir: Path | None = None,
                  out: IO[str] | None = None) -> dict[str, str] | None:
    """Make NATS and PostgreSQL reachable through ``mts dev up --export [extra...]``.

    Without ``--local`` that is the configured servers when they answer, else local ones from the
    wheels; with it, always the wheels' servers (a new user's machine). The KEY=VALUE lines it
    prints (MTS_NATS_URL, MTS_DATABASE_URL) go into the environment of the test run. ``None``
    when the servers could not be brought up (the reason is printed).
    """
    env = dict(os.environ)
    if dev_dir is not None:
        env["MTS_DEV_DIR"] = str(dev_dir)
    up = subprocess.run(
        [uv, "run", "--no-sync", "mts", "dev", "up", "--export", *extra],
        cwd=ROOT, capture_output=True, text=True, env=env,
    )
    said = sys.stdout if out is None else out
    if up.returncode != 0:
        said.write(f"[dev] could not bring up NATS/PostgreSQL:\n{up.stdout}{up.stderr}\n")
        said.flush()
        return None
    for line in up.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.startswith("MTS_"):
            env[key.strip()] = value.strip()
            said.write(f"[dev] {key.strip()}={value.strip()}\n")
    said.flush()
    return env


# What runs again on the servers from the wheels: the cross-library lifecycle suite (every
# library's use of NATS and PostgreSQL, end to end) and the platform's integration tests (the
# bus, the key-value store, migrations and the dev servers themselves).
WHEEL_SERVER_PATHS = ("extraction/tests", "mts1b-platform/tests")

# Which tests run in which lane. The first pytest lane: these folders' tests; the checks lane
# runs the tools' tests after repocheck; every other library (and any new one) goes to the
# second pytest lane, which then reruns the lifecycle suite on the wheels' servers. Chosen so
# the three take about as long (each pytest run prints its slowest tests and leaves a JUnit
# report in .mts1b-dev/test-reports/): the paper loop's tests are the longest.
FIRST_LANE = ("mts1b-research", "mts1b-GPUbacktester", "mts1b-quantkit", "mts1b-foundation",
              "mts1b-datalake", "mts1b-portfolio", "mts1b-treasury", "mts1b-platform",
              "extraction")
CHECKS_LANE = ("tools",)
PYTEST_RUNS = 3


def _pytest_run(run: Sequence[str], env: dict[str, str], number: int, paths: Sequence[str],
                out: IO[str]) -> dict[str, bool]:
    """One pytest process over ``paths``: a base temp of its own (pytest's default numbering is
    shared between processes), no shared cache, its slowest tests and a JUnit report."""
    reports = ROOT / ".mts1b-dev" / "test-reports"
    reports.mkdir(parents=True, exist_ok=True)
    name = f"pytest ({number}/{PYTEST_RUNS})"
    argv = [*run, "pytest", "-q", "-p", "no:cacheprovider", "--durations=15",
            f"--junitxml={reports / f'pytest-{number}.xml'}", "--basetemp",
            str(Path(tempfile.gettempdir()) / f"mts1b-pytest-{os.getpid()}-{number}"), *paths]
    return {name: _run(name, argv, env, out)}


def _pytest_paths() -> tuple[list[str], list[str], list[str]]:
    """The test folders of the first pytest lane, the second and the checks lane."""
    first = [f"{name}/tests" for name in FIRST_LANE]
    checks = [f"{name}/tests" for name in CHECKS_LANE]
    second = sorted(f"{path.name}/tests" for path in ROOT.glob("mts1b-*/")
                    if (path / "tests").is_dir() and path.name not in FIRST_LANE)
    return first, second, checks


def _pytest_on_wheel_servers(uv: str, out: IO[str] | None = None,
                             extra_env: dict[str, str] | None = None) -> bool:
    """The integration tests of ``WHEEL_SERVER_PATHS`` again, against NATS and PostgreSQL 18
    started from the wheels.

    CI machines (and most developers') have NATS and PostgreSQL on the standard ports, so the
    main run never touches the servers a new user gets from ``mts dev up``; this step does, on
    free ports, and stops them afterwards. It runs the lifecycle suite (extraction/tests), which
    drives every service that keeps state in PostgreSQL or talks over NATS, and the platform's
    own server tests - not every library's integration tests a second time: those test their
    own logic, which does not change with the server's version, and rerunning all of them
    would not fit the suite's 15-minute budget.
    """
    dev_dir = ROOT / ".mts1b-dev" / "wheel-servers"
    env = _services_env(uv, "--local", dev_dir=dev_dir, out=out)
    if env is None:
        return False
    env.update(extra_env or {})
    try:
        return _run("pytest on servers from the wheels",
                    [uv, "run", "--no-sync", "pytest", "-q", "-m", "integration",
                     "-p", "no:cacheprovider", "--basetemp",
                     str(Path(tempfile.gettempdir()) / f"mts1b-pytest-{os.getpid()}-wheels"),
                     *WHEEL_SERVER_PATHS],
                    env=env, out=out)
    finally:
        subprocess.run([uv, "run", "--no-sync", "mts", "dev", "down"], cwd=ROOT,
                       env={**os.environ, "MTS_DEV_DIR": str(dev_dir)}, check=False,
                       capture_output=True)


def test() -> int:
    """Three lanes side by side: two pytest lanes (the second then reruns the integration
    suite on the wheels' servers) and the checks (ruff, mypy, docs, dedupe, repocheck, then the
    tools' tests).

    Why the checks run beside the tests rather than after them: repocheck spends most of its
    time waiting on pip and its index, which leaves CPU for the tests; one after the other took
    over 18 minutes. repocheck rewrites ``dist/`` meanwhile, so the release tests that would
    read wheels from it get an empty folder of their own (``MTS_DEPLOY_TEST_DIST``) and
    download the locked wheels by hash instead.
    """
    uv = _uv()
    _sync(uv)
    run = [uv, "run", "--no-sync"]
    own_dist = Path(tempfile.mkdtemp(prefix="mts1b-test-dist-"))
    isolated = {"MTS_DEPLOY_TEST_DIST": str(own_dist)}
    env = {**(_services_env(uv) or dict(os.environ)), **isolated}
    first, second, tools = _pytest_paths()
    docs_env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}

    def first_lane(out: IO[str]) -> dict[str, bool]:
        return _pytest_run(run, env, 1, first, out)

    def second_lane(out: IO[str]) -> dict[str, bool]:
        return {**_pytest_run(run, env, 2, second, out),
                "pytest-wheel-servers": _pytest_on_wheel_servers(uv, out, isolated)}

    def checks(out: IO[str]) -> dict[str, bool]:
        return {
            "ruff": _run("ruff", [*run, "ruff", "check", "."], out=out),
            "mypy": _run("mypy", [*run, "python", "-m", "tools.typecheck"], out=out),
            "docs": _run("docs", [*run, "mkdocs", "build", "--strict", "--site-dir",
                                  str(ROOT / "site")], env=docs_env, out=out),
            "dedupe": _run("dedupe", [*run, "python", "-m", "tools.dedupe"], out=out),
            # three at once: its installs wait on pip's index as much as on the CPU
            "repocheck": _run("repocheck", [*run, "python", "-m", "tools.repocheck",
                                            "--jobs", "3"], out=out),
            **_pytest_run(run, env, 3, tools, out),
        }
    try:
        results = _side_by_side(first_lane, second_lane, checks)
    finally:
        shutil.rmtree(own_dist, ignore_errors=True)
    print("\n[dev] summary: " + ", ".join(f"{k}={'ok' if v else 'FAILED'}"
                                         for k, v in results.items()), flush=True)
    return 1 if not all(results.values()) else 0


def demo() -> int:
    uv = _uv()
    _sync(uv)
    ok = _run("demo", [uv, "run", "--no-sync", "python", "-m", "mts1b_GPUbacktester.demo"])
    return 0 if ok else 1


def wheels(args: Sequence[str] = ()) -> int:
    """Fill dist/ (tools/repocheck/wheelhouse.py) for this Python and each ``--python X.Y``."""
    uv = _uv()
    _sync(uv)
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    ok = _run("wheels", [uv, "run", "--no-sync", "python", "-m", "tools.repocheck.wheelhouse",
                         "--python", here, *args])
    return 0 if ok else 1


def main(argv: Sequence[str]) -> int:
    commands = {"test": test, "demo": demo}
    if argv[:1] == ["wheels"]:
        return wheels(argv[1:])
    if len(argv) != 1 or argv[0] not in commands:
        print(__doc__)
        return 2
    return commands[argv[0]]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
