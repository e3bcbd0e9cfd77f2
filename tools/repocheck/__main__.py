"""``python -m tools.repocheck``: check repos.yaml, folders, pyprojects, imports, layers, wheels.

Exit 0 with a summary when everything holds, 1 with one line per problem otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tools.repocheck.static import check_static
from tools.repocheck.wheels import check_wheels

ROOT = Path(__file__).resolve().parents[2]


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.repocheck",
        description="Check the manifest, the folders, each pyproject.toml, the real imports "
        "against depends_on and the layers, and that each library's wheel installs alone.",
    )
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="repository root (default: %(default)s)"
    )
    stage = parser.add_mutually_exclusive_group()
    stage.add_argument("--no-wheels", action="store_true", help="skip the wheel checks")
    stage.add_argument("--wheels", action="store_true", help="run only the wheel checks")
    parser.add_argument(
        "--library", action="append", default=[], metavar="NAME",
        help="wheel checks for this library only (repeatable; its dependencies are built too)",
    )
    args = parser.parse_args(argv)
    root = args.root.resolve()
    started = time.monotonic()
    static = check_static(root)  # the wheel stage needs the manifest and pyprojects it reads
    libraries = static.libraries
    problems = [] if args.wheels else static.problems
    if not args.no_wheels:
        problems += check_wheels(
            root, libraries, static.pyprojects, only=args.library, log=_say
        )
    for problem in problems:
        _say(problem.render())
    state = "ok" if not problems else f"{len(problems)} problem(s)"
    stages = "wheels" if args.wheels else "static" if args.no_wheels else "static + wheels"
    _say(f"repocheck: {state} - {len(libraries)} libraries ({stages}) in "
         f"{time.monotonic() - started:.1f}s")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
