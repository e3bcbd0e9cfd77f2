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
import sys
import time
import uuid
from decimal import Decimal as D  # noqa: N817
from pathlib import Path
from typing import Any

import asyncpg
from _machine import cpu_model
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
    cpu = cpu_model()
    return (f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs (`nproc`), "
            f"{cpu}, Python {platform.python_version()}")


def markdown(rows: list[dict[str, Any]], where: str, pg: dict[str, str], load: str,
             after: str) -> str:
    lines = [SECTION, "",
             f"`python bench/treasury_ledger.py {' '.join(sys.argv[1:])}`, {where}; PostgreSQL "
             f"{pg['server_version']} on the same machine, `fsync={pg['fsync']}`, "
             f"`synchronous_commit={pg['synchronous_commit']}`; load average before the run "
             f"`{load}`, after `{after}`. In process: `Ledger.post_fills` called directly "
             "(no bus); 3 funds, 50 symbols, FIFO lots, every fill split over two sleeves, "
             "about a third sells relieving lots; one transaction (one durable commit) per "
             "batch; each batch size on a fresh schema.", "",
             f"Each configuration ran {rows[0]['runs']} times; the median run is shown, with the "
             "range of fills/s over the runs.", "",
             "| batch size | callers | fills posted | wall | fills/s (range) | client CPU | "
             "client CPU share | journal lines | every fund balances |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        callers = "1 (mixed stream)" if r["callers"] == 1 else f"{r['callers']} (one per fund)"
        lines.append(f"| {r['batch']:,} | {callers} | {r['posted']:,} | {r['wall']:.2f} s | "
                     f"{r['rate']:,.0f} ({r['low']:,.0f}-{r['high']:,.0f}) | {r['cpu']:.2f} s | "
                     f"{r['cpu'] / r['wall']:.0%} | "
                     f"{r['lines']:,} | {'yes' if r['balanced'] else 'NO'} |")
    best = max(r["rate"] for r in rows if r["batch"] > 1)
    verdict = "met" if best >= 5000 else "NOT met"
    lines += ["", f"Target >= 5,000 fills/s durably: {verdict} by the best median "
              f"({best:,.0f} fills/s); see the ranges for how steady that is.", "",
              *NOTES]
    return "\n".join(lines) + "\n"


NOTES = [
    "Where the time goes (cProfile and per-statement timing of 20,000 fills in batches of "
    "2,000 on this machine, 2026-12-06; cProfile inflates the Python share):",
    "",
    "- Client, about half the wall time with one caller: asyncpg encoding the array "
    "parameters (it checks every array element against three `collections.abc` classes and "
    "encodes each Decimal in Python: 1.7 s of 4.2 s profiled), then the lot engine "
    "(`lots.apply_fill`, 1.0 s), then building rows (0.5 s).",
    "- Server: inserting journal lines (about 3.3 per fill; 0.8 s), fills (0.5 s), entries "
    "and disposals (0.4 s each), the COMMIT with its deferred balance checks and the WAL "
    "flush (0.35 s for 10 commits).",
    "- Measured changes on the way: writing only the lots a batch changed (not every lot of "
    "each touched symbol, which grows with the book) and running the deferred balance check "
    "once per entry instead of once per line (+25%); forcing custom plans for the batch made "
    "PostgreSQL plan that check at every call (half the batch's time) and was dropped.",
    "- Batch size 1 is round-trip and commit bound: about 13 statements and one WAL flush "
    "per fill.",
    "- With one caller per fund the client builds one fund's batch while PostgreSQL writes "
    "another's; the machine has 2 cores shared by both, so the gain is bounded.",
    "- The machine is shared (a VM on a busy host): runs minutes apart differ by up to a "
    "third; compare figures within one run.",
]


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
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per configuration; the median run is reported")
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
        tries = [await run(fills[:args.single] if batch == 1 else fills, batch,
                           per_fund=per_fund) for _ in range(args.repeat)]
        row = sorted(tries, key=lambda r: r["rate"])[len(tries) // 2]  # the median run
        row["runs"] = len(tries)
        row["low"], row["high"] = min(r["rate"] for r in tries), max(r["rate"] for r in tries)
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
