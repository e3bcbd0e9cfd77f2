"""Start-up time of MTS1B entry points against peer libraries, cold and warm, side by side.

    python bench/startup.py                    # 7 warm and 3 cold runs per case
    python bench/startup.py --warm 11 --cold 5 --only gpubt,vectorbt

Why: a backtest or a CLI command that spends seconds importing pandas, scipy or numba before it
does anything is slow for people even when the work itself is fast (the issue measured
``import mts1b_GPUbacktester`` at 1.6-3.7 s). These figures show where the time goes and how
ours compares with vectorbt and backtrader doing the same thing: being imported.

Cases (each one is a fresh process; its wall time from ``subprocess.run`` to exit is measured, so
interpreter start-up is included, and ``python -c pass`` is shown for reference):

* ``import mts1b_GPUbacktester``, ``import mts1b_quantkit``, ``import mts1b_datalake``;
* ``from mts1b_GPUbacktester import run_single`` (what a backtest script starts with: the engine
  and what it imports, before any data is read);
* the first metrics call: ``metrics.summary`` of a 500-day return series in a fresh process
  (the backtester's headline numbers; it used to import ``scipy.stats``);
* ``mts --help`` (the console script: lists every library's command group, so it imports each
  library's CLI module);
* peers: ``import vectorbt``, ``import backtrader``.

Definitions:

* **warm**: what a user sees on the second run in a working virtualenv: bytecode (``.pyc``) of
  every module is present and valid (one untimed run first writes any that is missing), and the
  files are in the OS page cache. Median of ``--warm`` runs.
* **cold**: no usable bytecode anywhere: each run gets ``PYTHONPYCACHEPREFIX`` pointed at a new,
  empty folder (so Python looks for ``.pyc`` files only there and finds none, for the standard
  library and site-packages alike) and ``PYTHONDONTWRITEBYTECODE=1`` (the environment form of
  ``-B``, which also reaches the ``mts`` console script), so every imported module is compiled
  from source in every run. This is the first run after ``pip install --no-compile`` or after a
  source change, the worst case short of an empty page cache. The OS page cache is not dropped
  (that needs root), and the few stdlib modules frozen into the interpreter are never compiled.
  Median of ``--cold`` runs.

The ratio columns are cold / warm and each case's warm time over ``import mts1b_GPUbacktester``
warm. Load average is printed before and after: on a shared machine it explains the jitter.
Not part of the tests (no timed assertion anywhere).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable
MTS = str(Path(PY).with_name("mts"))

#: key -> (label, argv)
CASES: dict[str, tuple[str, list[str]]] = {
    "python": ("python -c pass", [PY, "-c", "pass"]),
    "gpubt": ("import mts1b_GPUbacktester", [PY, "-c", "import mts1b_GPUbacktester"]),
    "quantkit": ("import mts1b_quantkit", [PY, "-c", "import mts1b_quantkit"]),
    "datalake": ("import mts1b_datalake", [PY, "-c", "import mts1b_datalake"]),
    "run_single": ("from mts1b_GPUbacktester import run_single",
                   [PY, "-c", "from mts1b_GPUbacktester import run_single"]),
    "metrics": ("first metrics.summary call",
                [PY, "-c", "import numpy as np\nfrom mts1b_quantkit import metrics\n"
                 "metrics.summary(np.linspace(-0.01, 0.012, 500))"]),
    "mts": ("mts --help", [MTS, "--help"]),
    "vectorbt": ("import vectorbt", [PY, "-c", "import vectorbt"]),
    "backtrader": ("import backtrader", [PY, "-c", "import backtrader"]),
}
REFERENCE = "gpubt"
PEERS = {"vectorbt", "backtrader"}


def _run(argv: list[str], env: dict[str, str]) -> float:
    """Wall time of one run of ``argv``; a failing run aborts the benchmark (no silent zeros)."""
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n"
                         f"{proc.stderr.decode(errors='replace')}")
    return elapsed


def _base_env() -> dict[str, str]:
    env = dict(os.environ)
    for var in ("PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE", "PYTHONPROFILEIMPORTTIME"):
        env.pop(var, None)
    return env


def warm_times(argv: list[str], n: int) -> list[float]:
    env = _base_env()
    _run(argv, env)  # writes any missing .pyc; not timed
    return [_run(argv, env) for _ in range(n)]


def cold_times(argv: list[str], n: int) -> list[float]:
    times = []
    for _ in range(n):
        with tempfile.TemporaryDirectory(prefix="mts-startup-pyc-") as empty:
            env = _base_env()
            env["PYTHONPYCACHEPREFIX"] = empty
            env["PYTHONDONTWRITEBYTECODE"] = "1"
            times.append(_run(argv, env))
    return times


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--warm", type=int, default=7, help="warm runs per case (median)")
    ap.add_argument("--cold", type=int, default=3, help="cold runs per case (median)")
    ap.add_argument("--only", default="", help=f"comma-separated subset of {','.join(CASES)}")
    args = ap.parse_args()
    keys = [k for k in CASES if not args.only or k in args.only.split(",")]

    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"{now}; {platform.platform()}; {os.cpu_count()} CPUs; "
          f"Python {platform.python_version()}")
    print(f"load average at start: {_loadavg()}")
    rows: dict[str, tuple[float, float]] = {}
    for key in keys:
        label, argv = CASES[key]
        warm = statistics.median(warm_times(argv, args.warm))
        cold = statistics.median(cold_times(argv, args.cold))
        rows[key] = (cold, warm)
        print(f"  measured {label}: cold {cold:.3f} s, warm {warm:.3f} s", file=sys.stderr)
    print(f"load average at end:   {_loadavg()}")
    print()
    ref = rows.get(REFERENCE, (0.0, 0.0))[1]
    print(f"| what | cold (median of {args.cold}) | warm (median of {args.warm}) | cold / warm "
          f"| warm vs `import mts1b_GPUbacktester` |")
    print("|---|---:|---:|---:|---:|")
    for key, (cold, warm) in rows.items():
        vs = f"{warm / ref:.2f}x" if ref else "-"
        peer = " (peer)" if key in PEERS else ""
        print(f"| `{CASES[key][0]}`{peer} | {cold:.3f} s | {warm:.3f} s "
              f"| {cold / warm:.1f}x | {vs} |")


if __name__ == "__main__":
    main()
