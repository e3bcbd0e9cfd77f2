"""Shared fixtures: a private template cache per test, generated projects, running pytest."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def template_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own template repository (never the user's ~/.cache)."""
    cache = tmp_path / "sdk-cache"
    monkeypatch.setenv("MTS1B_PLUGINSDK_CACHE", str(cache))
    return cache


def run_pytest(cwd: Path, *args: str, pythonpath: Sequence[Path] = (),
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """pytest in a fresh interpreter in ``cwd``, with ``pythonpath`` (projects' ``src``
    folders: not installed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)


@pytest.fixture
def run_tests() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_pytest
