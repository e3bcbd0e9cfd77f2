"""Backtest-paper parity on the S&P 500 file (issue #20): ``run_single`` and the paper loop.

    python bench/paper_parity.py [--store PATH] [--symbols N] [--start 2013-05-15]

Ingests ``../shared/data/sp500_5yr_cnuge/all_stocks_5yr.csv.gz`` into a temporary store (or
uses ``--store`` if it already holds it; the data is never copied elsewhere), then runs the
comparison of ``mts1b-research/tests/test_paper_parity.py`` (the same harness, loaded from that
file): a 3-month momentum strategy (``f_momentum_12_1`` with ``h_long=63, h_skip=5``, long
only, rank-weighted, rebalanced at the last session of each week) traded by the paper loop
(the OMS's rebalance and a ``PaperClient`` fed the raw bars session by session, targets from
``panel_for`` + ``strategy_weights`` at each decision) and by ``run_single`` on the same
targets, 10 bps commission, next-open fills, fractional shares (lot 1e-8).

Prints the trades compared, the largest differences (quantity in shares, beyond the rounding
rule's allowance, price, NAV) and the seconds each path took. The file has no corporate
actions as events (its prices are split-adjusted already), but it has gaps (a name without a
bar on a day: its order waits) and names whose prices stop early (closed at the last close).
Exit status 1 when the paths disagree, 2 when the data is absent.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _machine import cpu_model
from mts1b_datalake import LongCsvProvider, Store
from mts1b_foundation import StrategySpec

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MTS1B_SHARED_DATA", ROOT.parent / "shared" / "data"))
SP500 = DATA / "sp500_5yr_cnuge" / "all_stocks_5yr.csv.gz"
HARNESS = ROOT / "mts1b-research" / "tests" / "test_paper_parity.py"


def harness() -> Any:
    """The test module, loaded by path (the bench and the CI test compare the same way)."""
    spec = importlib.util.spec_from_file_location("paper_parity_harness", HARNESS)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {HARNESS}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", help="a store that already holds the S&P 500 file")
    parser.add_argument("--symbols", type=int, default=0, help="first N symbols only (0: all)")
    parser.add_argument("--start", default="2013-05-15")
    parser.add_argument("--end", default="2018-02-07")
    args = parser.parse_args()
    if args.store:
        store = Store(args.store)
    else:
        if not SP500.exists():
            print(f"skipped: {SP500} is absent (set MTS1B_SHARED_DATA or pass --store)")
            return 2
        store = Store(tempfile.mkdtemp(prefix="bench-paper-parity-"))
        t0 = time.perf_counter()
        report = store.ingest(LongCsvProvider(SP500))
        print(f"ingest: {report.added:,} bars in {time.perf_counter() - t0:.2f}s "
              f"(rejected {report.rejected}, repaired {report.repaired})")
    symbols = sorted(store.symbols())
    if args.symbols:
        symbols = symbols[:args.symbols]
    spec = StrategySpec(name="sp500_parity", factor="f_momentum_12_1",
                        params={"h_long": 63, "h_skip": 5}, universe=symbols,
                        sizing={"method": "rank_weighted", "long_only": True})
    h = harness()
    found = h.paper_parity(store, spec, symbols, dt.date.fromisoformat(args.start),
                           dt.date.fromisoformat(args.end), lookback=80)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"machine: {cpu_model()}, {os.cpu_count()} cpus, Python {platform.python_version()}, "
          f"load average {load}, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"panel: {found.symbols} symbols x {found.sessions} sessions "
          f"({args.start} .. {args.end})")
    print(f"trades compared: {found.paper_trades:,} paper, {found.backtest_trades:,} backtest, "
          f"unmatched {len(found.unmatched)}; by reason {found.reasons}")
    print(f"max |quantity difference|: {found.max_qty_abs:.3e} shares "
          f"({found.max_qty_rel:.3e} relative), beyond the rounding allowance "
          f"{found.max_qty_excess:.3e}")
    print(f"max price difference: {found.max_price_rel:.3e} relative")
    print(f"NAV: max daily difference {found.max_nav_rel:.3e} relative; final "
          f"{found.final_nav_paper:.6f} paper vs {found.final_nav_backtest:.6f} backtest "
          f"({found.final_nav_rel:.3e})")
    print(f"time: paper loop {found.paper_seconds:.2f} s, run_single "
          f"{found.backtest_seconds:.2f} s")
    if found.unmatched:
        print("first unmatched:", found.unmatched[:10])
    ok = (not found.unmatched and found.max_qty_excess == 0.0 and found.max_nav_rel <= 1e-6)
    print("parity:", "yes" if ok else "NO")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
