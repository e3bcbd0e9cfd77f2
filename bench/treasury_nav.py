"""mts1b-treasury's NAV strike at fund size: 3,000 positions, 20 sleeves, 500 fills of the day.

    python bench/treasury_nav.py            # prints the figures
    python bench/treasury_nav.py --write    # and appends them to bench/RESULTS.md

The case (issue: a strike of a fund with 3,000 positions in at most 1 s): 3,000 symbols marked
from 5 to 500 (cents), each owned by one to three of 20 sleeves (long or short, 10 to 5,000
shares each) and a tenth of them with some shares no sleeve owns; the day's move is up to
+-5 %; 500 fills (buys and sells of 10 to 2,000 shares near the mark, split among the symbol's
owners, commissions of 0.35 to 25), two flows, borrow on 200 short names and dividends on 60.
The cash is what the fills, flows, dividends and borrow make of yesterday's, so the strike's
``unattributed`` must equal the unowned shares' market move exactly (checked).

Timed in one warm process (``time.perf_counter`` and the process's CPU time), median of
``--repeat`` runs: ``strike_nav`` end to end (input checks, NAV, attribution, the canonical
JSON and SHA-256 of the inputs and of the outputs, the FundNav's validation), the strike given
the inputs' digest (what the store does after hashing once), and the inputs' canonical hashing
alone. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from _machine import cpu_model
from mts1b_treasury.nav import NavFill, NavInputs, fills_net_cash, inputs_sha256, strike_nav

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## mts1b-treasury: the NAV strike of a fund with 3,000 positions"
SESSION = dt.date(2026, 12, 4)
AS_OF = dt.datetime(2026, 12, 4, 21, 0, tzinfo=dt.UTC)
CENT = Decimal("0.01")


def _owners(rng: random.Random, sleeves: list[str], symbols: list[str]) -> dict[
        tuple[str, str], Decimal]:
    owned: dict[tuple[str, str], Decimal] = {}
    for symbol in symbols:
        side = rng.choice((1, 1, 1, -1))
        for sleeve in rng.sample(sleeves, rng.randint(1, 3)):
            owned[(sleeve, symbol)] = Decimal(side * rng.randint(10, 5000))
    return owned


def _fills(rng: random.Random, symbols: list[str], marks: dict[str, Decimal],
           prev: dict[tuple[str, str], Decimal], count: int) -> list[NavFill]:
    owners: dict[str, list[str]] = {}
    for sleeve, symbol in prev:
        owners.setdefault(symbol, []).append(sleeve)
    fills = []
    for symbol in rng.sample(symbols, count):
        sign = rng.choice((1, -1))
        shares = {s: Decimal(sign * rng.randint(10, 2000)) for s in owners[symbol]}
        price = (marks[symbol] * Decimal(1 + rng.uniform(-0.01, 0.01))).quantize(CENT)
        commission = Decimal(rng.randint(35, 2500)) / 100
        fills.append(NavFill(symbol, sum(shares.values(), Decimal(0)), price, commission,
                             shares))
    return fills


def case(n_symbols: int = 3000, n_sleeves: int = 20, n_fills: int = 500,
         seed: int = 11) -> tuple[NavInputs, Decimal]:
    """The day's inputs, and the unowned shares' market move (what must stay unattributed)."""
    rng = random.Random(seed)
    symbols = [f"S{i:04d}" for i in range(n_symbols)]
    sleeves = [f"strat_{i:02d}" for i in range(n_sleeves)]
    prev_marks = {s: Decimal(rng.randint(500, 50_000)) / 100 for s in symbols}
    marks = {s: (p * Decimal(1 + rng.uniform(-0.05, 0.05))).quantize(CENT)
             for s, p in prev_marks.items()}
    prev = _owners(rng, sleeves, symbols)
    unowned = {s: Decimal(rng.randint(1, 300)) for s in rng.sample(symbols, n_symbols // 10)}
    fills = _fills(rng, symbols, marks, prev, n_fills)
    now = dict(prev)
    for fill in fills:
        for sleeve, qty in fill.sleeves.items():
            now[(sleeve, fill.symbol)] += qty
    positions = {s: unowned.get(s, Decimal(0)) for s in symbols}
    prev_positions = dict(positions)
    for (_, symbol), qty in now.items():
        positions[symbol] += qty
    for (_, symbol), qty in prev.items():
        prev_positions[symbol] += qty
    # borrow and dividends on fully owned names: the sleeves' parts then add up to them but
    # for the cent rounding, which the benchmark checks
    shorts = [s for s in symbols if prev_positions[s] < 0 and s not in unowned]
    longs = [s for s in symbols if prev_positions[s] > 0 and s not in unowned]
    borrow = {s: Decimal(rng.randint(100, 20_000)) / 100 for s in rng.sample(shorts, 200)}
    dividends = {s: abs(prev_positions[s]) * Decimal(rng.randint(5, 150)) / 100
                 for s in rng.sample(longs, 60)}
    flows = (Decimal("2500000.00"), Decimal("-750000.00"))
    prev_cash = Decimal("12500000.00")
    cash = (prev_cash + fills_net_cash(fills) + sum(flows, Decimal(0))
            + sum(dividends.values(), Decimal(0)) - sum(borrow.values(), Decimal(0)))
    inputs = NavInputs(
        fund_id="bench-fund", session=SESSION, as_of=AS_OF,
        previous_nav=prev_cash + sum((q * prev_marks[s] for s, q in prev_positions.items()),
                                     Decimal(0)),
        cash=cash, positions=positions, marks=marks, previous_marks=prev_marks,
        sleeve_positions=now, previous_sleeve_positions=prev, fills=tuple(fills), flows=flows,
        borrow_fees=borrow, dividends=dividends)
    move = sum((q * (marks[s] - prev_marks[s]) for s, q in unowned.items()), Decimal(0))
    return inputs, move


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """Median wall and CPU seconds of ``repeat`` calls (after one warm-up), and the result."""
    out = fn()
    walls, cpus = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - start_cpu)
    return statistics.median(walls), statistics.median(cpus), out


def run(repeat: int) -> dict[str, Any]:
    inputs, unowned_move = case()
    digest = inputs_sha256(inputs)
    full, full_cpu, nav = timed(lambda: strike_nav(inputs), repeat)
    given, given_cpu, _ = timed(lambda: strike_nav(inputs, inputs_digest=digest), repeat)
    hashing, hashing_cpu, _ = timed(lambda: inputs_sha256(inputs), repeat)
    again = strike_nav(inputs)
    # beyond the unowned shares' move, only the cent rounding of the dividend and borrow
    # parts (at most half a cent each) may be left unattributed
    parts = sum(1 for (_, s) in inputs.previous_sleeve_positions
                if s in inputs.dividends or s in inputs.borrow_fees)
    rounding = nav.unattributed - unowned_move
    if abs(rounding) > parts * Decimal("0.005"):
        raise SystemExit(f"unattributed {nav.unattributed} is not the unowned move "
                         f"{unowned_move} +- rounding of {parts} parts")
    return {
        "rounding": rounding, "parts": parts,
        "full": full, "full_cpu": full_cpu, "given": given, "given_cpu": given_cpu,
        "hashing": hashing, "hashing_cpu": hashing_cpu, "nav": nav,
        "same_bits": again.to_json() == nav.to_json(), "unowned_move": unowned_move,
        "sleeve_entries": len(inputs.sleeve_positions), "repeat": repeat,
    }


def machine() -> str:
    cpu = cpu_model()
    return (f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC (`date -u`), {os.cpu_count()} CPUs "
            f"(`nproc`), {cpu}, Python {platform.python_version()}")


def markdown(r: dict[str, Any], where: str, before: str, after: str) -> str:
    nav = r["nav"]
    rows = [
        ("`strike_nav`, end to end (with both digests)", r["full"], r["full_cpu"]),
        ("`strike_nav` given the inputs' digest (the store hashes once)", r["given"],
         r["given_cpu"]),
        ("canonical JSON + SHA-256 of the inputs alone", r["hashing"], r["hashing_cpu"]),
    ]
    command = " ".join(["python bench/treasury_nav.py", *sys.argv[1:]])
    lines = [SECTION, "", f"`{command}`, {where}; in process (one "
             f"warm Python process, no database); load average before the run `{before}`, "
             f"after `{after}`.", "",
             f"3,000 positions, 20 sleeves ({r['sleeve_entries']:,} sleeve positions), 500 "
             f"fills, median of {r['repeat']} runs after a warm-up (target: <= 1 s).", "",
             "| what | wall (median) | CPU (median) |", "|---|---:|---:|"]
    lines += [f"| {name} | {wall * 1e3:.1f} ms | {cpu * 1e3:.1f} ms |" for name, wall, cpu
              in rows]
    lines += ["", f"The strike: NAV {nav.nav:,}, PnL {nav.pnl:,}, fees {nav.fees:,}, flows "
              f"{nav.flows:,}, unattributed {nav.unattributed:,}: the unowned shares' market "
              f"move {r['unowned_move']:,} and {r['rounding']} of cent rounding over the "
              f"{r['parts']} dividend and borrow parts (checked: at most half a cent each). "
              f"Struck twice, the same bytes: {r['same_bits']}.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    before = Path("/proc/loadavg").read_text().strip()
    where = machine()
    result = run(args.repeat)
    text = markdown(result, where, before, Path("/proc/loadavg").read_text().strip())
    print(text)
    if args.write:
        path = ROOT / "bench" / "RESULTS.md"
        current = path.read_text(encoding="utf-8")
        path.write_text(current.rstrip("\n") + "\n\n" + text, encoding="utf-8")


if __name__ == "__main__":
    main()
