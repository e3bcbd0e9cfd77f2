"""End-to-end OMS latency and throughput: submit -> ack over NATS with PostgreSQL persistence.

    uv run --no-sync python bench/oms_e2e.py [--orders 2000] [--concurrency 1,16]

The OMS service (``mts1b_oms.service.run_service``, the code behind ``mts mts1b-oms serve``) runs
in a *separate process* - this same file started with ``--serve-child`` - so the client and the
service do not share an event loop, as in production. It gets a throwaway PostgreSQL schema and
a unique NATS namespace; both are dropped at the end (schema, streams and the KV bucket).

The broker is the OMS test double ``mts1b_oms.testing:RecordingBroker`` (acknowledges at once),
so the figures are the OMS itself: decode, idempotency lookup, ten pre-trade gates, the
PostgreSQL transactions that make the order durable, the broker call and its recorded answer,
and the reply. A reply with ``ok`` and status ACCEPTED means the order and its events are
committed in PostgreSQL. ``--broker`` takes another ``mts1b.brokers`` entry point or
``module:attr`` (built with no arguments).

For each concurrency level the client sends ``--orders`` distinct orders over
``mts.v1.oms.commands.submit`` request/reply with at most that many in flight, timing every
order from request to reply. Prints orders/s, p50/p99, server versions, load average and the
ratio against the targets (>= 1,000 durable orders/s end to end, p99 <= 20 ms), and the OMS
process's CPU time per order (user + system from ``/proc``; less noisy than the rate on a shared
machine).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from decimal import Decimal

import asyncpg
from mts1b_foundation import (
    CommandReply,
    Equity,
    FundConfig,
    Order,
    OrderStatus,
    Side,
    SubmitOrder,
)
from mts1b_oms.service import ServeOptions, run_service
from mts1b_oms.testing import drop_schema, make_fund, make_registry
from mts1b_platform.bus import Bus

DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TARGET_RATE = 1_000.0
TARGET_P99_MS = 20.0
SYMBOLS = [f"S{i:02d}" for i in range(20)]


def bench_fund() -> FundConfig:
    return make_fund("bench", name="e2e bench", nav=10**9)


# --- the service process ----------------------------------------------------------------------

async def serve_child(schema: str, namespace: str, broker: str) -> None:
    ready = asyncio.Event()
    opts = ServeOptions(dsn=DSN, funds=[bench_fund()], instruments=make_registry(*SYMBOLS),
                        broker=broker, schema=schema, namespace=namespace,
                        prices={s: Decimal(100 + i) for i, s in enumerate(SYMBOLS)})
    task = asyncio.get_running_loop().create_task(run_service(opts, ready=ready))
    waiter = asyncio.get_running_loop().create_task(ready.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():  # failed before ready: surface the error
        waiter.cancel()
        await task
        return
    print("READY", flush=True)
    await task  # until SIGTERM, then drain


# --- the client -------------------------------------------------------------------------------

def make_order(run: str, i: int) -> Order:
    return Order(idempotency_key=f"{run}-{i}", fund_id="bench", strategy_id="s1",
                 instrument=Equity(symbol=SYMBOLS[i % len(SYMBOLS)]),
                 side=Side.BUY if i % 2 else Side.SELL, quantity=Decimal(1 + i % 50))


async def run_level(bus: Bus, n: int, concurrency: int, label: str) -> dict[str, float]:
    orders = [SubmitOrder(order=make_order(label, i)) for i in range(n)]
    lat: list[float] = []
    bad: list[str] = []
    queue: asyncio.Queue[SubmitOrder] = asyncio.Queue()
    for cmd in orders:
        queue.put_nowait(cmd)

    async def worker() -> None:
        while True:
            try:
                cmd = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            a = time.perf_counter()
            reply = await bus.request("mts.v1.oms.commands.submit", cmd, timeout=30,
                                      reply_model=CommandReply)
            lat.append(time.perf_counter() - a)
            if not (isinstance(reply, CommandReply) and reply.ok
                    and reply.status is OrderStatus.ACCEPTED and not reply.duplicate):
                bad.append(repr(reply)[:200])

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    if bad:
        raise SystemExit(f"{len(bad)} orders not accepted, first: {bad[0]}")
    q = statistics.quantiles(lat, n=100)
    return {"rate": n / elapsed, "p50": q[49] * 1000, "p99": q[98] * 1000,
            "max": max(lat) * 1000, "elapsed": elapsed}


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used so far, from /proc/<pid>/stat: the OMS's
    own cost per order, which a shared machine's scheduling does not distort as it does the rate."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def count_orders(schema: str) -> int:
    conn = await asyncpg.connect(DSN)
    try:
        return int(await conn.fetchval(f'SELECT count(*) FROM "{schema}".orders'))
    finally:
        await conn.close()


async def pg_version() -> str:
    conn = await asyncpg.connect(DSN)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


async def pg_setting(name: str) -> str:
    conn = await asyncpg.connect(DSN)
    try:
        return str(await conn.fetchval(f"SHOW {name}"))
    finally:
        await conn.close()


async def pg_wal_syncs() -> int:
    """WAL flushes to disk so far (each durable commit waits for one; concurrent commits can
    share one). Server-wide, so other clients of a shared server inflate the per-order figure."""
    conn = await asyncpg.connect(DSN)
    try:
        return int(await conn.fetchval("SELECT wal_sync FROM pg_stat_wal"))
    finally:
        await conn.close()


async def commit_probe(schema: str, n: int = 50) -> float:
    """Median ms of a one-row durable commit on this server: the floor under each OMS write."""
    conn = await asyncpg.connect(DSN)
    try:
        await conn.execute(f'CREATE TABLE "{schema}".bench_probe (a int)')
        lat = []
        for i in range(n):
            a = time.perf_counter()
            await conn.execute(f'INSERT INTO "{schema}".bench_probe VALUES ($1)', i)
            lat.append(time.perf_counter() - a)
        return statistics.median(lat) * 1000
    finally:
        await conn.close()


async def client(args: argparse.Namespace) -> None:
    run_id = uuid.uuid4().hex[:10]
    namespace, schema = f"b{run_id}", f"oms_bench_{run_id}"
    levels = [int(x) for x in args.concurrency.split(",")]
    bus = await Bus.connect(namespace=namespace, connect_timeout=5)
    child = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--serve-child", "--schema", schema,
         "--namespace", namespace, "--broker", args.broker],
        stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 60)
        if line.strip() != "READY":
            raise SystemExit(f"OMS service did not start (exit {child.poll()}): {line!r}")
        print(f"oms_e2e: OMS service in a subprocess (pid {child.pid}), broker {args.broker}, "
              f"schema {schema}, namespace {namespace}")
        print(f"  {str(bus.nc.connected_server_version).strip('<>')}, "
              f"PostgreSQL {await pg_version()}, Python {sys.version.split()[0]}, "
              f"{os.cpu_count()} CPUs")
        warm = await run_level(bus, min(200, args.orders), 4, f"warm{run_id}")
        print(f"  warm-up {min(200, args.orders)} orders: {warm['rate']:,.0f} orders/s")
        print(f"  one durable PostgreSQL commit (fsync {await pg_setting('fsync')}, "
              f"synchronous_commit {await pg_setting('synchronous_commit')}): "
              f"median {await commit_probe(schema):.2f} ms")
        results = []
        for c in levels:
            load = os.getloadavg()
            syncs = await pg_wal_syncs()
            cpu = process_cpu_s(child.pid)
            r = await run_level(bus, args.orders, c, f"c{c}{run_id}")
            cpu_us = (process_cpu_s(child.pid) - cpu) / args.orders * 1e6
            per_order = (await pg_wal_syncs() - syncs) / args.orders
            results.append((c, r))
            print(f"  {args.orders} orders, {c:>3} in flight: {r['rate']:>7,.0f} orders/s "
                  f"(x{r['rate'] / TARGET_RATE:.2f} of {TARGET_RATE:,.0f}), "
                  f"p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms "
                  f"(x{r['p99'] / TARGET_P99_MS:.2f} of {TARGET_P99_MS:.0f} ms), "
                  f"max {r['max']:.1f} ms; load avg before {load[0]:.2f}, {load[1]:.2f}, "
                  f"{load[2]:.2f}; {per_order:.1f} WAL flushes per order; "
                  f"OMS process CPU {cpu_us:.0f} us per order")
        stored = await count_orders(schema)
        expected = min(200, args.orders) + args.orders * len(levels)
        print(f"  orders durable in PostgreSQL: {stored} (expected {expected})")
        best = max(r["rate"] for _c, r in results)
        met = [c for c, r in results if r["rate"] >= TARGET_RATE and r["p99"] <= TARGET_P99_MS]
        print(f"  best {best:,.0f} orders/s; targets (>= {TARGET_RATE:,.0f}/s and p99 <= "
              f"{TARGET_P99_MS:.0f} ms together) met at concurrency: {met or 'none'}")
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(child.wait, 30)
            except subprocess.TimeoutExpired:
                child.kill()
        await drop_schema(DSN, schema)
        await bus.delete_streams()
        await bus.drain()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2_000)
    parser.add_argument("--concurrency", default="1,16", help="in-flight levels, comma list")
    parser.add_argument("--broker", default="mts1b_oms.testing:RecordingBroker")
    parser.add_argument("--serve-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--schema", help=argparse.SUPPRESS)
    parser.add_argument("--namespace", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_child:
        asyncio.run(serve_child(args.schema, args.namespace, args.broker))
    else:
        asyncio.run(client(args))


if __name__ == "__main__":
    main()
