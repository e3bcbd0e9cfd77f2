"""``mts mts1b-treasury``, as a user types it, on a real PostgreSQL: a fund created as
backtrader's ``setcash`` (the migration guide's ``FundConfig.target_nav_usd`` row), its books,
a strike from a marks file, corporate actions, gains; wrong input named by field and value."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mts1b_treasury.cli import app
from mts1b_treasury.errors import TreasuryInputError
from typer.testing import CliRunner

from .conftest import DSN

pytestmark = pytest.mark.integration


@pytest.fixture
def schema() -> Iterator[str]:
    asyncpg = pytest.importorskip("asyncpg")
    name = f"tr_cli_{uuid.uuid4().hex[:10]}"
    yield name

    async def drop() -> None:
        conn = await asyncpg.connect(DSN)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        finally:
            await conn.close()
        # and the streams and buckets the commands made in the test's namespace: left there,
        # every run added a namespace's three to the machine's NATS
        from mts1b_platform.bus import Bus, BusError

        try:
            bus = await Bus.connect(namespace=namespace_of(name), connect_timeout=3)
        except BusError:
            return  # no NATS here: the commands published nothing either
        try:
            await bus.delete_streams()
        finally:
            await bus.drain()

    import asyncio
    asyncio.run(drop())


def namespace_of(schema: str) -> str:
    return f"n{schema[-10:]}"


def run(schema: str, *args: str) -> Any:
    # no namespace given and none in the environment: publishing goes to a namespace of its own
    env = {"MTS_DATABASE_URL": DSN, "MTS_TREASURY_SCHEMA": schema,
           "MTS_NATS_NAMESPACE": namespace_of(schema)}
    return CliRunner().invoke(app, list(args), env=env)


def test_a_fund_as_setcash_its_books_and_a_strike(schema: str, tmp_path: Path) -> None:
    made = run(schema, "fund", "create", "--id", "core", "--target-nav-usd", "100000",
               "--strategy", "mom")
    assert made.exit_code == 0, made.output
    assert "core (core): open, version 1, target NAV 100000 USD" in made.stdout
    books = run(schema, "ledger", "balances", "--fund", "core", "--json")
    assert json.loads(books.stdout)["balances"]["cash"] == "100000"
    assert run(schema, "ledger", "contribute", "--fund", "core", "--amount", "500",
               "--key", "c1").stdout.strip().endswith("posted (key c1)")
    assert "duplicate" in run(schema, "ledger", "contribute", "--fund", "core", "--amount",
                              "500", "--key", "c1").stdout
    assert "no fund holds it" in run(schema, "ledger", "split", "--symbol", "AAPL", "--ratio",
                                     "2", "--effective", "2026-12-07", "--key", "s1").stdout
    marks = tmp_path / "closes.csv"
    marks.write_text("symbol,close\nAAPL,190.5\n")
    struck = run(schema, "nav", "strike", "--fund", "core", "--date", "2026-12-07", "--marks",
                 str(marks), "--json")
    assert struck.exit_code == 0, struck.output
    nav = json.loads(struck.stdout)
    assert (nav["nav"], nav["flows"], nav["pnl"]) == ("100500", "100500", "0")
    again = run(schema, "nav", "strike", "--fund", "core", "--date", "2026-12-07", "--marks",
                str(marks), "--json")
    assert again.stdout == struck.stdout
    gains = run(schema, "gains", "--year", "2026")
    assert gains.stdout.startswith("description,date_acquired,date_sold,proceeds")
    assert "holds no open lot of AAPL" in run(schema, "lots", "show", "--fund", "core",
                                              "--symbol", "AAPL").stdout


def test_a_fund_opened_in_the_past_strikes_from_then(schema: str, tmp_path: Path) -> None:
    """A fund traded over a replay of history opens before the replay: its opening cash is
    there at the first replayed close, which a fund opened now could not strike."""
    made = run(schema, "fund", "create", "--id", "hist", "--target-nav-usd", "1000",
               "--opened-at", "2016-01-04")
    assert made.exit_code == 0, made.output
    marks = tmp_path / "closes.csv"
    marks.write_text("symbol,close\nAAPL,100\n")
    struck = run(schema, "nav", "strike", "--fund", "hist", "--date", "2016-01-04", "--marks",
                 str(marks), "--json")
    assert struck.exit_code == 0, struck.output
    assert json.loads(struck.stdout)["nav"] == "1000"
    late = run(schema, "fund", "create", "--id", "now", "--target-nav-usd", "1000")
    assert late.exit_code == 0
    refused = run(schema, "nav", "strike", "--fund", "now", "--date", "2016-01-04", "--marks",
                  str(marks))
    assert isinstance(refused.exception, TreasuryInputError)
    assert "was created after that session's close" in refused.exception.message


@pytest.mark.parametrize(("args", "field"), [
    (["fund", "create", "--id", "x"], "--id/--target-nav-usd"),
    (["allocate", "--fund", "core", "--amount", "abc"], "--amount"),
    (["allocate", "--fund", "nope", "--amount", "5"], "fund_id"),
    (["ledger", "transfer", "--from", "core", "--to", "nope", "--amount", "5", "--key", "t"],
     "fund_id"),
    (["ledger", "split", "--symbol", "AAPL", "--ratio", "0", "--effective", "2026-12-07",
      "--key", "s"], "--ratio"),
    (["nav", "strike", "--fund", "core", "--date", "12/07/2026", "--marks", "m.csv"], "--date"),
    (["fund", "create", "--id", "y", "--target-nav-usd", "5", "--opening-cash", "-1"],
     "--opening-cash"),
    (["fund", "create", "--id", "y", "--target-nav-usd", "5", "--opened-at", "2016-13-01"],
     "--opened-at"),
    (["fund", "create", "--id", "y", "--target-nav-usd", "5", "--opened-at",
      "2016-01-01T09:00:00"], "--opened-at"),
])
def test_wrong_input_is_named(schema: str, args: list[str], field: str) -> None:
    assert run(schema, "fund", "create", "--id", "core", "--target-nav-usd", "1000").exit_code \
        == 0
    result = run(schema, *args)
    assert isinstance(result.exception, TreasuryInputError), result.output
    assert result.exception.context["field"] == field


def test_a_bad_marks_row_is_named_with_its_line(schema: str, tmp_path: Path) -> None:
    run(schema, "fund", "create", "--id", "core", "--target-nav-usd", "1000")
    marks = tmp_path / "closes.csv"
    marks.write_text("symbol,close\nAAPL,190.5\nMSFT,-3\n")
    result = run(schema, "nav", "strike", "--fund", "core", "--date", "2026-12-07",
                 "--marks", str(marks))
    assert isinstance(result.exception, TreasuryInputError)
    assert result.exception.context["field"] == "--marks:3 close"


def test_the_command_line_prints_one_line_without_internals(schema: str) -> None:
    env = {**os.environ, "MTS_DATABASE_URL": DSN, "MTS_TREASURY_SCHEMA": schema}
    proc = subprocess.run([sys.executable, "-m", "mts1b_treasury.cli", "allocate", "--fund",
                           "core", "--amount", "1e999999"], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("mts: [FOUNDATION.VALIDATION] invalid Allocation: amount_usd=")
    assert "Traceback" not in proc.stderr


def test_corporate_actions_from_the_datalake_book_once(schema: str, tmp_path: Path) -> None:
    import asyncio
    import datetime as dt
    from decimal import Decimal

    from mts1b_foundation import Fill, Side
    from mts1b_treasury.db import TreasuryDb
    from mts1b_treasury.ledger import FillPosting, Ledger

    assert run(schema, "fund", "create", "--id", "core", "--target-nav-usd", "100000"
               ).exit_code == 0

    async def buy() -> None:
        db = await TreasuryDb.open(DSN, schema=schema)
        try:
            await Ledger(db).post_fills([FillPosting(Fill(
                trade_id="t1", order_id="o1", fund_id="core", symbol="AAPL", side=Side.BUY,
                quantity=Decimal(10), price=Decimal(200),
                ts=dt.datetime(2026, 3, 2, 15, tzinfo=dt.UTC)))])
        finally:
            await db.close()

    asyncio.run(buy())
    events = tmp_path / "events.csv"
    events.write_text("symbol,date,kind,value\nAAPL,2026-03-05,dividend,0.25\n"
                      "AAPL,2026-03-10,split,2.0\nMSFT,2026-03-06,dividend,0.8\n")
    first = run(schema, "ledger", "corporate-actions", "--events", str(events))
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith("3 corporate actions: 3 posted")
    again = run(schema, "ledger", "corporate-actions", "--events", str(events))
    assert again.stdout.startswith("3 corporate actions: 3 duplicate")
    books = json.loads(run(schema, "ledger", "balances", "--fund", "core", "--json").stdout)
    assert Decimal(books["balances"]["cash"]) == Decimal("98002.5")  # 100000 - 2000 + 10 x 0.25
    assert Decimal(books["balances"]["dividends"]) == Decimal("-2.5")
    lots = run(schema, "lots", "show", "--fund", "core", "--symbol", "AAPL").stdout
    assert lots.startswith("t1: 20.0 acquired 2026-03-02, cost 2000")  # 10 x 2.0 shares
    events.write_text("symbol,date,kind,value\nAAPL,2026-03-05,dividend,0.3\n")
    changed = run(schema, "ledger", "corporate-actions", "--events", str(events))
    assert changed.exit_code == 3 and "conflict: dividend AAPL 2026-03-05" in changed.output
    events.write_text("symbol,date,kind,value\nAAPL,2026-03-05,merger,1\n")
    bad = run(schema, "ledger", "corporate-actions", "--events", str(events))
    assert isinstance(bad.exception, TreasuryInputError)
    assert bad.exception.context["field"] == "--events:2 kind"
