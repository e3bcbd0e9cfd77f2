"""The README's demo: ``python -m mts1b_GPUbacktester.demo`` (what ``python3 dev.py demo`` runs).

End to end, with no server and no download:

1. install the datalake's synthetic market (seeded, about 300 names 2012-2024 with IPOs,
   delistings, splits and dividends) into the datalake store, once;
2. run the migration guide's example exactly as written: ``f_sma_cross(20, 50)`` on
   ``us-large-cap`` 2014-2024, daily, equal-weight long, 10 bps;
3. print the headline metrics, and a small ladder of (fast, slow) pairs;
4. write the tearsheet (default ``out/tearsheet.html``) and print its path.

The report is printed on stdout. ``python -m mts1b_GPUbacktester.demo ARGS`` runs the ``mts``
command ``mts mts1b-GPUbacktester demo ARGS``, so its log lines follow the ``mts`` root: on
stderr, warnings and errors only unless ``$MTS_LOG_LEVEL`` (or ``mts -v mts1b-GPUbacktester
demo``) asks for more, and never mixed into the report.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import typer

__all__ = ["main"]


def _say(text: str = "") -> None:
    """One line of the report, for people: stdout, never the logger."""
    typer.echo(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mts1b_GPUbacktester.demo",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/tearsheet.html", help="tearsheet path")
    parser.add_argument("--store", default=None, help="datalake store (default: the "
                        "$MTS_DATALAKE_ROOT or user data directory store)")
    parser.add_argument("--backend", default="auto", help="auto | numba | numpy | cupy")
    args = parser.parse_args(argv)

    from mts1b_datalake.synthetic import install_demo_market
    from mts1b_quantkit.factors import get

    from mts1b_GPUbacktester import run_ladder, run_single

    started = time.perf_counter()
    store = install_demo_market(args.store)
    _say(f"[demo] synthetic market ready in {store.root} "
         f"({time.perf_counter() - started:.1f}s)")

    started = time.perf_counter()
    result = run_single(
        factor=get("f_sma_cross"),
        params={"p_fast": 20, "p_slow": 50},
        universe="us-large-cap",
        start="2014-01-01", end="2024-01-01",
        rebal="daily",
        sizing={"method": "equal_weight_long", "gross": 1.0},
        cost_bps=10,
        benchmark="SPY",
        backend=args.backend,
        store=store,
    )
    m = result.metrics
    _say(f"[demo] f_sma_cross(20, 50) on us-large-cap, {result.equity.index[0].date()} .. "
         f"{result.equity.index[-1].date()}, {len(result.symbols)} names, next-open fills, "
         f"10 bps ({time.perf_counter() - started:.1f}s, backend {result.backend['backend']})")
    _say(f"  Sharpe        {m['sharpe']:8.2f}     benchmark: {result.benchmark_name}")
    _say(f"  CAGR          {m['cagr']:8.2%}")
    _say(f"  Max drawdown  {m['max_drawdown']:8.2%}")
    _say(f"  Volatility    {m['volatility']:8.2%}")
    _say(f"  Turnover/day  {m['turnover']:8.2%}")
    _say(f"  Costs         {result.cost_breakdown['total']:12,.0f}")
    _say(f"  Final NAV     {m['final_nav']:12,.0f}   (from {result.initial_nav:,.0f})")

    started = time.perf_counter()
    ladder = run_ladder(
        get("f_sma_cross"), grid={"p_fast": [5, 10, 20, 50], "p_slow": [50, 100, 200]},
        constraint=lambda p: p["p_fast"] < p["p_slow"], universe="us-large-cap",
        start="2014-01-01", end="2024-01-01", mode="per_asset", progress=False,
        backend=args.backend, store=store)
    _say(f"[demo] ladder: {len(ladder)} (fast, slow) pairs x {len(ladder.symbols)} names as "
         f"separate accounts in {time.perf_counter() - started:.2f}s")
    _say(ladder.table.sort_values("total_return_mean", ascending=False)
         .to_string(index=False, float_format=lambda v: f"{v:.3f}"))

    path = result.report(Path(args.out))
    _say(f"[demo] tearsheet: {path.resolve()}")
    return 0


if __name__ == "__main__":  # python -m mts1b_GPUbacktester.demo (dev.py demo): the mts command
    from mts1b_platform.cli import main as mts

    mts(["mts1b-GPUbacktester", "demo", *sys.argv[1:]])
