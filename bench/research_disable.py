"""A strategy's disable reaching trading: from the signed command to the OMS's acknowledgement.

    uv run --no-sync python bench/research_disable.py [--runs 10] [--orders 50]

Each run starts an OMS service (``mts1b_oms.service.run_service``, in this process, on a
throwaway PostgreSQL schema and NATS namespace; its broker the OMS test double), submits
``--orders`` working limit orders of the strategy over NATS, then times
``mts1b_research.halt.halt_strategy`` - sign, send on ``mts.v1.oms.commands.halt``, the OMS
verifies the key, stores the halt and starts the cancel sweep, replies - at the client.
Target: <= 1 s. Prints each run and the median / max; ``--write`` appends them to
bench/RESULTS.md with the date, machine and load average.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import subprocess
import uuid
from decimal import Decimal
from pathlib import Path

from _machine import cpu_model
from mts1b_foundation import CommandReply, Equity, Order, Side, SubmitOrder
from mts1b_oms.service import ServeOptions, run_service
from mts1b_oms.testing import drop_schema, make_fund, make_registry, make_signing_keys
from mts1b_platform.bus import Bus
from mts1b_research.halt import halt_strategy

DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
RESULTS = Path(__file__).with_name("RESULTS.md")


async def one_run(orders: int) -> tuple[float, int]:
    ns = f"b{uuid.uuid4().hex[:10]}"
    schema = f"oms_bd_{ns}"
    bus = await Bus.connect(namespace=ns)
    registry, keys = make_signing_keys()
    fund = make_fund(nav=Decimal(10_000_000)).model_copy(update={"strategies": ["mom"]})
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.get_running_loop().create_task(run_service(ServeOptions(
        dsn=DSN, funds=[fund], instruments=make_registry(),
        broker="mts1b_oms.testing:RecordingBroker", schema=schema, namespace=ns,
        prices={"AAPL": Decimal(100)}, keys=registry), ready=ready, stop=stop))
    await asyncio.wait_for(ready.wait(), 30)
    try:
        for i in range(orders):
            order = Order(idempotency_key=f"k{i}", fund_id="f1", strategy_id="mom",
                          instrument=Equity(symbol="AAPL"), side=Side.BUY, quantity=Decimal(1),
                          order_type="limit", limit_price=Decimal("99.5"))
            reply = await bus.request("mts.v1.oms.commands.submit", SubmitOrder(order=order),
                                      timeout=10, reply_model=CommandReply)
            if not isinstance(reply, CommandReply) or not reply.ok:
                raise SystemExit(f"order {i} was not accepted: {reply}")
        ack = await halt_strategy(bus, keys["ops-test"], "mom", "bench")
        return ack.seconds, ack.cancels_outstanding
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await drop_schema(DSN, schema)
        await bus.delete_streams()
        await bus.drain()


def _machine() -> str:
    cpu = cpu_model()
    cores = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    return f"{cores} CPUs ({cpu})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--orders", type=int, default=50)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    load = Path("/proc/loadavg").read_text().strip()
    seconds = []
    for run in range(args.runs):
        took, cancels = asyncio.run(one_run(args.orders))
        seconds.append(took)
        print(f"run {run + 1}: acknowledged in {took * 1000:.1f} ms, {cancels} cancels swept")
    median, worst = statistics.median(seconds), max(seconds)
    line = (f"{args.runs} runs, {args.orders} working orders each: median "
            f"{median * 1000:.1f} ms, max {worst * 1000:.1f} ms (target <= 1 s)")
    print(line)
    if args.write:
        when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        with RESULTS.open("a", encoding="utf-8") as out:
            out.write(f"\n## mts1b-research: a disable acknowledged by the OMS (issue #19)\n\n"
                      f"`python bench/research_disable.py --runs {args.runs} --orders "
                      f"{args.orders} --write`, {when}, {_machine()}, load average before "
                      f"`{load}`; the OMS service in the same process, PostgreSQL and NATS on "
                      f"the same machine, timed at the client from signing to the reply.\n\n"
                      f"{line}.\n")


if __name__ == "__main__":
    main()
