"""mts1b-portfolio's compose at fund size, against cvxpy + Clarabel on the same QP.

    python bench/portfolio_compose.py            # prints the figures
    python bench/portfolio_compose.py --write    # and puts them in bench/RESULTS.md
    python bench/portfolio_compose.py --fuzz 1000   # fewer random problems for the solver line

The case (issue #17): 20 sleeves x 3,000 symbols, every sleeve naming every symbol (the dense
worst case; a second run has each sleeve name 300), capital shares summing to 0.95, Decimal
prices from 5 to 500, lots of 1 (a tenth of the names: 100), the fund's current holdings a
``SleeveAllocation`` of yesterday's composition, prices moved by the day's returns, and each
sleeve's signal moved by 30 % of fresh noise since (weights scaled to a gross of 1.4). Constraints:
gross <= 80 % of the sleeves' netted gross, net in [-0.02, 0.02], |w_i| <= 0.004 (yesterday's
composition met them) and a turnover cap of 0.08: all of them bind.

Timed, best of ``--repeat`` in one warm process (``time.perf_counter``, and the process's
CPU time, which other processes on a shared machine disturb less): ``compose`` end to
end (input checks, netting, the fund step, rounding, ownership, the wire models with their
validation, the report), and the fund step alone. Then cvxpy (``Minimize(0.5 sum_squares)``
with the same constraints, Clarabel, default tolerances) on the very problem compose solved
(captured from inside it), in the same process: the ratio is cvxpy's time over compose's. The
agreement is the largest weight difference. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
from _machine import cpu_model
from mts1b_foundation import Equity, SleeveAllocation
from mts1b_portfolio import Constraints, Sleeve, compose
from mts1b_portfolio import multi_sleeve as ms
from mts1b_portfolio.fundstep import fund_step
from mts1b_portfolio.projection import Problem

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## mts1b-portfolio: composing 20 sleeves x 3,000 symbols (issue #17)"
AS_OF = dt.datetime(2026, 12, 4, 21, 0, tzinfo=dt.UTC)
CAPITAL = Decimal(500_000_000)


def case(n_symbols: int, n_sleeves: int, names_per_sleeve: int, seed: int = 17) -> dict[
        str, Any]:
    """Sleeves, prices, instruments and yesterday's allocation, drifted."""
    rng = np.random.default_rng(seed)
    symbols = [f"S{i:04d}" for i in range(n_symbols)]
    prices = {s: Decimal(int(p)) / 100 for s, p in zip(symbols, rng.integers(500, 50_000,
                                                                             n_symbols),
                                                       strict=True)}
    instruments = {s: Equity(symbol=s, lot_size=Decimal(100), min_quantity=Decimal(100))
                   for s in symbols[::10]}
    shares = rng.dirichlet(np.ones(n_sleeves)) * 0.95
    picks = [rng.choice(n_symbols, names_per_sleeve, replace=False) for _ in range(n_sleeves)]
    base = [rng.normal(0.0, 1.0, names_per_sleeve) + 0.05 for _ in range(n_sleeves)]

    def sleeves(drift: float) -> list[Sleeve]:
        """Each strategy's weights: its base signal moved by ``drift`` of fresh noise."""
        out = []
        for k in range(n_sleeves):
            raw = base[k] + drift * rng.normal(0.0, 1.0, names_per_sleeve)
            weights = raw / np.abs(raw).sum() * 1.4
            out.append(Sleeve(f"strategy-{k:02d}", dict(zip(
                [symbols[i] for i in picks[k]], weights.tolist(), strict=True)),
                float(shares[k])))
        return out

    # the fund's caps bind: gross at 80 % of what the sleeves net to, net within +-2 %, names
    # at 0.4 %, and 8 % turnover a day
    netted = np.zeros(n_symbols)
    for k, sleeve in enumerate(sleeves(0.0)):
        netted[picks[k]] += shares[k] * np.array(list(sleeve.weights.values()))
    caps = Constraints(max_gross=round(0.8 * float(np.abs(netted).sum()), 3), min_net=-0.02,
                       max_net=0.02, max_weight=0.004)
    yesterday = compose(sleeves(0.0), CAPITAL, caps, {}, prices, instruments,
                        fund_id="bench", as_of=AS_OF)
    moved = {s: p * Decimal(repr(float(np.exp(r)))).quantize(Decimal("0.01"))
             for (s, p), r in zip(prices.items(), rng.normal(0, 0.02, n_symbols), strict=True)}
    held = SleeveAllocation(fund_id="bench", as_of=AS_OF, sleeves=yesterday.allocation.sleeves)
    return {"sleeves": sleeves(0.3), "prices": {s: max(p, Decimal("0.01"))
                                                for s, p in moved.items()},
            "instruments": instruments, "current": held,
            "constraints": replace(caps, max_turnover=0.08)}


def best(fn: Any, repeat: int) -> tuple[float, Any, float]:
    """Best wall time of ``repeat`` calls, the last result, and the best CPU time of this
    process (on a shared machine the CPU time is what other processes disturb least)."""
    times, cpu, out = [], [], None
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return min(times), out, min(cpu)


def cvxpy_solve(p: Problem) -> np.ndarray:
    import cvxpy as cp

    w = cp.Variable(p.target.size)
    cons = [w <= p.hi, w >= p.lo, cp.norm1(w) <= p.gross, cp.sum(w) >= p.net_lo,
            cp.sum(w) <= p.net_hi, cp.norm1(w - p.current) <= p.turnover]
    cp.Problem(cp.Minimize(0.5 * cp.sum_squares(w - p.target)), cons).solve(
        solver=cp.CLARABEL)
    return np.asarray(w.value, dtype=np.float64)


def run(n_symbols: int, n_sleeves: int, names: int, repeat: int) -> dict[str, Any]:
    data = case(n_symbols, n_sleeves, names)
    captured: dict[str, Any] = {}

    def capture(problem: Problem, movable: np.ndarray) -> Any:
        captured["problem"], captured["movable"] = problem, movable
        return fund_step(problem, movable)

    def call() -> Any:
        return compose(data["sleeves"], CAPITAL, data["constraints"], data["current"],
                       data["prices"],
                       data["instruments"], fund_id="bench", as_of=AS_OF)

    call()  # warm
    seconds, result, cpu = best(call, repeat)
    ms.fund_step = capture  # type: ignore[attr-defined]
    try:
        call()
    finally:
        ms.fund_step = fund_step
    problem, movable = captured["problem"], captured["movable"]
    step_seconds, step, _ = best(lambda: fund_step(problem, movable), repeat)
    assert movable.all()
    cvxpy_solve(problem)  # warm: cvxpy's first solve in a process pays its imports
    cvx_seconds, reference, cvx_cpu = best(lambda: cvxpy_solve(problem), max(2, repeat // 3))
    report = result.report
    return {
        "symbols": n_symbols, "sleeves": n_sleeves, "names": names,
        "compose": seconds, "compose_cpu": cpu, "step": step_seconds, "cvxpy": cvx_seconds,
        "cvxpy_cpu": cvx_cpu,
        "ratio": cvx_seconds / seconds, "step_ratio": cvx_seconds / step_seconds,
        "agreement": float(np.max(np.abs(step.weights - reference))),
        "iterations": step.iterations, "turnover": report.turnover,
        "caps": data["constraints"],
        "projected_turnover": float(np.abs(step.weights - problem.current).sum()),
        "gross": report.gross, "net": report.net, "netted_gross": report.netted_gross,
        "crossed": report.turnover_saved, "held_back": len(report.held_back),
        "entries": sum(len(v) for v in result.allocation.sleeves.values()),
        "multipliers": report.multipliers,
    }


def fuzz(count: int, seed: int = 7) -> dict[str, Any]:
    """The solver on ``count`` seeded random problems of 3 to 150 names, every mix of caps,
    the turnover cap from exactly the least turnover that meets the others upwards: how many
    did not converge, the most Newton steps, and the worst violation of any cap."""
    from mts1b_portfolio.projection import min_turnover, project, static_conflict

    rng = np.random.default_rng(seed)
    failed, most, worst, solved = 0, 0, 0.0, 0
    for _ in range(count):
        n = int(rng.choice([3, 12, 40, 150]))
        target = rng.normal(0.0, 0.04, n) * (rng.random(n) < 0.8)
        current = rng.normal(0.0, 0.04, n) * (rng.random(n) < 0.6)
        hi = np.full(n, float(rng.uniform(0.0, 0.1)) if rng.random() < 0.6 else np.inf)
        lo = np.zeros(n) if rng.random() < 0.25 else -hi
        size = float(np.abs(target).sum())
        gross = float(rng.uniform(0.3, 1.2)) * size if rng.random() < 0.7 else np.inf
        centre, width = float(rng.normal(0.0, 0.3 * size)), float(rng.uniform(0.0, 0.2 * size))
        net_lo, net_hi = (centre - width, centre + width) if rng.random() < 0.6 else (-np.inf,
                                                                                     np.inf)
        p = Problem(target, current, lo, hi, gross, net_lo, net_hi)
        if static_conflict(p) is not None:
            continue
        slack = float(rng.choice([0.0, 1e-6, 2**-8, float(rng.random())]))
        p = replace(p, turnover=min_turnover(p) + slack * float(np.abs(target - current).sum()))
        result = project(p)
        solved += 1
        failed += not result.converged
        most = max(most, result.iterations)
        w = result.weights
        worst = max(worst, float(np.abs(w - current).sum()) - p.turnover,
                    float(np.abs(w).sum()) - p.gross, net_lo - float(w.sum()),
                    float(w.sum()) - net_hi, float(np.max(w - hi)), float(np.max(lo - w)))
    return {"solved": solved, "failed": failed, "most": most, "worst": worst}


def machine() -> str:
    cpu = cpu_model()
    try:
        load = Path("/proc/loadavg").read_text().strip()
    except OSError:
        load = "n/a"
    return (f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs "
            f"(`nproc`), {cpu}, Python {platform.python_version()}, load average before the "
            f"run `{load}`")


def markdown(rows: list[dict[str, Any]], where: str, after: str,
             robust: dict[str, Any]) -> str:
    lines = [SECTION, "", f"`python bench/portfolio_compose.py --write`, {where}; load average "
             f"after `{after}`.", "",
             "| case | compose, end to end: wall (CPU) | fund step alone | cvxpy + Clarabel, "
             "same QP: wall (CPU) | cvxpy / compose | cvxpy / fund step | max weight "
             "difference | Newton steps |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['sleeves']} sleeves x {r['symbols']:,} symbols, {r['names']:,} names per "
            f"sleeve | {r['compose'] * 1e3:.1f} ms ({r['compose_cpu'] * 1e3:.0f} ms) | "
            f"{r['step'] * 1e3:.2f} ms | {r['cvxpy'] * 1e3:.0f} ms "
            f"({r['cvxpy_cpu'] * 1e3:.0f} ms) | {r['ratio']:.1f}x | {r['step_ratio']:.0f}x | "
            f"{r['agreement']:.1e} | {r['iterations']} |")
    lines += ["", "The composed target, per case: the caps, the turnover after rounding and "
              "the projection's own, gross / net after rounding, the netted sleeves' "
              "gross, turnover saved by internal crossing (notional), names held back, "
              "allocation entries, multipliers (gross, net, turnover; > 0: binding):", ""]
    for r in rows:
        alpha, beta, gamma = r["multipliers"]
        caps = r["caps"]
        lines.append(
            f"- {r['names']:,} names per sleeve: caps gross {caps.max_gross}, net "
            f"[{caps.min_net}, {caps.max_net}], name {caps.max_weight}, turnover "
            f"{caps.max_turnover}; turnover {r['turnover']:.6f} (projection "
            f"{r['projected_turnover']:.12f}), gross {r['gross']:.4f}, net {r['net']:.4f}, "
            f"netted gross {r['netted_gross']:.4f}, crossing saved {r['crossed']:,.0f}, "
            f"{r['held_back']} held back, {r['entries']:,} entries, multipliers "
            f"({alpha:.3g}, {beta:.3g}, {gamma:.3g})")
    lines += ["", f"The solver alone on {robust['solved']:,} seeded random problems (3 to 150 "
              "names, every mix of caps, turnover caps from exactly the least turnover up): "
              f"{robust['failed']} not converged, at most {robust['most']} Newton steps, worst "
              f"cap violation {robust['worst']:.1e} (the contract: 1e-9).", "", *NOTES]
    return "\n".join(lines) + "\n"


NOTES = [
    "What the figures say:",
    "",
    "- The fund step - the exact projection onto gross, net, per-name and turnover caps, all "
    "binding - takes about a millisecond on 3,000 names (a handful of Newton steps on three "
    "multipliers, each O(n)); cvxpy with Clarabel takes about 100 times longer on the same "
    "QP and agrees to about 1e-6 at its default tolerances (the tests hold 40 seeded problems "
    "to 1e-6 at tight ones).",
    "- End to end, compose is dominated by what is exact: Decimal shares per sleeve and symbol "
    "(55,000 allocation entries in the dense case), the wire models and the report. The "
    "allocation is built from checked parts (`mts1b_portfolio.wire_out`) - validating its "
    "55,000 entries one by one took about as long again (286 ms before, on the same case "
    "with slacker caps).",
    "- After rounding (trades towards the holdings, whole lots) only the turnover cap is kept "
    "exactly; the net ends at 0.0204 against a cap of 0.02: within one lot per name, as "
    "documented.",
    "- The machine is shared: wall times move with the load (the dense case measured 124 to "
    "222 ms over this session's runs, at load averages from 1 to 4.3 on 2 cores); the CPU "
    "time beside them moves less.",
]


def write(text: str) -> None:
    path = ROOT / "bench" / "RESULTS.md"
    current = path.read_text(encoding="utf-8")
    if SECTION in current:
        head, _, rest = current.partition(SECTION)
        nxt = rest.find("\n## ")
        current = head + text + (rest[nxt + 1:] if nxt >= 0 else "")
        path.write_text(current, encoding="utf-8")
    else:
        path.write_text(current.rstrip("\n") + "\n\n" + text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--fuzz", type=int, default=100_000,
                        help="seeded random problems for the solver's robustness line")
    args = parser.parse_args()
    where = machine()
    rows = [run(3000, 20, 3000, args.repeat), run(3000, 20, 300, args.repeat)]
    robust = fuzz(args.fuzz)
    text = markdown(rows, where, Path("/proc/loadavg").read_text().strip()
                    if Path("/proc/loadavg").exists() else "n/a", robust)
    print(text)
    if args.write:
        write(text)


if __name__ == "__main__":
    main()
