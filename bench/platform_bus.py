"""Benchmark of mts1b_platform.bus on loopback: JetStream publish throughput and request/reply.

    python bench/platform_bus.py                 # against $MTS_NATS_URL (default 127.0.0.1:4222)
    python bench/platform_bus.py --messages 100000 --requests 5000

1. Publish throughput: ``Bus.publish_batch`` (registry check, JSON encoding, Nats-Msg-Id,
   traceparent, asynchronous acks) of ``--messages`` Bar events in batches of ``--batch``; the
   figure counts only messages whose JetStream ack arrived. For reference the same number of
   pre-encoded payloads is also sent with bare nats-py ``publish_async`` (no checks, no headers).
2. Request/reply: ``Bus.request`` of a CancelOrder answered by ``Bus.serve`` with a
   CommandReply, one at a time, ``--requests`` times after a warm-up; p50/p99/max latency. For
   reference the same exchange with bare nats-py (``nc.request`` and a raw responder).

Targets (issue 3): >= 20,000 acknowledged publishes/s and p99 <= 2 ms on the 2-core machine.
Everything runs under a throw-away namespace whose streams are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import statistics
import time
import uuid
from decimal import Decimal

from mts1b_foundation import Bar, CancelOrder, CommandReply
from mts1b_platform.bus import Bus, BusSettings
from nats.aio.msg import Msg

TARGET_PUBLISH_PER_S = 20_000
TARGET_P99_MS = 2.0


def _bars(n: int) -> list[tuple[str, Bar]]:
    base = dt.datetime(2024, 1, 2, 21, tzinfo=dt.UTC)
    out = []
    for i in range(n):
        symbol = f"S{i % 500}"
        bar = Bar(symbol=symbol, ts=base + dt.timedelta(minutes=i), interval="1m",
                  open=Decimal("10"), high=Decimal("11"), low=Decimal("9"),
                  close=Decimal("10.5"), volume=Decimal(i))
        out.append((f"mts.v1.datalake.bars.{symbol}", bar))
    return out


async def bench_publish(bus: Bus, n: int, batch: int) -> dict[str, float]:
    await bus.declare_streams(["datalake"])
    items = _bars(n)
    started, cpu_started = time.perf_counter(), time.process_time()
    acked = 0
    for i in range(0, n, batch):
        acks = await bus.publish_batch(items[i:i + batch])
        acked += sum(1 for a in acks if not a.duplicate)
    elapsed = time.perf_counter() - started
    cpu_us = (time.process_time() - cpu_started) / n * 1e6
    info = await bus.js.stream_info(bus.stream_for("datalake"))

    # Reference: bare nats-py with async acks, pre-encoded payloads, no headers.
    payloads = [(bus.wire_subject(s), b.to_json()) for s, b in items]
    await bus.js.purge_stream(bus.stream_for("datalake"))
    raw_started = time.perf_counter()
    for i in range(0, n, batch):
        futures = [await bus.js.publish_async(s, p) for s, p in payloads[i:i + batch]]
        await asyncio.gather(*futures)
    raw_elapsed = time.perf_counter() - raw_started
    return {"messages": n, "acked": acked, "stored": int(info.state.messages),
            "seconds": elapsed, "per_s": acked / elapsed, "raw_per_s": n / raw_elapsed,
            "cpu_us": cpu_us}


async def bench_request(bus: Bus, n: int) -> dict[str, float]:
    async def cancel(request: CancelOrder) -> CommandReply:
        return CommandReply(ok=True, order_id=request.order_id)

    await bus.serve("mts.v1.oms.commands.cancel", cancel)
    command = CancelOrder(order_id="ord-bench")
    for _ in range(200):  # warm-up
        await bus.request("mts.v1.oms.commands.cancel", command, reply_model=CommandReply)
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        await bus.request("mts.v1.oms.commands.cancel", command, reply_model=CommandReply)
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()

    # Reference: bare nats-py request/reply with the same payloads, no checks, no spans.
    async def echo(msg: Msg) -> None:
        await msg.respond(reply_bytes)

    reply_bytes = CommandReply(ok=True, order_id="ord-bench").to_json()
    wire = bus.wire_subject("bench.raw")
    sub = await bus.nc.subscribe(wire, cb=echo)
    raw = []
    payload = command.to_json()
    for _ in range(200):
        await bus.nc.request(wire, payload, timeout=2)
    for _ in range(n):
        t0 = time.perf_counter()
        await bus.nc.request(wire, payload, timeout=2)
        raw.append((time.perf_counter() - t0) * 1000)
    await sub.unsubscribe()
    raw.sort()
    return {"requests": n, "p50_ms": statistics.median(samples),
            "p99_ms": samples[int(0.99 * (n - 1))], "max_ms": samples[-1],
            "raw_p50_ms": statistics.median(raw), "raw_p99_ms": raw[int(0.99 * (n - 1))]}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("MTS_NATS_URL", "nats://127.0.0.1:4222"))
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--requests", type=int, default=3_000)
    args = parser.parse_args()

    bus = await Bus.connect(BusSettings(url=args.url, namespace=f"bench{uuid.uuid4().hex[:8]}"))
    try:
        pub = await bench_publish(bus, args.messages, args.batch)
        rr = await bench_request(bus, args.requests)
    finally:
        await bus.delete_streams()
        await bus.drain()
    ok_pub = pub["per_s"] >= TARGET_PUBLISH_PER_S
    ok_rr = rr["p99_ms"] <= TARGET_P99_MS
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"nats-server {bus.server_version} at {args.url}; Python {platform.python_version()}; "
          f"{os.cpu_count()} cores; load average {load:.2f} at the end")
    print(f"publish_batch: {pub['acked']:.0f}/{pub['messages']:.0f} acked "
          f"({pub['stored']:.0f} stored) in {pub['seconds']:.2f}s = {pub['per_s']:,.0f}/s "
          f"[target >= {TARGET_PUBLISH_PER_S:,}: {'met' if ok_pub else 'MISSED'}]; "
          f"client CPU {pub['cpu_us']:.1f} us/message; "
          f"bare nats-py publish_async: {pub['raw_per_s']:,.0f}/s")
    print(f"request/reply x{rr['requests']:.0f}: p50 {rr['p50_ms']:.3f} ms, "
          f"p99 {rr['p99_ms']:.3f} ms, max {rr['max_ms']:.3f} ms "
          f"[target p99 <= {TARGET_P99_MS} ms: {'met' if ok_rr else 'MISSED'}]; "
          f"bare nats-py: p50 {rr['raw_p50_ms']:.3f} ms, p99 {rr['raw_p99_ms']:.3f} ms")
    return 0 if ok_pub and ok_rr else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
