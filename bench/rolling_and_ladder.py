"""Rolling windows and the SMA ladder (issue #16), before and after, in one run.

    python bench/rolling_and_ladder.py --before c76f62d              # prints the report
    python bench/rolling_and_ladder.py --before c76f62d --after HEAD --vectorbt --write

``--before REV`` / ``--after REV`` name commits whose ``mts1b-quantkit/src`` and
``mts1b-GPUbacktester/src`` are exported (``git archive``) and put first on ``PYTHONPATH`` of the
measuring processes, so that only the library code differs; ``--after`` defaults to the working
tree. Each measurement is its own subprocess; the timed parts alternate before / after
``--rounds`` times (default 2) and keep the best of each. Three parts:

1. Rolling windows on a 2,520 x 2,000 random-walk panel (2.5% of the columns listed late):
   ``rolling_mean`` (20, 50), ``f_sma_cross_fast`` (SMA 20 / 50), ``rolling_std`` (63),
   ``rolling_max`` (20), in milliseconds and in passes (the time of one ``x + 1`` into a buffer),
   and ``run_single`` of ``f_sma_cross_fast`` with monthly rebalancing on that panel.
2. Precision: window sums / means against ``math.fsum`` and the std against a long-double
   two-pass std, on a 200,000-row random walk that drifts from 10,000 to about 1 and on the
   505 S&P 500 stocks (``shared/data/sp500_5yr_cnuge``), for quantkit's ``rolling_mean``, the
   backtester's ``rolling_mean_stack`` and pandas.
3. The ladder: 1,000 (fast, slow) pairs x 505 stocks x 1,259 days (the pairs of
   ``backtester_vs_vectorbt.py``), the public ``run_ladder("f_sma_cross", mode="per_asset")``
   against the ``sma_cross_ladder`` kernel on the same grid and convention, best of 3 warm; the
   accounts of both, before and after, compared cell by cell. ``--vectorbt`` adds vectorbt's
   ``MA`` + ``from_signals`` on the same pairs (one cold run, 49 assets per call), with parity
   against the kernel in vectorbt's convention.

Not part of the test suite; figures go to bench/RESULTS.md with ``--write``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import inspect
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _machine import cpu_model

ROOT = Path(__file__).resolve().parents[1]
SP500 = ROOT.parent / "shared" / "data" / "sp500_5yr_cnuge" / "all_stocks_5yr.csv.gz"
SECTION = "## Rolling windows and the SMA ladder (issue #16)"
SOURCES = ("mts1b-quantkit/src", "mts1b-GPUbacktester/src")
EPS = float(np.finfo(float).eps)


def best(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm-up: imports, first-touch of buffers, numba compilation
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# -- part 1: rolling windows -------------------------------------------------------------------
def walk_panel(t_len: int = 2_520, a_len: int = 2_000) -> Any:
    from mts1b_foundation import UniversePanel

    rng = np.random.default_rng(0)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0003, 0.02, (t_len, a_len)), axis=0))
    close[:300, : a_len // 40] = np.nan  # late listings
    dates = np.busday_offset(np.datetime64("2014-01-02"), np.arange(t_len), roll="forward")
    return UniversePanel(dates, [f"S{i:04d}" for i in range(a_len)], open=close, high=close,
                         low=close, close=close, volume=np.full(close.shape, 1e6))


def part_rolling(args: argparse.Namespace) -> dict[str, Any]:
    from mts1b_GPUbacktester import run_single
    from mts1b_quantkit import factors as qf

    panel = walk_panel()
    x = np.array(panel.close)
    buf = np.empty_like(x)
    one = best(lambda: np.add(x, 1.0, out=buf), 7)
    cases = {
        "rolling_mean(x, 20)": lambda: qf.rolling_mean(x, 20),
        "rolling_mean(x, 50)": lambda: qf.rolling_mean(x, 50),
        "f_sma_cross_fast (SMA 20 / 50)": lambda: qf.evaluate("f_sma_cross_fast", panel),
        "rolling_std(x, 63)": lambda: qf.rolling_std(x, 63),
        "rolling_max(x, 20)": lambda: qf.rolling_max(x, 20),
    }
    out: dict[str, Any] = {"pass_ms": one * 1e3, "cases": {}}
    for name, fn in cases.items():
        t = best(fn, args.repeat)
        out["cases"][name] = {"ms": t * 1e3, "passes": t / one}
    factor = out["cases"]["f_sma_cross_fast (SMA 20 / 50)"]["ms"] / 1e3

    def monthly() -> float:
        res = run_single(factor="f_sma_cross_fast", params={}, universe=panel, rebal="monthly",
                         sizing={"method": "equal_weight_long", "gross": 1.0}, cost_bps=10,
                         benchmark=False)
        return float(res.sharpe)

    t = best(monthly, 2)
    out["run_single_monthly_s"] = t
    out["factor_share"] = factor / t
    out["peak_rss_mib"] = peak_rss_mib()
    return out


# -- part 2: precision ---------------------------------------------------------------------------
def _exact_means(x: np.ndarray, window: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    out = np.full(len(rows), np.nan)
    for k, (t, a) in enumerate(zip(rows, cols, strict=True)):
        v = x[t - window + 1:t + 1, a]
        if np.isfinite(v).all():
            out[k] = math.fsum(v) / window
    return out


def _exact_stds(x: np.ndarray, window: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    out = np.full(len(rows), np.nan)
    for k, (t, a) in enumerate(zip(rows, cols, strict=True)):
        v = x[t - window + 1:t + 1, a].astype(np.longdouble)
        if np.isfinite(v).all():
            m = v.sum() / window
            out[k] = float(np.sqrt(((v - m) ** 2).sum() / (window - 1)))
    return out


def _worst(got: np.ndarray, exact: np.ndarray) -> dict[str, float]:
    ok = np.isfinite(exact) & (exact != 0)
    rel = np.abs(got[ok] - exact[ok]) / np.abs(exact[ok])
    return {"max": float(rel.max()), "median": float(np.median(rel))}


def part_precision(args: argparse.Namespace) -> dict[str, Any]:
    import pandas as pd
    from mts1b_GPUbacktester.kernels import rolling_mean_stack
    from mts1b_quantkit import factors as qf

    rng = np.random.default_rng(7)
    drift = 1e4 * np.exp(np.cumsum(rng.normal(-4.6e-5, 0.01, 200_000)))[:, None]
    sp = pd.read_csv(SP500, parse_dates=["date"], usecols=["date", "close", "Name"])
    sp = sp.pivot(index="date", columns="Name", values="close").to_numpy(np.float64)
    out: dict[str, Any] = {}
    for label, x, window in (("drift200k_w5", drift, 5), ("drift200k_w250", drift, 250),
                             ("sp500_w50", sp, 50)):
        rows = rng.integers(window - 1, x.shape[0], 3_000)
        cols = rng.integers(0, x.shape[1], 3_000)
        exact = _exact_means(x, window, rows, cols)
        out[label] = {
            "quantkit rolling_mean": _worst(qf.rolling_mean(x, window)[rows, cols], exact),
            "kernels rolling_mean_stack": _worst(rolling_mean_stack(x, [window])[0][rows, cols],
                                                 exact),
            "pandas rolling().mean()": _worst(
                pd.DataFrame(x).rolling(window).mean().to_numpy()[rows, cols], exact),
        }
    walk = walk_panel(2_520, 50).close
    for label, x, window in (("walk2520_std63", np.asarray(walk), 63), ("sp500_std20", sp, 20)):
        rows = rng.integers(window - 1, x.shape[0], 3_000)
        cols = rng.integers(0, x.shape[1], 3_000)
        exact = _exact_stds(x, window, rows, cols)
        out[label] = {
            "quantkit rolling_std": _worst(qf.rolling_std(x, window)[rows, cols], exact),
            "pandas rolling().std()": _worst(
                pd.DataFrame(x).rolling(window).std().to_numpy()[rows, cols], exact),
        }
    return out


# -- part 3: the ladder --------------------------------------------------------------------------
def part_ladder(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "bench"))
    from backtester_vs_vectorbt import ladder_pairs, load_sp500
    from mts1b_foundation import UniversePanel
    from mts1b_GPUbacktester import run_ladder, sma_cross_ladder

    dates, close, symbols = load_sp500()
    panel = UniversePanel(dates, symbols, open=close, high=close, low=close, close=close,
                          volume=np.ones_like(close))
    pairs = ladder_pairs(args.combos)
    grid = {"p_fast": sorted({f for f, _ in pairs}), "p_slow": sorted({s for _, s in pairs})}
    wanted = set(pairs)
    result: dict[str, Any] = {}

    def kernel(lag: int, min_periods: int | None) -> Any:
        return sma_cross_ladder(close, pairs, cost_bps=10, backend="numpy", lag=lag,
                                min_periods=min_periods)

    def ladder() -> Any:
        return run_ladder("f_sma_cross", grid, universe=panel, mode="per_asset", fill="close",
                          constraint=lambda c: (c["p_fast"], c["p_slow"]) in wanted,
                          progress=False, backend="numpy", tile_size=64, keep="returns")

    result["kernel_vbt_convention_s"] = best(lambda: kernel(0, None), args.repeat)
    result["kernel_s"] = best(lambda: kernel(1, 1), args.repeat)
    result["run_ladder_s"] = best(ladder, args.repeat)
    total, trades = kernel(1, 1)
    res = ladder()
    order = [(int(f), int(s)) for f, s in zip(res.table["p_fast"], res.table["p_slow"],
                                               strict=True)]
    assert order == pairs, "run_ladder's grid order differs from the pairs"
    both = np.isfinite(total) & np.isfinite(res.total_return)
    result["run_ladder_vs_kernel_max_abs"] = float(np.abs(total - res.total_return)[both].max())
    result["run_ladder_vs_kernel_nan_mismatch"] = int(
        (np.isfinite(total) != np.isfinite(res.total_return)).sum())
    np.save(Path(args.tmp) / f"{args.side}_kernel_total.npy", total)
    np.save(Path(args.tmp) / f"{args.side}_kernel_trades.npy", trades)
    np.save(Path(args.tmp) / f"{args.side}_ladder_total.npy", res.total_return)
    np.save(Path(args.tmp) / f"{args.side}_vbt_convention_total.npy", kernel(0, None)[0])
    if "compensated" in inspect.signature(sma_cross_ladder).parameters:
        # the compensated averages decide sub-ulp ties otherwise: how many accounts that moves
        exact = sma_cross_ladder(close, pairs, cost_bps=10, backend="numpy", lag=1,
                                 min_periods=1, compensated=True)[0]
        same = (exact == total) | (np.isnan(exact) & np.isnan(total))
        result["compensated_accounts_different"] = int((~same).sum())
    result["peak_rss_mib"] = peak_rss_mib()
    return result


PARTS = {"rolling": part_rolling, "precision": part_precision, "ladder": part_ladder}


# -- driver --------------------------------------------------------------------------------------
def export(rev: str, into: Path) -> Path:
    """``git archive rev`` of the two libraries' sources into ``into``; the PYTHONPATH."""
    into.mkdir(parents=True, exist_ok=True)
    archive = into / "src.tar"
    with archive.open("wb") as sink:
        subprocess.run(["git", "archive", rev, *SOURCES], cwd=ROOT, stdout=sink, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into


def child(part: str, side: str, tree: Path | None, args: argparse.Namespace,
          tmp: Path) -> dict[str, Any]:
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            [str(tree / s) for s in SOURCES] + [env.get("PYTHONPATH", "")])
    argv = [sys.executable, __file__, "--part", part, "--side", side, "--tmp", str(tmp),
            "--repeat", str(args.repeat), "--combos", str(args.combos)]
    print(f"[bench] {side} {part} (load {os.getloadavg()[0]:.1f}) ...", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{side} {part} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"[bench] {side} {part} done in {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def vectorbt(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    argv = [sys.executable, str(ROOT / "bench" / "backtester_vs_vectorbt.py"), "--part",
            "vbt_ladder", "--tmp", str(tmp), "--combos", str(args.combos), "--vbt-cold-only"]
    print(f"[bench] vectorbt (load {os.getloadavg()[0]:.1f}) ...", flush=True)
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"vectorbt failed:\n{proc.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    ours = np.load(tmp / "after_vbt_convention_total.npy")
    theirs = np.load(tmp / "vbt_total.npy")
    both = np.isfinite(ours) & np.isfinite(theirs)
    out["parity_max_abs"] = float(np.abs(ours - theirs)[both].max())
    out["parity_nan_mismatch"] = int((np.isfinite(ours) != np.isfinite(theirs)).sum())
    return out


def merge(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """The faster of two rounds' timings, key by key (other values from the latest round)."""
    if old is None:
        return new
    out = dict(new)
    for key, value in new.items():
        if key.endswith("_s") or key == "pass_ms":
            out[key] = min(value, old[key])
        elif key == "cases":
            out[key] = {name: {"ms": min(v["ms"], old[key][name]["ms"])}
                        for name, v in value.items()}
    if "cases" in out:
        for case in out["cases"].values():
            case["passes"] = case["ms"] / out["pass_ms"]
        factor = out["cases"]["f_sma_cross_fast (SMA 20 / 50)"]["ms"] / 1e3
        out["factor_share"] = factor / out["run_single_monthly_s"]
    return out


def compare(tmp: Path) -> dict[str, Any]:
    """Accounts before vs after: how many (pair, asset) cells changed, and by how much."""
    out = {}
    for name in ("kernel_total", "kernel_trades", "ladder_total", "vbt_convention_total"):
        a, b = np.load(tmp / f"before_{name}.npy"), np.load(tmp / f"after_{name}.npy")
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        out[name] = {"cells": int(a.size), "different": int((~same).sum()),
                     "max_abs": float(np.nanmax(np.abs(a - b))) if (~same).any() else 0.0}
    return out


def machine() -> str:
    cpu = cpu_model()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{cpu}, {os.cpu_count()} logical CPUs, {mem:.0f} GiB RAM, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}, numpy {np.__version__}")


def render(args: argparse.Namespace, info: dict[str, Any], res: dict[str, Any]) -> str:
    b, a = res["before"], res["after"]
    lines = [SECTION, "",
             f"Run {info['started']} UTC by `python bench/rolling_and_ladder.py --before "
             f"{args.before}{' --after ' + args.after if args.after else ''}"
             f"{' --vectorbt' if args.vectorbt else ''}`: before = commit {info['before']}, "
             f"after = {info['after']} (each exported and put first on `PYTHONPATH`, so only "
             "the library code differs).",
             f"Machine: {info['machine']}; no GPU. Load average (1 min) at the start of each "
             f"measuring process: {', '.join(info['loads'])}; the two cores were shared with "
             "other engineers' builds and tests, so figures move by tens of percent between "
             "runs: compare the columns of one table, which come from the same run.", "",
             "### Rolling windows, 2,520 x 2,000 random-walk panel", "",
             f"One pass (`x + 1` into a buffer) took {b['rolling']['pass_ms']:.1f} ms before and "
             f"{a['rolling']['pass_ms']:.1f} ms after; passes = time / one pass.", "",
             "| primitive | before | after | before / after |", "|---|---:|---:|---:|"]
    for name, before in b["rolling"]["cases"].items():
        after = a["rolling"]["cases"][name]
        lines.append(f"| `{name}` | {before['ms']:,.0f} ms ({before['passes']:.0f} passes) | "
                     f"{after['ms']:,.0f} ms ({after['passes']:.0f} passes) | "
                     f"{before['ms'] / after['ms']:.1f}x |")
    lines += ["", f"`run_single(\"f_sma_cross_fast\", rebal=\"monthly\")` on that panel: "
              f"{b['rolling']['run_single_monthly_s']:.2f} s before, of which the factor "
              f"{b['rolling']['factor_share']:.0%}; {a['rolling']['run_single_monthly_s']:.2f} s "
              f"after, the factor {a['rolling']['factor_share']:.0%} (the engine changed "
              "between the two commits too; the factor's own time is in the table).", "",
              "### Precision against exact sums (max / median relative error, 3,000 sampled "
              "windows)", "",
              "| data, window | implementation | before | after |", "|---|---|---:|---:|"]
    labels = {"drift200k_w5": "200,000-row drift, mean(5)",
              "drift200k_w250": "200,000-row drift, mean(250)",
              "sp500_w50": "S&P 505 stocks, mean(50)",
              "walk2520_std63": "2,520 x 50 walk, std(63)", "sp500_std20": "S&P 505, std(20)"}
    for key, label in labels.items():
        for impl, after in a["precision"][key].items():
            before = b["precision"][key][impl]
            lines.append(f"| {label} | {impl} | {before['max']:.1e} / {before['median']:.1e} | "
                         f"{after['max']:.1e} / {after['median']:.1e} |")
    ratio_b = b["ladder"]["run_ladder_s"] / b["ladder"]["kernel_s"]
    ratio_a = a["ladder"]["run_ladder_s"] / a["ladder"]["kernel_s"]
    cmp = res["compare"]
    lines += ["", f"### The ladder: {args.combos:,} pairs x 505 stocks x 1,259 days, "
              f"per-asset accounts, fees 10 bps (best of {args.repeat} warm, of "
              f"{args.rounds} rounds)", "",
              "| run | before | after |", "|---|---:|---:|",
              f"| kernel `sma_cross_ladder`, vectorbt's convention (`lag=0`) | "
              f"{b['ladder']['kernel_vbt_convention_s']:.2f} s | "
              f"{a['ladder']['kernel_vbt_convention_s']:.2f} s |",
              f"| kernel `sma_cross_ladder`, `f_sma_cross`'s convention (`lag=1, "
              f"min_periods=1`) | {b['ladder']['kernel_s']:.2f} s | "
              f"{a['ladder']['kernel_s']:.2f} s |",
              f"| public `run_ladder(\"f_sma_cross\", mode=\"per_asset\")`, same grid | "
              f"{b['ladder']['run_ladder_s']:.2f} s | {a['ladder']['run_ladder_s']:.2f} s |",
              f"| **`run_ladder` / kernel** | **{ratio_b:.2f}x** | **{ratio_a:.2f}x** |",
              f"| peak RSS of the process | {b['ladder']['peak_rss_mib']:.0f} MiB | "
              f"{a['ladder']['peak_rss_mib']:.0f} MiB |", "",
              f"`run_ladder`'s accounts equal the kernel's: max |difference| "
              f"{a['ladder']['run_ladder_vs_kernel_max_abs']:.1e} over "
              f"{cmp['ladder_total']['cells']:,} accounts, "
              f"{a['ladder']['run_ladder_vs_kernel_nan_mismatch']} NaN mismatches (before: "
              f"{b['ladder']['run_ladder_vs_kernel_max_abs']:.1e}). Before against after, cell "
              "by cell:", ""]
    for name, c in cmp.items():
        lines.append(f"- `{name}`: {c['different']:,} of {c['cells']:,} cells differ"
                     + (f" (max |difference| {c['max_abs']:.1e})" if c["different"] else ""))
    if "compensated_accounts_different" in a["ladder"]:
        lines += ["", "The kernels keep a plain running sum for their averages (vectorbt's `MA`, "
                  "bit for bit); with `compensated=True` "
                  f"{a['ladder']['compensated_accounts_different']:,} of "
                  f"{cmp['kernel_total']['cells']:,} accounts end differently, all through bars "
                  "where the two averages tie to less than half an ulp."]
    lines += ["", *figures_say(b, a)]
    if res.get("vectorbt"):
        v = res["vectorbt"]
        lines += ["", f"vectorbt {v['version']} on the same pairs (`MA` x2 + `from_signals`, "
                  f"{v['assets_per_call']} assets per call, one cold run): {v['cold_s']:.1f} s, "
                  f"peak RSS {v['peak_rss_mib']:,.0f} MiB; parity with the kernel in its "
                  f"convention: max |total return difference| {v['parity_max_abs']:.1e}, "
                  f"{v['parity_nan_mismatch']} NaN mismatches."]
    return "\n".join(lines) + "\n"


def figures_say(b: dict[str, Any], a: dict[str, Any]) -> list[str]:
    """The reading of the tables, with this run's numbers."""
    def passes(side: dict[str, Any], name: str) -> float:
        return float(side["rolling"]["cases"][name]["passes"])

    m20, m50, sma = "rolling_mean(x, 20)", "rolling_mean(x, 50)", "f_sma_cross_fast (SMA 20 / 50)"
    drift = a["precision"]["drift200k_w5"]["kernels rolling_mean_stack"]["max"]
    mean = max(a["precision"][k]["quantkit rolling_mean"]["max"]
               for k in ("drift200k_w5", "drift200k_w250", "sp500_w50"))
    std = max(a["precision"][k]["quantkit rolling_std"]["max"]
              for k in ("walk2520_std63", "sp500_std20"))
    old_std = max(b["precision"][k]["quantkit rolling_std"]["max"]
                  for k in ("walk2520_std63", "sp500_std20"))
    ratio_b = b["ladder"]["run_ladder_s"] / b["ladder"]["kernel_s"]
    ratio_a = a["ladder"]["run_ladder_s"] / a["ladder"]["kernel_s"]
    return [
        "What the figures say:", "",
        f"- A window no longer costs a pass per row of it: `rolling_mean` takes "
        f"{passes(a, m20):.0f} passes at 20 rows and {passes(a, m50):.0f} at 50 (the offset "
        f"loops took {passes(b, m20):.0f} and {passes(b, m50):.0f}); the SMA(20, 50) factor "
        f"went from {passes(b, sma):.0f} passes to {passes(a, sma):.0f}. Most of what is "
        "left is the compensated prefix sum (three running sums and the two-sum step), paid "
        "once per call however many windows follow.",
        f"- quantkit's means were within {mean:.0e} of the exact ones in every sampled "
        "window (an ulp or two: the exact mean is itself rounded twice here). The "
        f"kernels' plain running sum loses digits with the series' length (up to {drift:.0e} "
        "relative on the 200,000-row drift); it is kept there only so that ladder decisions "
        "match vectorbt's and the earlier releases' bit for bit. The block std is within "
        f"{std:.0e} of a long-double two-pass std: less exact than the old loop over the "
        f"window's offsets ({old_std:.0e}, at one pass per row of window), far closer than "
        "pandas' running update.",
        f"- `run_ladder` went from {ratio_b:.2f}x the kernel's time to {ratio_a:.2f}x on the "
        "same grid: it no longer recomputes every window of a tile for each tile (about 810 "
        "window means for these 1,000 pairs), it prepares each asset block once with all the "
        "pairs, as the kernel does, and the accounts are the kernel's cell for cell and "
        "those of before. What is left is building the market arrays and the table.",
    ]


def write_section(report: str) -> None:
    path = ROOT / "bench" / "RESULTS.md"
    text = path.read_text(encoding="utf-8")
    start = text.find(SECTION)
    if start >= 0:
        nxt = text.find("\n## ", start + len(SECTION))
        text = text[:start] + report.rstrip() + "\n" + (text[nxt:] if nxt >= 0 else "")
    else:
        text = text.rstrip() + "\n\n" + report.rstrip() + "\n"
    path.write_text(text, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=sorted(PARTS))
    parser.add_argument("--side", default="after")
    parser.add_argument("--tmp")
    parser.add_argument("--before", default="c76f62d", help="commit measured as 'before'")
    parser.add_argument("--after", default=None, help="commit measured as 'after' (default: "
                        "the working tree)")
    parser.add_argument("--combos", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2,
                        help="before/after alternations of the timed parts (best kept)")
    parser.add_argument("--vectorbt", action="store_true")
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args()
    if args.part:
        print(json.dumps(PARTS[args.part](args)))
        return 0
    if not SP500.exists():
        print(f"[bench] data not found: {SP500}")
        return 1
    started = dt.datetime.now(dt.UTC)
    loads: list[str] = []
    res: dict[str, Any] = {"before": {}, "after": {}}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        trees = {"before": export(args.before, tmp / "before"),
                 "after": export(args.after, tmp / "after") if args.after else None}
        for part in ("rolling", "precision", "ladder"):
            # timed parts alternate before / after for --rounds rounds, best of each kept:
            # the machine's load drifts within a run, and this spreads it over both sides
            for _ in range(1 if part == "precision" else args.rounds):
                for side in ("before", "after"):
                    loads.append(f"{os.getloadavg()[0]:.1f}")
                    res[side][part] = merge(res[side].get(part),
                                            child(part, side, trees[side], args, tmp))
        res["compare"] = compare(tmp)
        if args.vectorbt:
            loads.append(f"{os.getloadavg()[0]:.1f}")
            res["vectorbt"] = vectorbt(args, tmp)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()
    info = {"started": f"{started:%Y-%m-%d %H:%M}", "machine": machine(), "loads": loads,
            "before": args.before,
            "after": args.after or f"the working tree (HEAD {head} plus uncommitted changes)"}
    report = render(args, info, res)
    print(report)
    if args.write:
        write_section(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
