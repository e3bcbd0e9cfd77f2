"""Throughput of the treasury ledger posting fills durably to PostgreSQL, in process.

    python bench/treasury_ledger.py [--fills 20000] [--batches 1,100,500,2000]
                                    [--per-fund 500,2000] [--write]

Fills (50 symbols, 3 funds, FIFO lots, each fill split over two sleeves, about a third of them
sells that relieve lots) are built beforehand; what is timed is ``Ledger.post_fills`` on
batches of B fills, one transaction each, committed with the server's ``fsync`` and
``synchronous_commit`` as printed (no bus: the ledger is called in this process). Each batch
size runs on a fresh schema so the tables start equally empty. Batch size 1 posts the first
``--single`` fills only (it is round-trip bound). ``--per-fund`` sizes run again with one
concurrent caller per fund (each fund's fills in order). Target: >= 5,000 fills/s durably.
``--write`` appends the figures to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import random
import time
import uuid
from decimal import Decimal as D  # noqa: N817
from pathlib import Path
from typing import Any

import asyncpg
from mts1b_foundation import Fill, Side, TaxLotMethod
from mts1b_treasury.db import TreasuryDb
from mts1b_treasury.ledger import FillPosting, Ledger, PostStatus

ROOT = Path(__file__).resolve().parents[1]
DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SECTION = "## mts1b-treasury: the ledger posting fills durably (in process)"
FUNDS = ("F1", "F2", "F3")
SYMBOLS = [f"S{i:02d}" for i in range(50)]
T0 = dt.datetime(2026, 12, 1, 14, 30, tzinfo=dt.UTC)


def make_fills(n: int, seed: int = 7) -> list[FillPosting]:
    """``n`` fills; a sell never exceeds the fund's position, so lots are relieved, not flipped
    (crossing zero is covered by the tests, not timed here)."""
    rng = random.Random(seed)
    held: dict[tuple[str, str], int] = {}
    out = []
    for i in range(n):
        fund, symbol = rng.choice(FUNDS), rng.choice(SYMBOLS)
        have = held.get((fund, symbol), 0)
        sell = have > 0 and rng.random() < 0.35
        quantity = rng.randint(1, have) if sell else rng.randint(1, 500)
        held[(fund, symbol)] = have - quantity if sell else have + quantity
        signed = -quantity if sell else quantity
        first = signed * rng.randint(0, 10) // 10 if not sell else signed
        sleeves = {"mom": D(first), "rev": D(signed - first)}
        fill = Fill(trade_id=f"t{i}", order_id=f"o{i}", fund_id=fund, symbol=symbol,
                    side=Side.SELL if sell else Side.BUY, quantity=D(quantity),
                    price=D(rng.randint(1000, 50000)) / 100,
                    commission=D(rng.randint(0, 500)) / 100,
                    ts=T0 + dt.timedelta(milliseconds=i))
        out.append(FillPosting(fill, {k: v for k, v in sleeves.items() if v}))
    return out


async def settings() -> dict[str, str]:
    conn = await asyncpg.connect(DSN)
    try:
        return {name: str(await conn.fetchval(f"SHOW {name}"))
                for name in ("fsync", "synchronous_commit", "server_version")}
    finally:
        await conn.close()


async def post(ledger: Ledger, fills: list[FillPosting], batch: int) -> int:
    posted = 0
    for start in range(0, len(fills), batch):
        outcomes = await ledger.post_fills(fills[start:start + batch])
        posted += sum(o.status is PostStatus.POSTED for o in outcomes)
    return posted


async def run(fills: list[FillPosting], batch: int, *, per_fund: bool) -> dict[str, Any]:
    """Post ``fills`` in batches of ``batch`` on a fresh schema; wall and CPU seconds.

    ``per_fund``: one task per fund posts that fund's fills (in order, on its own pooled
    connection), so one fund's batch is built in Python while another's is in PostgreSQL;
    otherwise one caller posts the mixed stream.
    """
    db = await TreasuryDb.open(DSN, schema=f"bench_ledger_{uuid.uuid4().hex[:8]}")
    try:
        ledger = Ledger(db)
        for fund in FUNDS:
            await ledger.open_fund_accounts(fund, TaxLotMethod.FIFO)
        streams = ([[p for p in fills if p.fill.fund_id == fund] for fund in FUNDS]
                   if per_fund else [fills])
        wall, cpu = time.perf_counter(), time.process_time()
        posted = sum(await asyncio.gather(*(post(ledger, s, batch) for s in streams)))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        trial = await ledger.trial_balance()
        lines = await db.pool.fetchval("SELECT count(*) FROM journal_lines")
        return {"batch": batch, "callers": len(streams), "fills": len(fills), "posted": posted,
                "wall": wall, "cpu": cpu, "rate": posted / wall,
                "balanced": all(v == 0 for v in trial.values()), "lines": int(lines)}
    finally:
        await db.drop_schema()
        await db.close()


def machine() -> str:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return (f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs (`nproc`), "
            f"{cpu}, Python {platform.python_version()}")


def markdown(rows: list[dict[str, Any]], where: str, pg: dict[str, str], load: str,
             after: str) -> str:
    lines = [SECTION, "",
             f"`python bench/treasury_ledger.py --write`, {where}; PostgreSQL "
             f"{pg['server_version']} on the same machine, `fsync={pg['fsync']}`, "
             f"`synchronous_commit={pg['synchronous_commit']}`; load average before the run "
             f"`{load}`, after `{after}`. In process: `Ledger.post_fills` called directly "
             "(no bus); 3 funds, 50 symbols, FIFO lots, every fill split over two sleeves, "
             "about a third sells relieving lots; one transaction (one durable commit) per "
             "batch; each batch size on a fresh schema.", "",
             "| batch size | callers | fills posted | wall | fills/s | client CPU | client CPU "
             "share | journal lines | every fund balances |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        callers = "1 (mixed stream)" if r["callers"] == 1 else f"{r['callers']} (one per fund)"
        lines.append(f"| {r['batch']:,} | {callers} | {r['posted']:,} | {r['wall']:.2f} s | "
                     f"{r['rate']:,.0f} | {r['cpu']:.2f} s | {r['cpu'] / r['wall']:.0%} | "
                     f"{r['lines']:,} | {'yes' if r['balanced'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def write(text: str) -> None:
    path = ROOT / "bench" / "RESULTS.md"
    path.write_text(path.read_text(encoding="utf-8").rstrip("\n") + "\n\n" + text,
                    encoding="utf-8")


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--fills", type=int, default=20_000)
    parser.add_argument("--single", type=int, default=1_000)
    parser.add_argument("--batches", default="1,100,500,2000")
    parser.add_argument("--per-fund", default="500,2000",
                        help="batch sizes also run with one concurrent caller per fund")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    load = Path("/proc/loadavg").read_text().strip()
    pg = await settings()
    print(f"fsync={pg['fsync']} synchronous_commit={pg['synchronous_commit']} "
          f"(PostgreSQL {pg['server_version']}); load before: {load}")
    fills = make_fills(args.fills)
    rows = []
    runs = [(int(b), False) for b in args.batches.split(",")]
    runs += [(int(b), True) for b in args.per_fund.split(",") if b]
    for batch, per_fund in runs:
        row = await run(fills[:args.single] if batch == 1 else fills, batch, per_fund=per_fund)
        rows.append(row)
        print(f"batch {batch:>5} x{row['callers']}: {row['posted']:>6} fills in "
              f"{row['wall']:.2f} s = "
              f"{row['rate']:,.0f} fills/s (client CPU {row['cpu']:.2f} s), "
              f"balanced={row['balanced']}")
    after = Path("/proc/loadavg").read_text().strip()
    text = markdown(rows, machine(), pg, load, after)
    print(text)
    if args.write:
        write(text)


if __name__ == "__main__":
    asyncio.run(main())
