"""Sleeve ownership in the OMS at full size (issue #17): planning a composed target and
splitting fills across sleeves, in process (no database, no bus).

    uv run --no-sync python bench/oms_sleeves.py [--sleeves 20] [--symbols 3000] [--fills 20000]

1. ``plan_allocation``: an allocation of ``--sleeves`` sleeves over ``--symbols`` symbols
   (each sleeve holds a random third of the symbols, long or short) against random current
   holdings -> one order per symbol serving every sleeve with a delta, and the crossing
   figures. Timed over five runs (best and median).
2. The fill split: ``--fills`` fills of 1-37 shares on orders of ``--sleeves`` sleeves with
   mixed signs (crosses), each split with ``Order.sleeve_credits`` given the earlier credits;
   checks that every fill's credits sum to it exactly and that completed orders credited each
   sleeve exactly its share. Prints microseconds per fill.

The heavy variant of the unit tests in ``mts1b-oms/tests/test_sleeve_ownership.py`` and
``mts1b-foundation/tests/test_sleeves.py``; no target to meet, figures for RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import time
from decimal import Decimal

from mts1b_foundation import MULTI_SLEEVE_STRATEGY, Equity, Order, Side, SleeveAllocation
from mts1b_oms.allocation import plan_allocation

D = Decimal


def _allocation(rng: random.Random, sleeves: int, symbols: list[str]
                ) -> tuple[SleeveAllocation, dict[tuple[str, str], Decimal]]:
    targets: dict[str, dict[str, Decimal]] = {}
    holdings: dict[tuple[str, str], Decimal] = {}
    for i in range(sleeves):
        name = f"s{i:02d}"
        chosen = rng.sample(symbols, len(symbols) // 3)
        targets[name] = {sym: D(rng.randint(-5000, 5000)) for sym in chosen}
        for sym in rng.sample(symbols, len(symbols) // 4):
            holdings[(name, sym)] = D(rng.randint(-5000, 5000))
    alloc = SleeveAllocation(fund_id="f1", as_of=dt.datetime(2026, 12, 4, tzinfo=dt.UTC),
                             sleeves=targets)
    return alloc, holdings


def bench_plan(sleeves: int, n_symbols: int) -> None:
    rng = random.Random(1)
    symbols = [f"S{i:04d}" for i in range(n_symbols)]
    alloc, holdings = _allocation(rng, sleeves, symbols)
    prices = {s: D(rng.randint(1000, 50000)) / 100 for s in symbols}
    instruments = {s: Equity(symbol=s) for s in symbols}
    times = []
    plan = None
    for _ in range(5):
        t0 = time.perf_counter()
        plan = plan_allocation(alloc, holdings=holdings, prices=prices, instruments=instruments)
        times.append(time.perf_counter() - t0)
    assert plan is not None
    print(f"plan_allocation {sleeves} sleeves x {n_symbols} symbols: {len(plan.orders)} orders, "
          f"{len(plan.transfers)} transfers, gross {plan.gross_shares} net {plan.net_shares} "
          f"crossed {plan.crossed_shares} shares ({plan.crossed_notional} notional); "
          f"best {min(times) * 1e3:.1f} ms, median {statistics.median(times) * 1e3:.1f} ms")


def bench_split(sleeves: int, fills: int) -> None:
    rng = random.Random(2)
    done = 0
    orders = 0
    t_split = 0.0
    while done < fills:
        shares = {f"s{i:02d}": D(rng.randint(-400, 600) or 1) for i in range(sleeves)}
        net = sum(shares.values())
        if net == 0:
            continue
        order = Order(idempotency_key=f"k{orders}", fund_id="f1",
                      strategy_id=MULTI_SLEEVE_STRATEGY, instrument=Equity(symbol="AAPL"),
                      side=Side.BUY if net > 0 else Side.SELL, quantity=abs(net),
                      sleeves=shares)
        orders += 1
        credited: dict[str, Decimal] = {}
        left = order.quantity
        while left > 0 and done < fills:
            piece = min(left, D(rng.randint(1, 37)))
            t0 = time.perf_counter()
            credits = order.sleeve_credits(piece, credited)
            t_split += time.perf_counter() - t0
            assert sum(credits.values()) == order.signed_quantity / order.quantity * piece
            for s, c in credits.items():
                credited[s] = credited.get(s, D(0)) + c
            left -= piece
            done += 1
        if left == 0:
            assert {s: c for s, c in credited.items() if c} == shares
    print(f"fill split over {sleeves} sleeves: {fills} fills on {orders} orders, "
          f"{t_split / fills * 1e6:.1f} us per fill; every fill's credits summed to it and "
          "every completed order credited each sleeve exactly its share")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sleeves", type=int, default=20)
    parser.add_argument("--symbols", type=int, default=3000)
    parser.add_argument("--fills", type=int, default=20000)
    args = parser.parse_args()
    bench_plan(args.sleeves, args.symbols)
    bench_split(args.sleeves, args.fills)


if __name__ == "__main__":
    main()
