"""In-process throughput of the OMS pre-trade gate pipeline (all eleven gates enabled).

    python bench/oms_gates.py [--orders 100000]

Every limit of the RiskEnvelope is set (none denies, so each order runs through all gates),
the book holds 20 positions and open orders, and orders vary in symbol, side and size so the
duplicate and repeated-execution memories do real work. Prints orders/s and p50/p99 latency
per order. Target: >= 50,000 orders/s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import statistics
import time
from decimal import Decimal as D  # noqa: N817

from mts1b_foundation import Equity, FundConfig, Order, OrderType, RiskEnvelope, Side
from mts1b_oms.gates import FundMemory, GateContext, GatePipeline
from mts1b_oms.testing import make_registry

SYMBOLS = [f"S{i:02d}" for i in range(20)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=100_000)
    args = parser.parse_args()
    risk = RiskEnvelope(
        allowed_brokers=["paper"], restricted_symbols=["BAD"], duplicate_window_seconds=D(5),
        price_collar_pct=D("0.05"), max_order_quantity=D(10**6), max_order_notional=D(10**8),
        max_adv_pct=D("0.5"), max_position_pct_nav=D("0.5"), max_gross_exposure=D(10),
        max_net_exposure=D(10), max_drawdown_pct=D("0.5"), max_messages_per_window=10**9,
        max_repeated_executions=10**9)
    fund = FundConfig(fund_id="f1", name="bench", target_nav_usd=D(10**8), broker="paper",
                      broker_account_id="a", strategies=["s1"], risk=risk)
    prices = {s: D(100 + i) for i, s in enumerate(SYMBOLS)}
    ctx = GateContext(fund=fund, now=dt.datetime.now(dt.UTC), nav=D(10**8),
                      positions={s: D(1000) for s in SYMBOLS},
                      open_buy={s: D(100) for s in SYMBOLS[:10]},
                      open_sell={s: D(100) for s in SYMBOLS[10:]}, prices=prices,
                      adv={s: D(10**6) for s in SYMBOLS}, peak_nav=D(10**8),
                      memory=FundMemory(), instruments=make_registry(*SYMBOLS))
    orders = []
    for i in range(args.orders):
        sym = SYMBOLS[i % len(SYMBOLS)]
        side = Side.BUY if i % 2 else Side.SELL
        limit = prices[sym] + D(i % 5) / 10
        orders.append(Order(idempotency_key=f"k{i}", fund_id="f1", strategy_id="s1",
                            instrument=Equity(symbol=sym), side=side,
                            quantity=D(1 + i), order_type=OrderType.LIMIT,
                            limit_price=limit))
    pipe = GatePipeline()
    t0 = dt.datetime.now(dt.UTC)
    nows = [t0 + dt.timedelta(microseconds=i * 10) for i in range(len(orders))]
    denied: dict[str, int] = {}
    gc.collect()
    gc.freeze()  # the 100k pre-built orders are setup: keep the collector from rescanning them
    # pass 1: throughput (no per-order timers)
    ctx.memory = FundMemory()
    start = time.perf_counter()
    for now, o in zip(nows, orders, strict=True):
        ctx.now = now
        d = pipe.evaluate(o, ctx).denial
        if d is not None:
            denied[d.code.value] = denied.get(d.code.value, 0) + 1
    elapsed = time.perf_counter() - start
    # pass 2: latency per order, on a fresh memory
    ctx.memory = FundMemory()
    lat = []
    clock = time.perf_counter_ns
    for now, o in zip(nows, orders, strict=True):
        ctx.now = now
        a = clock()
        pipe.evaluate(o, ctx)
        lat.append(clock() - a)
    q = statistics.quantiles(lat, n=100)
    rate = len(orders) / elapsed
    print(f"oms_gates: {len(orders)} orders through {len(pipe.gates)} gates, denied {denied}")
    print(f"  throughput {rate:,.0f} orders/s (target >= 50,000: "
          f"{'met' if rate >= 50_000 else 'NOT met'})")
    print(f"  latency p50 {q[49] / 1000:.1f} us, p99 {q[98] / 1000:.1f} us")


if __name__ == "__main__":
    main()
