"""``python -m tools.repocheck``: check repos.yaml, folders, pyprojects, imports, layers, licenses,
the documented commands, the wheelhouse, the installs and the tests on every Python found.

Exit 0 with a summary when everything holds, 1 with one line per problem otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tools.repocheck.interpreters import find_interpreters
from tools.repocheck.static import check_static
from tools.repocheck.wheels import Timings, WheelReport, check_wheels

ROOT = Path(__file__).resolve().parents[2]


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _summary(report: WheelReport, jobs: int) -> None:
    """Per-step timings (longest first), closure sizes and which Pythons were tested how."""
    if report.steps:
        _say(f"repocheck: timings (wall {report.wall:.1f}s with {jobs} jobs; "
             f"{sum(s.seconds for s in report.steps):.1f}s of steps):")
        for step in sorted(report.steps, key=lambda s: -s.seconds):
            _say(f"  {step.seconds:7.1f}s  {step.name}")
    for python, sizes in sorted(report.sizes_by_python.items()):
        _say(f"repocheck: install sizes without bytecode, Python {python} (MiB): " + ", ".join(
            f"{name} {size:.1f}" for name, size in sorted(sizes.items())))
    if report.test_run or report.collected or report.install_checked:
        collected = (f"; installed and collected only: {', '.join(report.collected)} (its tests "
                     "run in `python3 dev.py test`)") if report.collected else ""
        _say(f"repocheck: Pythons test-run: {', '.join(report.test_run) or 'none'}{collected}; "
             f"install-checked only: {', '.join(report.install_checked) or 'none'}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.repocheck",
        description="Check the manifest, the folders, each pyproject.toml, the real imports "
        "against depends_on and the layers, the licenses, the documented install and test "
        "commands, and run those commands on every Python found.",
    )
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="repository root (default: %(default)s)"
    )
    stage = parser.add_mutually_exclusive_group()
    stage.add_argument("--no-wheels", action="store_true", help="skip the wheel stage")
    stage.add_argument("--wheels", action="store_true", help="run only the wheel stage")
    parser.add_argument(
        "--library", action="append", default=[], metavar="NAME",
        help="wheel stage for this library only (repeatable; its dependencies are built too)",
    )
    parser.add_argument(
        "--python", action="append", default=[], metavar="PATH",
        help="use these interpreters besides the running one instead of searching PATH and "
        "pyenv (repeatable)",
    )
    parser.add_argument(
        "--jobs", type=int, default=max(2, os.cpu_count() or 2),
        help="installs and test routes run at once (default: %(default)s)",
    )
    parser.add_argument(
        "--no-routes", action="store_true",
        help="skip the CONTRIBUTING.md test routes (a quick wheel check while working)",
    )
    parser.add_argument(
        "--test-running", action="store_true",
        help="run the every-python tests on the running Python too (by default they are "
        "installed and collected there: `python3 dev.py test` runs them)",
    )
    parser.add_argument(
        "--timings", type=Path, default=Timings.default_path(), metavar="FILE",
        help="the last run's task times, to start the longest first (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    root = args.root.resolve()
    started = time.monotonic()
    static = check_static(root)  # the wheel stage needs the manifest and pyprojects it reads
    libraries = static.libraries
    problems = [] if args.wheels else static.problems
    report = None
    if not args.no_wheels:
        interpreters = find_interpreters(explicit=args.python)
        report = check_wheels(
            root, libraries, static.pyprojects, interpreters=interpreters,
            python_versions=static.python_versions, only=args.library, jobs=args.jobs,
            routes=not args.no_routes, test_running=args.test_running,
            timings=Timings(args.timings), log=_say,
        )
        problems += report.problems
        _summary(report, args.jobs)
    for problem in problems:
        _say(problem.render())
    state = "ok" if not problems else f"{len(problems)} problem(s)"
    stages = "wheels" if args.wheels else "static" if args.no_wheels else "static + wheels"
    _say(f"repocheck: {state} - {len(libraries)} libraries ({stages}) in "
         f"{time.monotonic() - started:.1f}s")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
