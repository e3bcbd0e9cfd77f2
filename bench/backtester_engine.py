"""The backtester's portfolio engine against vectorbt, before and after the compiled engine.

    python bench/backtester_engine.py                          # after only, prints a report
    python bench/backtester_engine.py --before DIR --write     # before and after, back to back,
                                                               # and updates bench/RESULTS.md

``--before DIR``: a source tree of ``mts1b_GPUbacktester`` to time as "before" (e.g.
``git archive <commit> mts1b-GPUbacktester/src | tar -x -C DIR``); it is put first on
``PYTHONPATH`` of that run's processes, so only the backtester's code differs.

What is timed (issue #16), each part in a fresh process:

1. ``engine``: the engine alone (``engine._simulate``, as ``run_single`` calls it: weights and
   fills recorded) on a prebuilt ``UniversePanel`` of 505 stocks x 2,520 days, SMA(20, 50)
   crossover targets (quantkit's ``f_sma_cross_fast``, the vectorized ``f_sma_cross``) sized
   ``equal_weight_long``, daily rebalance, next-open fills, 10 bps.
   The panel: the 505 stocks of ``shared/data/sp500_5yr_cnuge`` (1,259 sessions, raw
   prices and their gaps), tiled to 2,520 rows (each later copy scaled so prices continue),
   on business days from 2013-02-08.
2. ``run_single``: the whole call on the same panel, warm (factor, sizing, market arrays,
   engine, benchmark, result); the metrics separately.
3. ``single``: one asset, 5,000 bars (ORCL, backtrader's sample file): ours against vectorbt's
   ``Portfolio.from_signals`` in the same process.
4. ``memory``: ``tracemalloc`` peak of ``run_weights`` and ``run_single`` on the 505 x 2,520
   panel, in panel-sized arrays (``T * A * 8`` bytes) beyond the inputs.
5. ``compile``: the first engine call in a fresh process with an empty numba cache
   (``NUMBA_CACHE_DIR`` at a new folder), then the first call of a second process on that
   cache, with numba's dispatcher statistics (cache hits and misses).

Timings are CPU time of the process (``time.process_time``) and wall time, best of N; the
machine is shared, so the load average is recorded with each run. Not part of the test suite.
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
from pathlib import Path
from typing import Any

import numpy as np
from _machine import cpu_model

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SP500 = DATA / "sp500_5yr_cnuge" / "all_stocks_5yr.csv.gz"
ORCL = DATA / "backtrader" / "orcl-1995-2014.txt"
SECTION = "## mts1b-GPUbacktester: the compiled engine, and what `backend=\"auto\"` picks"
DAYS = 2520
FEE = 0.001


# -- data ------------------------------------------------------------------------------------
def sp500_panel(tmp: Path, days: int = DAYS) -> Any:
    """The 505-stock panel tiled to ``days`` rows (cached as .npz in ``tmp``)."""
    from mts1b_foundation import UniversePanel

    cache = tmp / f"sp500_{days}.npz"
    if not cache.exists():
        import pandas as pd

        df = pd.read_csv(SP500, parse_dates=["date"])
        fields = {f: df.pivot(index="date", columns="Name", values=f)
                  for f in ("open", "high", "low", "close", "volume")}
        symbols = list(fields["close"].columns)
        raw = {f: v[symbols].to_numpy(np.float64) for f, v in fields.items()}
        close = raw["close"]
        valid = np.isfinite(close)
        first = np.array([close[valid[:, a], a][0] for a in range(close.shape[1])])
        last = np.array([close[valid[:, a], a][-1] for a in range(close.shape[1])])
        ratio = last / first
        n = close.shape[0]
        rows = np.arange(days)
        copy = rows // n
        out = {}
        for f, v in raw.items():
            tiled = v[rows % n]
            out[f] = tiled if f == "volume" else tiled * ratio[None, :] ** copy[:, None]
        np.savez(cache, symbols=np.array(symbols), **out)
    z = np.load(cache)
    dates = np.busday_offset(np.datetime64("2013-02-08"), np.arange(days), roll="forward")
    return UniversePanel(dates, [str(s) for s in z["symbols"]],
                         **{f: z[f] for f in ("open", "high", "low", "close", "volume")})


def orcl_panel(n: int = 5000) -> tuple[Any, np.ndarray]:
    import pandas as pd
    from mts1b_foundation import UniversePanel

    df = pd.read_csv(ORCL, parse_dates=["Date"]).tail(n)
    f = {k.lower(): df[k].to_numpy(float)[:, None] for k in ("Open", "High", "Low", "Close",
                                                              "Volume")}
    return UniversePanel(df["Date"].to_numpy().astype("datetime64[D]"), ["ORCL"], **f), \
        f["close"][:, 0]


def best_of(fn: Any, k: int) -> dict[str, float]:
    """Best CPU and wall seconds of ``k`` calls after one warm-up call."""
    fn()
    cpu, wall = [], []
    for _ in range(k):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return {"cpu": min(cpu), "wall": min(wall)}


def _compiled_available() -> bool:
    import mts1b_GPUbacktester.backend as backend

    return hasattr(backend, "NO_GPU_MEASUREMENT")


def _costs_and_market(panel: Any) -> tuple[Any, Any]:
    """The cost model (10 bps) and next-open market arrays, built as ``run_single`` builds
    them (``RunSpec.cost_model``, then ``market_arrays``)."""
    from mts1b_GPUbacktester.data import market_arrays
    from mts1b_GPUbacktester.spec import RunSpec

    run = RunSpec(fill="next_open", cost_bps=10)
    costs, impact_window = run.cost_model(panel.symbols, periods_per_year=252)
    return costs, market_arrays(panel, run.fill, impact_window=impact_window)


# -- parts -----------------------------------------------------------------------------------
def part_engine(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from mts1b_GPUbacktester.backend import resolve_backend
    from mts1b_GPUbacktester.engine import _simulate, compute_targets
    from mts1b_GPUbacktester.schedule import rebalance_rows

    panel = sp500_panel(tmp)
    costs, market = _costs_and_market(panel)
    targets = compute_targets(panel, "f_sma_cross_fast", {"p_fast": 20, "p_slow": 50}, None,
                              market.returns)
    rebalance = rebalance_rows(panel.dates, "daily")
    out: dict[str, Any] = {"shape": list(panel.shape)}
    names = ["numba", "numpy"] if _compiled_available() else ["numpy"]
    for name in names:
        be = resolve_backend(name)
        holder: dict[str, Any] = {}

        def run(be: Any = be, holder: dict[str, Any] = holder) -> None:
            holder["out"] = _simulate(be, market, targets[None], rebalance, costs, 0,
                                      100_000.0, record_weights=True, record_fills=True)

        out[name] = best_of(run, args.repeat if name == "numba" else max(2, args.repeat // 3))
        sim = holder["out"]
        out[name]["final_nav"] = float(sim.nav[0, -1])
        out[name]["fills"] = len(sim.fills)
    return out


def part_run_single(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from mts1b_GPUbacktester import run_single

    panel = sp500_panel(tmp)
    kw = dict(factor="f_sma_cross_fast", params={"p_fast": 20, "p_slow": 50}, universe=panel,
              rebal="daily", sizing={"method": "equal_weight_long", "gross": 1.0}, cost_bps=10)
    out: dict[str, Any] = {}
    holder: dict[str, Any] = {}

    def call() -> None:
        holder["res"] = run_single(backend="auto", **kw)

    out["call"] = best_of(call, args.repeat)
    out["backend"] = holder["res"].backend["backend"]
    out["call_and_metrics"] = best_of(lambda: run_single(backend="auto", **kw).metrics,
                                      max(2, args.repeat // 2))
    # where the call's time goes (the same steps run_single takes)
    from mts1b_GPUbacktester.engine import compute_targets

    steps: dict[str, Any] = {}
    steps["market arrays"] = best_of(lambda: _costs_and_market(panel), args.repeat)
    _, market = _costs_and_market(panel)
    steps["factor + sizing"] = best_of(lambda: compute_targets(
        panel, "f_sma_cross_fast", {"p_fast": 20, "p_slow": 50}, None, market.returns),
        max(2, args.repeat // 2))
    out["steps"] = steps
    out["final_nav"] = float(holder["res"].equity.iloc[-1])
    return out


def part_single(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import pandas as pd
    import vectorbt as vbt
    from mts1b_GPUbacktester import run_single, run_weights
    from mts1b_GPUbacktester.kernels import rolling_mean_stack

    panel, close = orcl_panel()
    hold = {"trade_on": "signal_change"} if _compiled_available() else {}
    ours = best_of(lambda: run_single(
        factor="f_sma_cross_fast", params={"p_fast": 20, "p_slow": 50}, universe=panel,
        fill="close", cost_bps=FEE * 1e4, benchmark=False, **hold), args.repeat)
    ours_metrics = best_of(lambda: run_single(
        factor="f_sma_cross_fast", params={"p_fast": 20, "p_slow": 50}, universe=panel,
        fill="close", cost_bps=FEE * 1e4, benchmark=False, **hold).total_return, args.repeat)
    ma = rolling_mean_stack(close[:, None], [20, 50])
    signal = (ma[0] > ma[1]).astype(float)
    ours_weights = best_of(lambda: run_weights(
        panel, signal, fill="close", cost_bps=FEE * 1e4, benchmark=False, **hold),
        args.repeat)
    close_s = pd.Series(close)

    def vbt_full() -> float:
        fast = vbt.MA.run(close_s, 20).ma.to_numpy()
        slow = vbt.MA.run(close_s, 50).ma.to_numpy()
        entries = fast > slow
        return float(vbt.Portfolio.from_signals(close_s, entries, ~entries,
                                                fees=FEE).total_return())

    entries = signal[:, 0] > 0
    vbt_signals = best_of(lambda: float(vbt.Portfolio.from_signals(
        close_s, entries, ~entries, fees=FEE).total_return()), args.repeat)
    vbt_all = best_of(vbt_full, args.repeat)
    res = run_weights(panel, signal, fill="close", cost_bps=FEE * 1e4, benchmark=False,
                      initial_nav=100.0, **hold)
    return {"bars": len(close), "ours_run_single": ours, "ours_run_single_metrics": ours_metrics,
            "ours_run_weights": ours_weights, "vbt_from_signals": vbt_signals,
            "vbt_ma_and_from_signals": vbt_all, "vbt_version": vbt.__version__,
            "parity_total_return": abs(res.total_return - vbt_full()),
            "trades": len(res.trades)}


def part_memory(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import gc
    import tracemalloc

    from mts1b_GPUbacktester import run_single, run_weights
    from mts1b_GPUbacktester.engine import compute_targets

    panel = sp500_panel(tmp)
    unit = panel.shape[0] * panel.shape[1] * 8
    _, market = _costs_and_market(panel)
    targets = compute_targets(panel, "f_sma_cross_fast", {"p_fast": 20, "p_slow": 50}, None,
                              market.returns)
    del market
    out: dict[str, Any] = {"unit_mib": unit / 2**20}
    names = ["numba", "numpy"] if _compiled_available() else ["numpy"]
    for name in names:
        for label, fn in (
                ("run_weights", lambda be=name: run_weights(panel, targets, backend=be)),
                ("run_single", lambda be=name: run_single(
                    factor="f_sma_cross_fast", params={"p_fast": 20, "p_slow": 50},
                    universe=panel, backend=be))):
            fn()
            gc.collect()
            tracemalloc.start()
            res = fn()
            kept, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            out[f"{label} {name}"] = {"peak": peak / unit, "kept": kept / unit,
                                      "fills": len(res.trades)}
            del res
    return out


_COMPILE_PROBE = """
import json, time
c0 = time.process_time()
t0 = time.perf_counter()
import numpy as np
from mts1b_foundation import UniversePanel
from mts1b_GPUbacktester import run_weights
t1 = time.perf_counter()
c1 = time.process_time()
T, A = 300, 5
c = 50 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.02, (T, A)), axis=0))
panel = UniversePanel(np.busday_offset(np.datetime64("2020-01-01"), np.arange(T),
                      roll="forward"), [f"S{i}" for i in range(A)], open=c, high=c, low=c,
                      close=c, volume=np.full((T, A), 1e6))
w = np.full((T, A), 0.2)
t2 = time.perf_counter()
c2 = time.process_time()
run_weights(panel, w, backend="numba", benchmark=False)
t3 = time.perf_counter()
c3 = time.process_time()
run_weights(panel, w, backend="numba", benchmark=False)
t4 = time.perf_counter()
import mts1b_GPUbacktester.sim_compiled as sc
stats = {name: {"hits": sum(d.stats.cache_hits.values()),
                "misses": sum(d.stats.cache_misses.values())}
         for name, d in sc.kernel_dispatchers().items()}
print(json.dumps({"imports_s": t1 - t0, "first_call_s": t3 - t2, "second_call_s": t4 - t3,
                  "imports_cpu_s": c1 - c0, "first_call_cpu_s": c3 - c2,
                  "stats": stats, "cache_dir": sc.kernel_dispatchers()["_run"].stats.cache_path}))
"""


def part_compile(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    if not _compiled_available():
        return {"skipped": "no compiled engine in this code"}
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for label in ("empty cache", "second process"):
            proc = subprocess.run([sys.executable, "-c", _COMPILE_PROBE], env=env,
                                  capture_output=True, text=True, check=True)
            out[label] = json.loads(proc.stdout.strip().splitlines()[-1])
            out[label]["load"] = os.getloadavg()[0]
        out["cache_files"] = sorted(p.name for p in Path(cache).rglob("*") if p.is_file())
    return out


PARTS = {"engine": part_engine, "run_single": part_run_single, "single": part_single,
         "memory": part_memory, "compile": part_compile}


# -- driver ----------------------------------------------------------------------------------
def _child(part: str, args: argparse.Namespace, tmp: Path, code: str | None) -> dict[str, Any]:
    env = dict(os.environ)
    if code:
        env["PYTHONPATH"] = code + os.pathsep + env.get("PYTHONPATH", "")
    argv = [sys.executable, __file__, "--part", part, "--tmp", str(tmp), "--repeat",
            str(args.repeat)]
    load = os.getloadavg()[0]
    print(f"[bench] {part} ({'before' if code else 'after'}), load {load:.2f} ...", flush=True)
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"part {part} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["load_at_start"] = load
    print(f"[bench] {part}: {json.dumps(result)[:400]}", flush=True)
    return result


def _machine() -> str:
    cpu = cpu_model()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{cpu}, {os.cpu_count()} logical CPUs, {mem:.0f} GiB RAM, "
            f"{platform.system()} {platform.release()}; no GPU")


def _versions() -> str:
    from importlib import metadata

    out = [f"python {platform.python_version()}"]
    for dist in ("numpy", "numba", "pandas", "vectorbt"):
        try:
            out.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            out.append(f"{dist} not installed")
    return ", ".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=sorted(PARTS))
    parser.add_argument("--tmp")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--before", help="source folder of the 'before' mts1b_GPUbacktester")
    parser.add_argument("--before-label", default="another source tree",
                        help="what --before is, for the report (e.g. 'commit 1234abc')")
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args()
    if args.part:
        print(json.dumps(PARTS[args.part](args, Path(args.tmp))))
        return 0
    if not SP500.exists() or not ORCL.exists():
        print(f"[bench] data not found under {DATA}")
        return 1
    started = dt.datetime.now(dt.UTC)
    results: dict[str, dict[str, Any]] = {"before": {}, "after": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for part in args.parts.split(","):
            if args.before and part != "compile":
                results["before"][part] = _child(part, args, Path(tmp), args.before)
            results["after"][part] = _child(part, args, Path(tmp), None)
    report = render(args, started, results)
    print(report)
    if args.write:
        write_section(report)
    return 0


def _ms(x: dict[str, float] | None, key: str = "cpu") -> str:
    return "-" if x is None else f"{x[key] * 1e3:,.1f} ms"


def render(args: argparse.Namespace, started: dt.datetime,
           results: dict[str, dict[str, Any]]) -> str:
    from mts1b_GPUbacktester.backend import AUTO_GPU_MIN_CELLS

    before, after = results["before"], results["after"]
    loads = [r.get("load_at_start") for side in (before, after) for r in side.values()]
    loads = [x for x in loads if x is not None]
    lines = [SECTION, "", f"auto backend rule: AUTO_GPU_MIN_CELLS = {AUTO_GPU_MIN_CELLS}", "",
             "`backend=\"auto\"` runs the compiled CPU engine (numba) unless a measurement on "
             "a GPU, recorded in this file, shows the cupy path faster than the compiled "
             "engine from some size on; that size is the number above and "
             "`mts1b_GPUbacktester.backend.AUTO_GPU_MIN_CELLS` (a test checks that the two "
             "agree). No GPU has been available to these benchmarks, so there is no such "
             "measurement: `auto` runs the compiled CPU engine at every size, and cupy runs "
             "only when asked for (`backend=\"cupy\"`).", "",
             f"Run {started:%Y-%m-%d %H:%M} UTC by `python bench/backtester_engine.py"
             f"{' --before DIR' if args.before else ''} --write` (best of {args.repeat}; CPU "
             "time of the process, wall time in brackets).",
             f"Machine: {_machine()}; load average {min(loads):.1f}-{max(loads):.1f} at the "
             "start of the parts (other engineers' builds and tests shared the 2 cores).",
             f"Versions: {_versions()}."]
    if args.before:
        lines.append(f"Before: the backtester's source at {args.before_label} (then the "
                     "reference engine was the only one and `auto` was numpy); after: this "
                     "tree. Everything else is the same working tree, run back to back.")
    e_b, e_a = before.get("engine"), after.get("engine")
    if e_a:
        t, a = e_a["shape"]
        lines += ["", f"### The engine alone, {a} stocks x {t:,} days, daily rebalance", "",
                  "SMA(20, 50) crossover targets (quantkit's `f_sma_cross_fast`) sized "
                  "`equal_weight_long`, next-open fills, 10 bps; weights and fills recorded "
                  "as `run_single` does "
                  f"({e_a['numba']['fills']:,} fills).", "",
                  "| engine | time | final NAV |", "|---|---:|---:|"]
        if e_b:
            lines.append(f"| before: the engine of the time (numpy) | {_ms(e_b['numpy'])} "
                         f"({_ms(e_b['numpy'], 'wall')}) | {e_b['numpy']['final_nav']:,.6f} |")
        lines.append(f"| after: reference engine (`backend=\"numpy\"`) | {_ms(e_a['numpy'])} "
                     f"({_ms(e_a['numpy'], 'wall')}) | {e_a['numpy']['final_nav']:,.6f} |")
        lines.append(f"| after: compiled engine (`\"numba\"`, what `auto` runs) | "
                     f"{_ms(e_a['numba'])} ({_ms(e_a['numba'], 'wall')}) | "
                     f"{e_a['numba']['final_nav']:,.6f} |")
    r_b, r_a = before.get("run_single"), after.get("run_single")
    if r_a:
        lines += ["", "### `run_single` on the same panel, warm", "",
                  "| | before | after |", "|---|---:|---:|"]

        def row(label: str, b: Any, a: Any) -> str:
            return f"| {label} | {_ms(b)} ({_ms(b, 'wall')}) | {_ms(a)} ({_ms(a, 'wall')}) |"

        lines.append(row("`run_single(...)` (metrics not read)", r_b and r_b["call"],
                         r_a["call"]))
        lines.append(row("`run_single(...).metrics`", r_b and r_b["call_and_metrics"],
                         r_a["call_and_metrics"]))
        for step in r_a["steps"]:
            lines.append(row(f"of which {step}", r_b and r_b["steps"][step],
                             r_a["steps"][step]))
    s_b, s_a = before.get("single"), after.get("single")
    if s_a:
        lines += ["", f"### One asset, {s_a['bars']:,} bars (ORCL), against vectorbt "
                  f"{s_a['vbt_version']} in the same process", "",
                  "SMA(20, 50) crossover, long or flat, fills at the close, 0.1% fees; ours "
                  "holds until the signal changes (`trade_on=\"signal_change\"`; before: the "
                  "schedule, which at weight 1 makes the same trades).", "",
                  "| | before | after | after / vectorbt |", "|---|---:|---:|---:|"]
        vbt_full, vbt_sig = s_a["vbt_ma_and_from_signals"], s_a["vbt_from_signals"]
        for label, key, ref in (
                ("ours `run_single` (factor, sizing, engine, result)", "ours_run_single",
                 vbt_full),
                ("ours `run_single(...).total_return` (+ every metric)",
                 "ours_run_single_metrics", vbt_full),
                ("ours `run_weights` (signal given)", "ours_run_weights", vbt_sig),
                ("vectorbt `MA` x2 + `from_signals` + `total_return`",
                 "vbt_ma_and_from_signals", vbt_full),
                ("vectorbt `from_signals` + `total_return` (signal given)",
                 "vbt_from_signals", vbt_sig)):
            b = s_b[key] if s_b else None
            ratio = s_a[key]["cpu"] / ref["cpu"]
            lines.append(f"| {label} | {_ms(b)} | {_ms(s_a[key])} | {ratio:.2f}x |")
        lines += ["", f"Parity (signal given, {s_a['trades']} trades): |total return - "
                  f"vectorbt's| = {s_a['parity_total_return']:.1e}."]
    m_b, m_a = before.get("memory"), after.get("memory")
    if m_a:
        lines += ["", f"### Peak memory beyond the inputs (tracemalloc), in panel-sized arrays "
                  f"({m_a['unit_mib']:.1f} MiB each)", "",
                  "| call | before | after: reference | after: compiled | kept by the result "
                  "(compiled) |", "|---|---:|---:|---:|---:|"]
        for label in ("run_weights", "run_single"):
            b = m_b.get(f"{label} numpy") if m_b else None
            ref, com = m_a[f"{label} numpy"], m_a[f"{label} numba"]
            lines.append(f"| `{label}` ({com['fills']:,} fills) | "
                         f"{'-' if b is None else format(b['peak'], '.2f')} | "
                         f"{ref['peak']:.2f} | {com['peak']:.2f} | {com['kept']:.2f} |")
    c_a = after.get("compile")
    if c_a and "skipped" not in c_a:
        first, second = c_a["empty cache"], c_a["second process"]
        lines += ["", "### Compilation: the first call after an install, and later processes",
                  "", "Wall time, CPU time of the process in brackets (the machine was shared: "
                  "the wall time is what a user waits, the CPU time what it costs on an idle "
                  "machine).", "",
                  "| process | `import mts1b_GPUbacktester` + `run_weights` | first "
                  "`run_weights` call (numba imported, engine compiled or loaded) | second call "
                  "| numba cache hits / misses | load |", "|---|---:|---:|---:|---:|---:|"]
        for label, p in (("fresh, empty numba cache", first), ("second, same cache", second)):
            hits = sum(v["hits"] for v in p["stats"].values())
            misses = sum(v["misses"] for v in p["stats"].values())
            lines.append(f"| {label} | {p['imports_s']:.2f} s ({p['imports_cpu_s']:.2f} s) | "
                         f"{p['first_call_s']:.2f} s ({p['first_call_cpu_s']:.2f} s) | "
                         f"{p['second_call_s'] * 1e3:.1f} ms | {hits} / {misses} | "
                         f"{p['load']:.1f} |")
        lines += ["", f"Cache files written: {len(c_a['cache_files'])} "
                  f"({', '.join(c_a['cache_files'][:3])}, ...)."]
    return "\n".join(lines) + "\n"


def write_section(report: str) -> None:
    """Replace this benchmark's section of bench/RESULTS.md (or append it), keeping the
    hand-written notes that follow the generated part (after a line ``<!-- notes -->``)."""
    path = ROOT / "bench" / "RESULTS.md"
    text = path.read_text(encoding="utf-8")
    start = text.find(SECTION)
    if start < 0:
        path.write_text(text.rstrip() + "\n\n" + report, encoding="utf-8")
        return
    nxt = text.find("\n## ", start + len(SECTION))
    end = len(text) if nxt < 0 else nxt + 1
    old = text[start:end]
    notes = old[old.find("<!-- notes -->"):] if "<!-- notes -->" in old else ""
    path.write_text(text[:start] + report + ("\n" + notes if notes else "") + text[end:],
                    encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
