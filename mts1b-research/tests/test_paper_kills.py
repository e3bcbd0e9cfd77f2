"""The paper loop survives a SIGKILL of any service (issue #20): the same replay run twice -
once untouched, once with every service SIGKILLed at a random moment while the replay runs
(the loop's supervisor restarts each) - ends with the same NAV, positions and orders.

The replay crosses a delisting: BBN's last session is 2016-01-12 and the strategy holds it
(short) then. In both runs its position ends closed at its last close, as the in-process loop
(``paperloop.run_paper``: a market-on-close order at the last close, at the loop's commission
of 0) closes it: the OMS books the delisting once, the treasury buys the shares back at that
close with no commission, the venue cancels the order waiting for a BBN bar and holds the
treasury's cash.

Every process is real (`mts mts1b-research paper up`: the venue, the OMS, the treasury, the
signal service, the composer, the lockstep replay) over real NATS and PostgreSQL, on a small
synthetic market. Skipped, with the reason, without the servers or the libraries.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from mts1b_research.paper import LOCKSTEP

from .conftest import momentum_in_paper, run_mts

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _status(env: dict[str, str], cwd: Path) -> dict[str, Any]:
    return dict(json.loads(run_mts(env, cwd, "mts1b-research", "paper", "status", "--json")))


DELISTED, EX_DATE = "BBN", dt.date(2016, 1, 13)


async def _delisting(env: dict[str, str]) -> dict[str, Any]:
    """What the loop's OMS, treasury and venue hold of the delisting of :data:`DELISTED`: the
    OMS's booked actions in it, the treasury's fills of it (signed quantity, price,
    commission, time), the venue's last account snapshot (cash, whether it holds it) and the
    orders in it still working at the OMS."""
    from mts1b_foundation import AccountSnapshot, parse_message
    from mts1b_platform.bus import Bus

    ns = env["MTS_PAPER_NAMESPACE"]
    conn = await asyncpg.connect(env["MTS_DATABASE_URL"])
    try:
        oms = [tuple(r) for r in await conn.fetch(
            f'SELECT ratio, close_price, ex_date FROM "paper_{ns}_oms".splits '
            "WHERE symbol = $1", DELISTED)]
        working = await conn.fetchval(
            f'SELECT count(*) FROM "paper_{ns}_oms".orders WHERE symbol = $1 AND status NOT IN '
            "('filled', 'canceled', 'rejected', 'expired')", DELISTED)
        fills = [(r["quantity"] if r["side"] == "buy" else -r["quantity"], r["price"],
                  r["commission"], r["ts"]) for r in await conn.fetch(
            f'SELECT side, quantity, price, commission, ts FROM "paper_{ns}_treasury".'
            "ledger_fills WHERE symbol = $1 AND status = 'posted' ORDER BY ts, sequence",
            DELISTED)]
    finally:
        await conn.close()
    bus = await Bus.connect(namespace=ns, connect_timeout=5)
    try:
        msg = await bus.js.get_last_msg(bus.stream_for("brokers"),
                                        bus.wire_subject("mts.v1.brokers.paper.account"))
        venue = parse_message(AccountSnapshot, msg.data)
    finally:
        await bus.drain()
    return {"oms": oms, "working": working, "fills": fills, "venue_cash": venue.cash,
            "venue_holds": DELISTED in venue.positions}


async def _run(env: dict[str, str], cwd: Path, kills: list[str], rng: random.Random
               ) -> dict[str, Any]:
    """``paper up`` over the replay, the ``kills`` SIGKILLed one by one while it runs, until
    the replay is over; the final status, with ``delisting`` (:func:`_delisting`)."""
    run_mts(env, cwd, "mts1b-research", "paper", "up", "--strategy", "momentum_v3", "--from",
         "2016-01-04", "--to", "2016-01-22", "--speed", "0", "--store", "lake")
    state_file = Path(env["MTS_DEV_DIR"]) / "paper" / env["MTS_PAPER_NAMESPACE"] / "paper.json"
    killed = 0
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        state = json.loads(state_file.read_text())
        replay = int(state["processes"]["replay"]["pid"])
        try:
            os.kill(replay, 0)
        except ProcessLookupError:
            break
        if killed < len(kills):
            time.sleep(rng.uniform(0.5, 2.5))
            pid = int(json.loads(state_file.read_text())["processes"][kills[killed]]["pid"])
            os.kill(pid, signal.SIGKILL)
            killed += 1
        else:
            time.sleep(0.5)
    status = _status(env, cwd)
    status["delisting"] = await _delisting(env)
    run_mts(env, cwd, "mts1b-research", "paper", "down", "--purge")
    return status


def _closed_at_the_last_close(run: dict[str, Any], last_close: Decimal) -> None:
    """The delisted position ends closed at the last close, no commission, in every book."""
    found = run["delisting"]
    assert found["oms"] == [(Decimal(1), last_close, EX_DATE)]  # booked once, at that price
    start = dt.datetime.combine(EX_DATE, dt.time(0), dt.UTC)
    held = sum((q for q, _p, _c, ts in found["fills"] if ts < start), Decimal(0))
    paid = [(q, p, c) for q, p, c, ts in found["fills"] if ts == start]
    assert held != 0  # the strategy held it over its last close: the test tests something
    assert sum((q for q, _p, _c in paid), Decimal(0)) == -held
    assert {(p, c) for _q, p, c in paid} == {(last_close, Decimal(0))}
    assert not [f for f in found["fills"] if f[3] > start]
    # the in-process loop's cash for it: the shares at the last close, commission 0
    assert sum((-q * p - c for q, p, c in paid), Decimal(0)) == held * last_close
    assert DELISTED not in run["positions"] and not found["venue_holds"]
    assert found["working"] == 0  # the order waiting for a BBN bar was cancelled
    assert found["venue_cash"] == Decimal(run["cash"])  # the venue's books are the treasury's


async def test_every_service_killed_once_changes_nothing(tmp_path: Path,
                                                         paper_env: dict[str, str]) -> None:
    env = paper_env
    momentum_in_paper(env, tmp_path)
    rng = random.Random(20)
    clean = await _run(env, tmp_path, [], rng)
    order = list(LOCKSTEP)
    rng.shuffle(order)
    killed = await _run(env, tmp_path, order, rng)
    assert clean["sessions_done"] == clean["sessions_total"] == 14
    assert killed["sessions_done"] == 14
    assert clean["orders_seen"] > 0 and clean["positions"]
    assert killed["restarts"] == dict.fromkeys(order, 1)
    for field in ("nav", "cash", "positions", "orders_seen", "working_orders"):
        assert killed[field] == clean[field], field
    from mts1b_datalake import Store

    bars = Store(tmp_path / "lake").read_bars([DELISTED], "2015-12-01", "2016-01-12")
    last_close = Decimal(repr(float(bars["close"].iloc[-1])))
    assert bars["date"].iloc[-1].date() == EX_DATE - dt.timedelta(days=1)
    for run in (clean, killed):
        _closed_at_the_last_close(run, last_close)
    assert killed["delisting"]["fills"] == clean["delisting"]["fills"]
