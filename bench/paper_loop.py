"""The paper-trading loop's pace: sessions per second of `mts mts1b-research paper up`, every
service a process in lockstep with the replay.

    uv run --no-sync python bench/paper_loop.py [--names 100] [--to 2016-03-31] [--write]

It installs a synthetic market of ``--names`` names (2014-2016) in a temporary folder,
registers the FAQ's ``momentum_v3`` (Kelly-sized, long and short) in a throwaway registry
schema, promotes it to paper and runs ``paper up --speed 0 --wait`` from 2016-01-04 to ``--to``
on a fresh NATS namespace, then reads the replay's own report (sessions, seconds) and the
loop's status (orders, positions, NAV). Everything is removed afterwards (``paper down
--purge``). Needs NATS and PostgreSQL (``MTS_NATS_URL``, ``MTS_DATABASE_URL``; ``mts dev up``).
``--write`` appends the figures to bench/RESULTS.md with the date, machine and load average.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _machine import cpu_model

DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
RESULTS = Path(__file__).with_name("RESULTS.md")


def mts(env: dict[str, str], cwd: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "mts1b_platform.cli", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def run(names: int, end: str) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        env = {**os.environ, "MTS_DEV_DIR": str(cwd / "dev"), "MTS_DATABASE_URL": DSN,
               "MTS_RESEARCH_SCHEMA": f"rs_bench_{tag}", "MTS_PAPER_NAMESPACE": f"bench{tag}"}
        mts(env, cwd, "mts1b-datalake", "demo", "install", "--store", "lake", "--n-assets",
            str(names), "--start", "2014-01-01", "--end", "2016-12-31")
        for args in (["register", "--name", "momentum_v3", "--factor", "f_momentum_12_1",
                      "--param", "h_long=252", "--param", "h_skip=21", "--universe",
                      "us-large-cap", "--sizing-method", "kelly_voltarget_12", "--rebalance",
                      "close-15m", "--horizon", "5", "--reason", "bench"],
                     ["shadow", "momentum_v3", "--reason", "bench"],
                     ["promote", "momentum_v3", "--to", "paper", "--sessions", "20",
                      "--reason", "bench"]):
            mts(env, cwd, "mts1b-research", "strategies", *args)
        started = time.perf_counter()
        try:
            mts(env, cwd, "mts1b-research", "paper", "up", "--strategy", "momentum_v3",
                "--from", "2016-01-04", "--to", end, "--speed", "0", "--store", "lake",
                "--wait")
            wall = time.perf_counter() - started
            status = json.loads(mts(env, cwd, "mts1b-research", "paper", "status", "--json"))
            log = (cwd / "dev" / "paper" / env["MTS_PAPER_NAMESPACE"] / "logs" / "replay.log")
            report = json.loads(log.read_text()[log.read_text().index("{"):])
        finally:
            mts(env, cwd, "mts1b-research", "paper", "down", "--purge")
            subprocess.run(["psql", DSN, "-q", "-c",
                            f"DROP SCHEMA IF EXISTS rs_bench_{tag} CASCADE"],
                           capture_output=True, check=False)
    return {"names": names, "sessions": report["sessions"], "bars": report["published"],
            "replay_s": report["seconds"], "wall_s": round(wall, 1),
            "orders": status["orders_seen"], "positions": len(status["positions"]),
            "nav": status["nav"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=100)
    parser.add_argument("--to", default="2016-03-31")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    r = run(args.names, args.to)
    pace = r["sessions"] / r["replay_s"]
    line = (f"{r['names']} names, {r['sessions']} sessions ({r['bars']} bars), {r['orders']} "
            f"orders, {r['positions']} positions at the end, NAV {r['nav']}: replay "
            f"{r['replay_s']:.1f} s ({pace:.2f} sessions/s), `paper up --wait` "
            f"{r['wall_s']:.1f} s from the command to the replay's end")
    print(line)
    if args.write:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        with RESULTS.open("a", encoding="utf-8") as out:
            out.write(f"\n- `python bench/paper_loop.py --names {args.names} --to {args.to}`, "
                      f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {cpu_model()}, "
                      f"{os.cpu_count()} CPUs, Python {platform.python_version()}, load "
                      f"average `{load}` at the end: {line}.\n")


if __name__ == "__main__":
    main()
