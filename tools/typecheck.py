"""Run ``mypy --strict`` over every library's ``src/`` and over ``tools/``.

Why a module and not a bare command: the set of libraries grows, and the list of source roots must
come from the folders that exist, not from a line someone forgets to update.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def mypy_targets(root: Path = ROOT) -> list[str]:
    """``-p <import name>`` for every library package under ``mts1b-*/src``, plus ``tools``.

    Packages are named, not paths, so mypy resolves them through the workspace's editable
    installs exactly as users import them.
    """
    targets: list[str] = []
    for pkg in sorted(root.glob("mts1b-*/src/*/__init__.py")):
        targets += ["-p", pkg.parent.name]
    return [*targets, "-p", "tools"]


def main() -> int:
    argv = [sys.executable, "-m", "mypy", "--strict", *mypy_targets()]
    return subprocess.run(argv, cwd=ROOT, check=False).returncode  # noqa: S603 - fixed argv


if __name__ == "__main__":
    sys.exit(main())
