"""Build the 505-asset x 1,259-day S&P 500 panel from the datalake store, and compare.

    python bench/datalake_panel.py [--store PATH] [--repeat 10]

Ingests ``../shared/data/sp500_5yr_cnuge/all_stocks_5yr.csv.gz`` into a temporary store (or uses
``--store`` if it already holds it), then times, inside one process:

* ``build_panel(<505 symbols>, 2013-02-08, 2018-02-07)``: OHLCV, back-adjusted, listing mask;
  the first call (cold: calendar and file caches empty in this process) and the median of
  ``--repeat`` warm calls;
* ``build_panel(universe("us-large-cap", n=500), ...)``: the same plus the point-in-time
  dollar-volume ranking at every monthly rebalance;
* the peer: pandas reading the same Parquet files and pivoting them to dates x symbols
  (``pd.read_parquet`` + ``pivot`` per field), without calendar alignment or adjustment.

Target: well under one second for the 505 x 1,259 panel.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from mts1b_datalake import LongCsvProvider, Store, build_panel, universe

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SP500 = DATA / "sp500_5yr_cnuge" / "all_stocks_5yr.csv.gz"
START, END = "2013-02-08", "2018-02-07"


def timed(fn: object, repeat: int) -> tuple[float, float]:
    """(first call, median of the next ``repeat`` calls) in seconds."""
    t0 = time.perf_counter()
    fn()  # type: ignore[operator]
    first = time.perf_counter() - t0
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        runs.append(time.perf_counter() - t0)
    return first, statistics.median(runs)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", help="a store that already holds the S&P 500 file")
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    if args.store:
        store = Store(args.store)
    else:
        if not SP500.exists():
            print(f"missing {SP500}; pass --store")
            return 2
        store = Store(tempfile.mkdtemp(prefix="bench-datalake-"))
        t0 = time.perf_counter()
        report = store.ingest(LongCsvProvider(SP500))
        print(f"ingest: {report.added:,} bars in {time.perf_counter() - t0:.2f}s")
    symbols = store.symbols()

    def panel() -> object:
        return build_panel(symbols, START, END, store=store)

    def large_cap() -> object:
        return build_panel(universe("us-large-cap", n=500), START, END, store=store)

    files = [str(Path(store.root) / e["path"]) for e in store.manifest()["bars"].values()]

    def peer() -> object:
        frame = pd.concat([pd.read_parquet(f, columns=["symbol", "date", "open", "high", "low",
                                                       "close", "volume"]) for f in files])
        return {c: frame.pivot(index="date", columns="symbol", values=c)
                for c in ("open", "high", "low", "close", "volume")}

    result = build_panel(symbols, START, END, store=store)
    print(f"panel: {result}")
    rows = [("build_panel, 505 symbols", *timed(panel, args.repeat)),
            ("build_panel, us-large-cap n=500", *timed(large_cap, args.repeat)),
            ("peer: pandas read_parquet + pivot", *timed(peer, args.repeat))]
    peer_warm = rows[-1][2]
    print(f"{'what':<36} {'first call':>11} {'warm median':>12} {'vs peer':>8}")
    for name, first, warm in rows:
        print(f"{name:<36} {first:>10.3f}s {warm:>11.3f}s {peer_warm / warm:>7.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
