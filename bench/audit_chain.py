"""The audit chain: events recorded durably per second, the recorder's lag, verify's speed.

    python bench/audit_chain.py [--events 5000] [--rate 1000] [--seconds 3] [--verify 20000]

Three measurements, each on a fresh PostgreSQL schema and NATS namespace, the recorder alone
in this process (the issue's targets in brackets):

1. **recorded durably** [>= 5,000 events/s]: ``--events`` OMS-shaped events (about 250 bytes
   of JSON, three ids each) are stored in the OMS stream first; then the recorder starts and
   the clock runs until the last of them is committed in the chain (batches of 500, one
   transaction each, acknowledged after commit). Also the chain alone (``AuditChain.append``
   on batches of 500, no bus), for the database's share.
2. **lag** [p99 <= 1 s at 1,000 events/s]: events published at ``--rate`` for ``--seconds``
   while the recorder runs; lag = recorded time - the event's own time (one machine, one
   clock).
3. **verify** [1,000,000 entries <= 10 s]: over a chain of ``--verify`` entries appended
   beforehand and settled (``VACUUM (ANALYZE)``, ``CHECKPOINT``: otherwise the first read
   writes every page's hint bits again and the flush of a gigabyte runs beside verify),
   ``verify_chain`` in this process alone (every hash, digest and column; the Merkle root as
   it goes), then ``verify_chain_split`` (what ``audit verify`` runs: from
   ``MIN_SPLIT_ROWS`` rows on, a second process checks the newer half of what is left once
   it is ready); the two reports must agree.

Run at a small size by default (about a minute); the figures scale with the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import statistics
import sys
import time
import uuid
from typing import Any

import asyncpg
from _machine import cpu_model
from mts1b_operations.audit.chain import AuditChain
from mts1b_operations.audit.db import AuditDb
from mts1b_operations.audit.entries import Incoming
from mts1b_operations.audit.recorder import RecorderOptions, run_recorder
from mts1b_operations.audit.verify import verify_chain
from mts1b_operations.audit.verify_split import MIN_SPLIT_ROWS, verify_chain_split
from mts1b_platform.bus import Bus, BusSettings

DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
NATS_URL = os.environ.get("MTS_NATS_URL", "nats://127.0.0.1:4222")
SUBJECT = "mts.v1.oms.orders.accepted"


def event(i: int, ts: str) -> bytes:
    return json.dumps({
        "event_id": f"evt-{i}", "order_id": f"ord-{i}", "fund_id": f"F{i % 3}",
        "strategy_id": "mom", "event_type": "accepted", "symbol": "AAPL", "side": "buy",
        "quantity": str(1 + i % 500), "limit_price": "190.12", "ts": ts}).encode()


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


async def fresh() -> tuple[Bus, AuditDb]:
    bus = await Bus.connect(BusSettings(url=NATS_URL, namespace=f"b{uuid.uuid4().hex[:10]}"))
    await bus.declare_streams()
    db = await AuditDb.open(DSN, schema=f"au_b_{uuid.uuid4().hex[:10]}")
    return bus, db


async def cleanup(bus: Bus, db: AuditDb) -> None:
    await bus.delete_streams()
    await bus.drain()
    await db.drop_schema()
    await db.close()


async def wait_size(db: AuditDb, n: int, timeout: float = 300) -> float:
    chain, start = AuditChain(db), time.perf_counter()
    while (await chain.head()).size < n:
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"{(await chain.head()).size} of {n} recorded")
        await asyncio.sleep(0.01)
    return time.perf_counter()


async def recorded_durably(n: int) -> tuple[float, float]:
    bus, db = await fresh()
    try:
        stamp = now_iso()
        await bus.publish_batch_bytes(
            [(SUBJECT, event(i, stamp), {"Nats-Msg-Id": f"evt-{i}"}) for i in range(n)])
        stop = asyncio.Event()
        opts = RecorderOptions(dsn=DSN, schema=db.schema, namespace=bus.namespace,
                               skew_threshold=0, domains=("oms",))
        start = time.perf_counter()
        task = asyncio.create_task(run_recorder(opts, stop=stop))
        end = await wait_size(db, n)
        stop.set()
        await task
        service = n / (end - start)
        # the chain alone, same events, batches of 500
        other = await AuditDb.open(DSN, schema=db.schema + "_x")
        try:
            chain = AuditChain(other)
            messages = [Incoming(SUBJECT, event(i, stamp), {}, f"evt-{i}") for i in range(n)]
            t0 = time.perf_counter()
            for k in range(0, n, 500):
                await chain.append(messages[k:k + 500])
            alone = n / (time.perf_counter() - t0)
        finally:
            await other.drop_schema()
            await other.close()
        return service, alone
    finally:
        await cleanup(bus, db)


async def lag(rate: int, seconds: float) -> list[float]:
    bus, db = await fresh()
    try:
        stop, ready = asyncio.Event(), asyncio.Event()
        opts = RecorderOptions(dsn=DSN, schema=db.schema, namespace=bus.namespace,
                               skew_threshold=0, domains=("oms",), batch=500)
        task = asyncio.create_task(run_recorder(opts, ready=ready, stop=stop))
        await ready.wait()
        n = int(rate * seconds)
        start = time.perf_counter()
        for i in range(n):
            due = start + i / rate
            if (delay := due - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            await bus.publish_bytes(SUBJECT, event(i, now_iso()), {"Nats-Msg-Id": f"evt-{i}"})
        await wait_size(db, n)
        stop.set()
        await task
        rows = await db.pool.fetch("SELECT recorded_ts - producer_ts AS lag FROM audit_entries")
        return sorted(r["lag"].total_seconds() for r in rows)
    finally:
        await cleanup(bus, db)


async def verify_speed(n: int) -> tuple[float, float, bool]:
    db = await AuditDb.open(DSN, schema=f"au_b_{uuid.uuid4().hex[:10]}")
    try:
        chain, stamp = AuditChain(db), now_iso()
        for k in range(0, n, 2000):
            await chain.append([Incoming(SUBJECT, event(i, stamp), {}, f"evt-{i}")
                                for i in range(k, min(n, k + 2000))])
        # a settled table, as autovacuum leaves one: hint bits set and written, statistics
        # known - not a million rows just written, still being flushed while verify reads
        await db.pool.execute("VACUUM (ANALYZE) audit_entries")
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):  # not a superuser
            await db.pool.execute("CHECKPOINT")
        t0 = time.perf_counter()
        report = await verify_chain(chain)
        alone = n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        split = await verify_chain_split(chain, DSN)
        two = n / (time.perf_counter() - t0)
        return alone, two, (report.ok and report.checked == n
                            and split.as_dict() == report.as_dict())
    finally:
        await db.drop_schema()
        await db.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--verify", type=int, default=20000)
    args = parser.parse_args()
    conn = await asyncpg.connect(DSN)
    pg: dict[str, Any] = {name: await conn.fetchval(f"SHOW {name}")
                          for name in ("fsync", "synchronous_commit", "server_version")}
    await conn.close()
    print(f"{cpu_model()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; PostgreSQL "
          f"{pg['server_version']} fsync={pg['fsync']} "
          f"synchronous_commit={pg['synchronous_commit']}; Python {sys.version.split()[0]}")
    service, alone = await recorded_durably(args.events)
    print(f"recorded durably: {service:,.0f} events/s through the recorder "
          f"({args.events:,} stored events), {alone:,.0f} events/s appending alone")
    lags = await lag(args.rate, args.seconds)
    p50, p99 = statistics.median(lags), lags[min(len(lags) - 1, int(len(lags) * 0.99))]
    print(f"lag at {args.rate:,} events/s for {args.seconds:g} s: p50 {p50 * 1000:.0f} ms, "
          f"p99 {p99 * 1000:.0f} ms, max {lags[-1] * 1000:.0f} ms")
    alone, two, ok = await verify_speed(args.verify)
    print(f"verify over {args.verify:,} entries (ok={ok}): {alone:,.0f} entries/s in one "
          f"process, {two:,.0f} entries/s as `audit verify` runs it (two processes from "
          f"{MIN_SPLIT_ROWS:,} rows); 1,000,000 entries would take {1e6 / alone:.1f} s and "
          f"{1e6 / two:.1f} s")


if __name__ == "__main__":
    asyncio.run(main())
