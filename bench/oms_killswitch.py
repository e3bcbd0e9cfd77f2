"""The OMS kill switch at full size: a halt of 500 working orders, and SIGKILLs during sweeps.

    uv run --no-sync python bench/oms_killswitch.py [--part halt|kills|both] [--orders 500]
        [--runs 3] [--kills 20] [--cancel-seconds 0.2] [--cancel-rate 20]

The OMS runs as ``python -m mts1b_oms.cli serve`` (a separate process, as in production) on a
throwaway PostgreSQL schema and NATS namespace (both dropped afterwards). Its broker is the OMS
test double ``mts1b_oms.testing:RecordingBroker`` backed by a file, slow to cancel
(``--cancel-seconds`` per cancel, taken by the venue half-way through) and writing the
wall-clock time of every cancel request it receives, so the figures below come from the venue's
own record.

``halt``: submit ``--orders`` orders (all working), wait until their events are published,
then halt the fund over ``mts.v1.oms.commands.halt`` (signed by a test key the service has
registered) and time the reply at the client; read
when each cancel reached the venue and when the sweep finished. Target: the reply under
100 ms, and every cancel sent within 25 s (500 at 20/s need 24.95 s by the rate alone).

``kills``: the same halt, then SIGKILL the service ``--kills`` times while the sweep is
unfinished (checked in PostgreSQL before each kill), restarting it each time; afterwards check
that the venue has no working order, none canceled twice, none lost, and count the cancels a
kill made the next instance send again.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _machine import cpu_model
from mts1b_foundation import CommandReply, HaltTrading, SubmitOrder
from mts1b_oms.orderstore import CancelOutcome
from mts1b_oms.signing import SigningKey
from mts1b_oms.store import Store
from mts1b_oms.testing import (
    RecordingBroker,
    drop_schema,
    make_fund,
    make_order,
    make_registry,
    write_signing_keys,
)
from mts1b_platform.bus import Bus

DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TARGET_REPLY_MS = 100.0
TARGET_SENT_S = 25.0


class Service:
    """One ``serve`` process at a time on a fixed schema, namespace and venue file."""

    def __init__(self, tmp: Path, schema: str, namespace: str, args: argparse.Namespace) -> None:
        self.tmp, self.schema, self.namespace, self.args = tmp, schema, namespace, args
        self.proc: subprocess.Popen[bytes] | None = None
        (tmp / "funds.json").write_text(json.dumps([make_fund().model_dump(mode="json")]))
        (tmp / "instruments.json").write_text(make_registry().to_json())
        self.keys, key_files = write_signing_keys(tmp)
        self.operator = SigningKey.load(key_files["ops-test"])

    async def start(self) -> float:
        """Start and wait until it serves; seconds that took."""
        env = {**os.environ, "MTS_DATABASE_URL": DSN}
        cmd = [sys.executable, "-m", "mts1b_oms.cli", "serve",
               "--funds", str(self.tmp / "funds.json"),
               "--instruments", str(self.tmp / "instruments.json"),
               "--broker", "mts1b_oms.testing:RecordingBroker",
               "--broker-arg", f"path={self.tmp / 'venue.jsonl'}",
               "--broker-arg", f"cancel_seconds={self.args.cancel_seconds}",
               "--cancel-rate", str(self.args.cancel_rate),
               "--schema", self.schema, "--namespace", self.namespace,
               "--keys", str(self.keys)]
        a = time.perf_counter()
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                     stderr=(self.tmp / "oms.log").open("ab"))
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), 120)
        if not line.startswith(b"oms serving"):
            raise SystemExit(f"the OMS did not start: {line!r}; see {self.tmp / 'oms.log'}")
        return time.perf_counter() - a

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(self.proc.wait)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, 60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


async def submit_all(bus: Bus, n: int, run: str) -> list[str]:
    """``n`` working orders, at most 16 in flight."""
    ids: list[str] = []
    queue = list(range(n))

    async def worker() -> None:
        while queue:
            i = queue.pop()
            r = await bus.request("mts.v1.oms.commands.submit",
                                  SubmitOrder(order=make_order(f"{run}-{i}")), timeout=30,
                                  reply_model=CommandReply)
            if not (isinstance(r, CommandReply) and r.ok):
                raise SystemExit(f"order not accepted: {r!r}")
            ids.append(r.order_id or "")

    await asyncio.gather(*(worker() for _ in range(16)))
    return ids


async def quiet(store: Store) -> None:
    """Wait until the submissions' events are published (the outbox is empty) and a moment
    more: the halt then meets 500 working orders, not the relay's backlog."""
    for _ in range(600):
        if await store.unpublished_count() == 0:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)


async def halt(bus: Bus, operator: SigningKey) -> tuple[float, float, CommandReply]:
    """Halt fund f1, signed by ``operator``; (wall-clock time sent, reply latency in ms,
    reply)."""
    command = operator.sign(HaltTrading, "fund", "f1", "bench halt")
    sent = time.time()
    a = time.perf_counter()
    reply = await bus.request("mts.v1.oms.commands.halt", command, timeout=30,
                              reply_model=CommandReply)
    ms = (time.perf_counter() - a) * 1000
    if not (isinstance(reply, CommandReply) and reply.ok):
        raise SystemExit(f"halt refused: {reply!r}")
    return sent, ms, reply


async def wait_finished(store: Store, sweep_id: str, limit: float = 600.0) -> float:
    """Poll until the sweep has finished; the wall-clock time it finished (stored)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        sweep = await store.sweep(sweep_id)
        if sweep is not None and sweep.finished and sweep.finished_at is not None:
            return sweep.finished_at.timestamp()
        await asyncio.sleep(0.1)
    raise SystemExit(f"sweep {sweep_id} not finished after {limit:.0f}s")


def venue_record(tmp: Path) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """(cancel requests, cancels that took) as the venue wrote them, with their times."""
    requests, took = [], []
    for line in (tmp / "venue.jsonl.cancels").read_text().splitlines():
        rec = json.loads(line)
        if "canceled" in rec:
            took.append((rec["canceled"], rec["at"]))
        else:
            requests.append((rec["cancel_request"], rec["at"]))
    return requests, took


async def check_outcome(store: Store, tmp: Path, ids: list[str], sweep_id: str
                        ) -> dict[str, int]:
    """What the venue and the OMS hold afterwards; raises if anything is working or lost."""
    venue = RecordingBroker(path=tmp / "venue.jsonl")
    working = await venue.open_orders()
    twice = len(venue.canceled) - len(set(venue.canceled))
    lost = len(set(ids) - set(venue.canceled))
    sweep = await store.sweep(sweep_id)
    assert sweep is not None
    not_canceled = [o for o in sweep.orders if o.outcome is not CancelOutcome.CANCELED]
    oms_open = len([st for st in await store.open_orders() if st.order_id in set(ids)])
    result = {"working at venue": len(working), "canceled twice": twice, "lost": lost,
              "sweep rows not canceled": len(not_canceled), "open in the OMS": oms_open,
              "cancel requests": len(venue.cancel_requests),
              "repeats sent after kills": len(venue.cancel_requests) - len(set(ids))}
    if working or twice or lost or not_canceled or oms_open:
        raise SystemExit(f"kill switch check failed: {result}")
    return result


async def one_halt(args: argparse.Namespace, run: int) -> dict[str, float]:
    tag = uuid.uuid4().hex[:10]
    schema, namespace = f"oms_ks_{tag}", f"ks{tag}"
    bus = await Bus.connect(namespace=namespace, connect_timeout=5)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        service = Service(tmp, schema, namespace, args)
        store = None
        try:
            await service.start()
            ids = await submit_all(bus, args.orders, f"h{run}")
            store = await Store.open(DSN, schema=schema, min_size=1, max_size=2)
            await quiet(store)
            load = os.getloadavg()
            sent, reply_ms, reply = await halt(bus, service.operator)
            sweep_id = str(reply.context["sweep_id"])
            finished = await wait_finished(store, sweep_id)
            requests, _took = venue_record(tmp)
            await check_outcome(store, tmp, ids, sweep_id)
            first, last = requests[0][1], requests[-1][1]
            out = {"reply_ms": reply_ms, "outstanding": float(reply.context["outstanding"]),
                   "first_sent_s": first - sent, "all_sent_s": last - sent,
                   "finished_s": finished - sent,
                   "rate": (len(requests) - 1) / (last - first) if last > first else 0.0,
                   "load": load[0]}
            print(f"  run {run}: {args.orders} working orders; halt reply {reply_ms:.1f} ms "
                  f"(outstanding {reply.context['outstanding']}); first cancel at the venue "
                  f"+{out['first_sent_s'] * 1000:.0f} ms, all {len(requests)} sent by "
                  f"+{out['all_sent_s']:.2f} s ({out['rate']:.2f}/s), sweep finished "
                  f"+{out['finished_s']:.2f} s; load avg before the halt {load[0]:.2f}")
            return out
        finally:
            await service.stop()
            if store is not None:
                await store.close()
            await drop_schema(DSN, schema)
            await bus.delete_streams()
            await bus.drain()


async def part_halt(args: argparse.Namespace) -> None:
    print(f"halt: {args.orders} working orders, venue {args.cancel_seconds} s per cancel, "
          f"sweep at {args.cancel_rate:g} cancels/s, {args.runs} runs")
    runs = [await one_halt(args, i + 1) for i in range(args.runs)]
    replies = [r["reply_ms"] for r in runs]
    sent = [r["all_sent_s"] for r in runs]
    print(f"  halt reply: median {statistics.median(replies):.1f} ms, max {max(replies):.1f} ms "
          f"(target < {TARGET_REPLY_MS:.0f} ms: "
          f"{'met' if max(replies) < TARGET_REPLY_MS else 'NOT met'})")
    print(f"  all cancels sent: median {statistics.median(sent):.2f} s, max {max(sent):.2f} s "
          f"(target <= {TARGET_SENT_S:.0f} s: "
          f"{'met' if max(sent) <= TARGET_SENT_S else 'NOT met'})")


async def part_kills(args: argparse.Namespace) -> None:
    print(f"kills: {args.kills} SIGKILLs during the sweep of a halt of {args.orders} orders "
          f"(venue {args.cancel_seconds} s per cancel, {args.cancel_rate:g} cancels/s)")
    tag = uuid.uuid4().hex[:10]
    schema, namespace = f"oms_kk_{tag}", f"kk{tag}"
    rng = random.Random(20)
    bus = await Bus.connect(namespace=namespace, connect_timeout=5)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        service = Service(tmp, schema, namespace, args)
        store = None
        try:
            await service.start()
            ids = await submit_all(bus, args.orders, "k")
            sent, reply_ms, reply = await halt(bus, service.operator)
            sweep_id = str(reply.context["sweep_id"])
            store = await Store.open(DSN, schema=schema, min_size=1, max_size=2)
            left, starts = [], []
            for _ in range(args.kills):
                await asyncio.sleep(rng.uniform(0.1, 0.5))
                sweep = await store.sweep(sweep_id)
                if sweep is None or sweep.finished:
                    raise SystemExit(f"the sweep finished after {len(left)} kills; use more "
                                     "orders")
                left.append(sweep.outstanding)
                await service.kill()
                starts.append(await service.start())
            finished = await wait_finished(store, sweep_id)
            await service.stop()
            result = await check_outcome(store, tmp, ids, sweep_id)
            print(f"  halt reply {reply_ms:.1f} ms; outstanding at each kill: "
                  f"{', '.join(map(str, left))}")
            print(f"  {len(left)} kills while the sweep was unfinished; restart to serving "
                  f"median {statistics.median(starts):.2f} s; sweep finished "
                  f"+{finished - sent:.1f} s after the halt")
            print("  afterwards: " + ", ".join(f"{k} {v}" for k, v in result.items()))
        finally:
            await service.stop()
            if store is not None:
                await store.close()
            await drop_schema(DSN, schema)
            await bus.delete_streams()
            await bus.drain()


def machine() -> str:
    model = cpu_model()
    return f"{os.cpu_count()} CPUs ({model or platform.machine()}), Python {sys.version.split()[0]}"


async def main_async(args: argparse.Namespace) -> None:
    print(f"oms_killswitch: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {machine()}, "
          f"loadavg {Path('/proc/loadavg').read_text().strip()}")
    if args.part in ("halt", "both"):
        await part_halt(args)
    if args.part in ("kills", "both"):
        await part_kills(args)
    print(f"  loadavg after: {Path('/proc/loadavg').read_text().strip()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["halt", "kills", "both"], default="both")
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3, help="halts measured (part halt)")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--cancel-seconds", type=float, default=0.2)
    parser.add_argument("--cancel-rate", type=float, default=20.0)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
