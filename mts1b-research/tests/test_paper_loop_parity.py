"""Backtest-paper parity through the whole multi-process loop (issue #20): ``paper up
--as-backtest`` - the venue, the OMS, the treasury, the signal service and the composer as
processes over real NATS and PostgreSQL, on a lockstep replay with each session's open handed
to the OMS and the composer first - makes the trades ``run_single(fill="next_open")`` makes
with the weights the signal service published, and strikes its NAVs.

The rules both follow (the ones :mod:`test_paper_parity` checks in process): each rebalance
sized at the next open with the NAV there net of its own commissions (``cost_bps`` as the
venue's unrounded commission), fractional shares (a lot of ``1e-8``: a quantity may differ by
the lot and the residue the previous order of the symbol left), splits and dividends applied
at the ex-date's open. A delisted name is paid out at its last close with no commission, a
corporate action (``run_single(delisting="payout")``; its default sells it there paying the
commission): ``run_single`` books it at that close, the loop at the next session's open at
the same price, so the loop's pay-out is compared on the last session the name traded.

Skipped, with the reason, without the servers or the libraries.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pytest

from .conftest import momentum_in_paper, run_mts

pytestmark = [pytest.mark.integration, pytest.mark.slow]

backtester = pytest.importorskip("mts1b_GPUbacktester", reason="the parity check compares with "
                                 "mts1b-GPUbacktester's run_single")
SEED, START, END = 33, dt.date(2016, 2, 22), dt.date(2016, 3, 24)
"""The demo market of this seed has a 2-for-1 split (NUN, 2016-02-26), cash dividends and a
delisting (HIPT, last session 2016-03-17) within these five weeks."""
CASH, COST_BPS = Decimal(1_000_000), Decimal(10)
LOT = Decimal("1e-8")


def _harness() -> Any:
    """The in-process parity check's comparison (``test_paper_parity.py``), loaded by path:
    one definition of how trades and NAVs are matched for both checks."""
    import importlib.util

    path = Path(__file__).with_name("test_paper_parity.py")
    spec = importlib.util.spec_from_file_location("paper_parity_harness", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Trade:
    date: dt.date
    symbol: str
    quantity: Decimal
    price: Decimal
    reason: str


@dataclass(frozen=True)
class LoopRun:
    trades: list[Trade]
    nav: list[Decimal]
    targets: dict[dt.date, dict[str, Decimal]]


async def _collect(env: dict[str, str], sessions: Sequence[dt.date]) -> LoopRun:
    """The treasury's fills and NAVs and the signals research published."""
    from mts1b_foundation import FundNav, Signal, parse_message
    from mts1b_platform.bus import Bus
    from mts1b_platform.follow import history

    ns = env["MTS_PAPER_NAMESPACE"]
    conn = await asyncpg.connect(env["MTS_DATABASE_URL"])
    try:
        rows = await conn.fetch(
            f'SELECT symbol, side, quantity, price, commission, ts FROM "paper_{ns}_treasury".'
            "ledger_fills WHERE status = 'posted' ORDER BY ts, sequence")
    finally:
        await conn.close()
    previous = {d: sessions[i - 1] for i, d in enumerate(sessions) if i > 0}
    trades = []
    for r in rows:
        day = r["ts"].date()
        delisted = r["commission"] == 0 and r["ts"].time() == dt.time(0)
        qty = r["quantity"] if r["side"] == "buy" else -r["quantity"]
        trades.append(Trade(previous[day] if delisted else day, r["symbol"], qty, r["price"],
                            "delisted" if delisted else "rebalance"))
    bus = await Bus.connect(namespace=ns, connect_timeout=5)
    try:
        navs = {}
        for _s, data in await history(bus, "treasury", "mts.v1.treasury.nav.struck"):
            nav = parse_message(FundNav, data)
            navs[nav.session] = nav.nav
        targets: dict[dt.date, dict[str, Decimal]] = {}
        for _s, data in await history(bus, "research", "mts.v1.research.signals.published"):
            signal = parse_message(Signal, data)
            targets[signal.as_of.date()] = dict(signal.weights)
    finally:
        await bus.drain()
    return LoopRun(trades, [navs[d.isoformat()] for d in sessions], targets)


def _run_loop(env: dict[str, str], cwd: Path) -> None:
    run_mts(env, cwd, "mts1b-research", "paper", "up", "--strategy", "momentum_v3", "--from",
         START.isoformat(), "--to", END.isoformat(), "--speed", "0", "--store", "lake",
         "--as-backtest", "--commission-bps", str(COST_BPS), "--cash", str(CASH))
    state_file = Path(env["MTS_DEV_DIR"]) / "paper" / env["MTS_PAPER_NAMESPACE"] / "paper.json"
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        status = json.loads(run_mts(env, cwd, "mts1b-research", "paper", "status", "--json"))
        if status["sessions_done"] == status["sessions_total"] and status["sessions_total"]:
            return
        replay = json.loads(state_file.read_text())["processes"]["replay"]
        if not status["processes"].get("replay", True) and \
                status["sessions_done"] != status["sessions_total"]:
            log = Path(replay["log"]).read_text()[-3000:]
            raise AssertionError(f"the replay stopped early: {status}\n{log}")
        time.sleep(1)
    raise AssertionError("the loop did not finish in 400 s")


async def test_the_loop_trades_as_run_single(tmp_path: Path, paper_env: dict[str, str]) -> None:
    from mts1b_datalake import Store

    harness = _harness()
    assert harness.LOT == LOT
    _compare, raw_market, split_adjusted = (harness._compare, harness.raw_market,
                                            harness.split_adjusted)
    env = paper_env
    momentum_in_paper(env, tmp_path, seed=SEED)
    t0 = time.perf_counter()
    _run_loop(env, tmp_path)
    loop_seconds = time.perf_counter() - t0
    store = Store(tmp_path / "lake")
    state_file = Path(env["MTS_DEV_DIR"]) / "paper" / env["MTS_PAPER_NAMESPACE"] / "paper.json"
    symbols = json.loads(state_file.read_text())["plan"]["symbols"]
    raw = raw_market(store, symbols, START, END)
    sessions = [d.item() for d in raw.dates.astype("datetime64[D]")]
    run = await _collect(env, sessions)
    panel, factor = split_adjusted(raw)
    col = {s: a for a, s in enumerate(raw.symbols)}
    weights = np.zeros(panel.shape)
    days = panel.dates.astype("datetime64[D]")
    for day, targets in run.targets.items():
        t = int(np.searchsorted(days, np.datetime64(day)))
        for sym, w in targets.items():
            weights[t, col[sym]] = float(w)
    result = backtester.run_single(
        universe=panel, weights=weights, rebal=tuple(np.datetime64(d) for d in run.targets),
        fill="next_open", cost_bps=float(COST_BPS), initial_nav=float(CASH), benchmark=False,
        trade_on="schedule", delisting="payout")
    found = _compare(run, result, raw, factor, loop_seconds, 0.0)
    assert found.unmatched == [], found.unmatched
    assert found.paper_trades == found.backtest_trades > 100
    # the events were traded through: a position held over the split and over an ex-date,
    # and one paid out at its delisting
    assert found.held_over_split >= 1 and found.held_over_dividend >= 1, found
    assert found.reasons.get("delisted", 0) >= 1, found
    assert found.max_qty_excess == 0.0, found
    assert found.final_nav_rel <= 1e-6, found
    assert found.max_nav_rel <= 1e-6, found
