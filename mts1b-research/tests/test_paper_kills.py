"""The paper loop survives a SIGKILL of any service (issue #20): the same replay run twice -
once untouched, once with every service SIGKILLed at a random moment while the replay runs
(the loop's supervisor restarts each) - ends with the same NAV, positions and orders.

Every process is real (`mts mts1b-research paper up`: the venue, the OMS, the treasury, the
signal service, the composer, the lockstep replay) over real NATS and PostgreSQL, on a small
synthetic market. Skipped, with the reason, without the servers or the libraries.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mts1b_research.paper import LOCKSTEP

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _mts(env: dict[str, str], cwd: Path, *args: str, timeout: float = 300) -> str:
    done = subprocess.run([sys.executable, "-m", "mts1b_platform.cli", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)
    assert done.returncode == 0, f"{args}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


def _status(env: dict[str, str], cwd: Path) -> dict[str, Any]:
    return dict(json.loads(_mts(env, cwd, "mts1b-research", "paper", "status", "--json")))


def _run(env: dict[str, str], cwd: Path, kills: list[str], rng: random.Random
         ) -> dict[str, Any]:
    """``paper up`` over the replay, the ``kills`` SIGKILLed one by one while it runs, until
    the replay is over; the final status."""
    _mts(env, cwd, "mts1b-research", "paper", "up", "--strategy", "momentum_v3", "--from",
         "2016-01-04", "--to", "2016-01-22", "--speed", "0", "--store", "lake")
    state_file = Path(env["MTS_DEV_DIR"]) / "paper" / env["MTS_PAPER_NAMESPACE"] / "paper.json"
    killed = 0
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        state = json.loads(state_file.read_text())
        replay = int(state["processes"]["replay"]["pid"])
        try:
            os.kill(replay, 0)
        except ProcessLookupError:
            break
        if killed < len(kills):
            time.sleep(rng.uniform(0.5, 2.5))
            pid = int(json.loads(state_file.read_text())["processes"][kills[killed]]["pid"])
            os.kill(pid, signal.SIGKILL)
            killed += 1
        else:
            time.sleep(0.5)
    status = _status(env, cwd)
    _mts(env, cwd, "mts1b-research", "paper", "down", "--purge")
    return status


async def test_every_service_killed_once_changes_nothing(tmp_path: Path,
                                                         paper_env: dict[str, str]) -> None:
    env = paper_env
    _mts(env, tmp_path, "mts1b-datalake", "demo", "install", "--store", "lake",
         "--n-assets", "20", "--start", "2014-01-01", "--end", "2016-06-30")
    for args in (["register", "--name", "momentum_v3", "--factor", "f_momentum_12_1",
                  "--param", "h_long=252", "--param", "h_skip=21", "--universe",
                  "us-large-cap", "--rebalance", "daily", "--reason", "kill test"],
                 ["shadow", "momentum_v3", "--reason", "watch"],
                 ["promote", "momentum_v3", "--to", "paper", "--sessions", "20",
                  "--reason", "kill test"]):
        _mts(env, tmp_path, "mts1b-research", "strategies", *args)
    rng = random.Random(20)
    clean = _run(env, tmp_path, [], rng)
    order = list(LOCKSTEP)
    rng.shuffle(order)
    killed = _run(env, tmp_path, order, rng)
    assert clean["sessions_done"] == clean["sessions_total"] == 14
    assert killed["sessions_done"] == 14
    assert clean["orders_seen"] > 0 and clean["positions"]
    assert killed["restarts"] == dict.fromkeys(order, 1)
    for field in ("nav", "cash", "positions", "orders_seen", "working_orders"):
        assert killed[field] == clean[field], field
