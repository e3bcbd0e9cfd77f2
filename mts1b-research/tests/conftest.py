"""Fixtures: a PostgreSQL research schema per test (dropped afterwards), or a skip naming why."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from mts1b_research.db import ResearchDb

DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


async def open_db() -> ResearchDb:
    """A registry on a fresh schema (the caller drops it), or a skip without PostgreSQL."""
    try:
        conn = await asyncpg.connect(DSN, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        pytest.skip(f"PostgreSQL not reachable at {DSN} (python3 dev.py test starts one)")
    await conn.close()
    return await ResearchDb.open(DSN, schema=f"rs_t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
async def db() -> AsyncIterator[ResearchDb]:
    d = await open_db()
    try:
        yield d
    finally:
        await d.drop_schema()
        await d.close()


@pytest.fixture
async def paper_env(tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    """The environment of a paper loop run by its commands in ``tmp_path``: its own dev
    folder, registry schema and NATS namespace (``MTS_PAPER_NAMESPACE``), the venv's ``mts``
    first on PATH. Skipped without the libraries the loop runs or without PostgreSQL;
    afterwards the loop is stopped and purged and the schema dropped."""
    from mts1b_research.paper import needed_libraries

    missing = needed_libraries()
    if missing:
        pytest.skip(f"the paper loop needs {missing}")
    try:
        conn = await asyncpg.connect(DSN, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        pytest.skip(f"PostgreSQL not reachable at {DSN}")
    tag = uuid.uuid4().hex[:8]
    env = {**os.environ, "MTS_DEV_DIR": str(tmp_path / "dev"), "MTS_DATABASE_URL": DSN,
           "MTS_RESEARCH_SCHEMA": f"rs_paper_{tag}", "MTS_PAPER_NAMESPACE": f"paper{tag}",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    try:
        yield env
    finally:
        subprocess.run([sys.executable, "-m", "mts1b_platform.cli", "mts1b-research", "paper",
                        "down", "--purge"], env=env, capture_output=True, timeout=120,
                       check=False)
        await conn.execute(f'DROP SCHEMA IF EXISTS "rs_paper_{tag}" CASCADE')
        await conn.close()


def run_mts(env: dict[str, str], cwd: Path, *args: str, timeout: float = 300) -> str:
    """``mts ARGS`` in a child process, as a user types it; its stdout. The test fails,
    showing the output's end, when the command does."""
    done = subprocess.run([sys.executable, "-m", "mts1b_platform.cli", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)
    assert done.returncode == 0, f"{args}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


def momentum_in_paper(env: dict[str, str], cwd: Path, *, seed: int | None = None) -> None:
    """A demo market in ``cwd/lake`` (20 names, 2014-01 to 2016-06; the demo's seed unless
    ``seed``) and the FAQ's ``momentum_v3`` (Kelly-sized, long and short, daily) registered
    and promoted to paper: what the whole-loop tests trade."""
    run_mts(env, cwd, "mts1b-datalake", "demo", "install", "--store", "lake",
            *(("--seed", str(seed)) if seed is not None else ()), "--n-assets", "20",
            "--start", "2014-01-01", "--end", "2016-06-30")
    for args in (["register", "--name", "momentum_v3", "--factor", "f_momentum_12_1",
                  "--param", "h_long=252", "--param", "h_skip=21", "--universe",
                  "us-large-cap", "--sizing-method", "kelly_voltarget_12", "--rebalance",
                  "daily", "--reason", "whole-loop test"],
                 ["shadow", "momentum_v3", "--reason", "watch"],
                 ["promote", "momentum_v3", "--to", "paper", "--sessions", "20",
                  "--reason", "whole-loop test"]):
        run_mts(env, cwd, "mts1b-research", "strategies", *args)
