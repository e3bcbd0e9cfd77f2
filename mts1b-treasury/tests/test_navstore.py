"""The NAV store on a real PostgreSQL: idempotent strikes, explicit restatements, history."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import replace
from decimal import Decimal as D  # noqa: N817

import asyncpg
import pytest
from mts1b_treasury.db import TreasuryDb
from mts1b_treasury.errors import TreasuryInputError
from mts1b_treasury.nav import NavFill, NavInputs, inputs_sha256
from mts1b_treasury.navstore import NavRestateRefused, NavStore

pytestmark = pytest.mark.integration

STRUCK_AT = dt.datetime(2026, 12, 4, 22, 0, tzinfo=dt.UTC)


def day(session: dt.date, *, mark: str = "102.00", previous_nav: D = D(0)) -> NavInputs:
    """A fund that bought 50 XYZ at 100 (commission 1) with 10,000 contributed."""
    return NavInputs(
        fund_id="fund-1", session=session,
        as_of=dt.datetime.combine(session, dt.time(21), dt.UTC), previous_nav=previous_nav,
        cash=previous_nav + D("4999.00"), positions={"XYZ": D(50)}, marks={"XYZ": D(mark)},
        sleeve_positions={("A", "XYZ"): D(30), ("B", "XYZ"): D(20)},
        fills=(NavFill("XYZ", D(50), D("100.00"), D("1.00"), {"A": D(30), "B": D(20)}),),
        flows=(D("10000"),))


def store(db: TreasuryDb) -> NavStore:
    return NavStore(db, clock=lambda: STRUCK_AT)


DEC3 = dt.date(2026, 12, 3)
DEC4 = dt.date(2026, 12, 4)


async def test_a_strike_is_stored_once_and_struck_again_to_the_same_bits(db: TreasuryDb) -> None:
    navs = store(db)
    first = await navs.strike(day(DEC3))
    assert first.nav.nav == D(10099) and first.current and first.restates is None
    assert first.nav_json == first.nav.to_json() and first.struck_at == STRUCK_AT
    # written differently (trailing zeros), the same inputs: the stored strike, no new row
    again = await NavStore(db).strike(replace(day(DEC3), cash=D("4999"),
                                              marks={"XYZ": D("102.0")}))
    assert again.strike_id == first.strike_id and again.nav_json == first.nav_json
    assert again.struck_at == STRUCK_AT
    assert len(await navs.history("fund-1", DEC3)) == 1
    assert first.nav.inputs_sha256 == inputs_sha256(day(DEC3))


async def test_other_inputs_are_refused_unless_restated(db: TreasuryDb) -> None:
    navs = store(db)
    first = await navs.strike(day(DEC3))
    with pytest.raises(NavRestateRefused) as info:
        await navs.strike(day(DEC3, mark="103.00"))
    assert info.value.context["stored_inputs_sha256"] == first.nav.inputs_sha256
    assert info.value.context["new_inputs_sha256"] == inputs_sha256(day(DEC3, mark="103.00"))
    assert [s.strike_id for s in await navs.history("fund-1", DEC3)] == [first.strike_id]

    restated = await navs.strike(day(DEC3, mark="103.00"), restate=True)
    assert restated.nav.nav == D(10149) and restated.restates == first.strike_id
    history = await navs.history("fund-1", DEC3)
    assert [(s.strike_id, s.current) for s in history] == [(first.strike_id, False),
                                                           (restated.strike_id, True)]
    assert history[0].nav_json == first.nav_json  # the old strike is kept as it was
    current = await navs.current("fund-1", DEC3)
    assert current is not None and current.strike_id == restated.strike_id
    # restating with the current inputs changes nothing
    same = await navs.strike(day(DEC3, mark="103.00"), restate=True)
    assert same.strike_id == restated.strike_id
    assert len(await navs.history("fund-1", DEC3)) == 2


async def test_previous_nav_is_the_latest_current_strike_before(db: TreasuryDb) -> None:
    navs = store(db)
    assert await navs.previous_nav("fund-1", DEC4) == 0
    assert await navs.current("fund-1", DEC3) is None
    await navs.strike(day(dt.date(2026, 12, 1), mark="101.00"))
    await navs.strike(day(DEC3))
    assert await navs.previous_nav("fund-1", DEC4) == D(10099)
    assert await navs.previous_nav("fund-1", DEC3) == D(10049)
    assert await navs.previous_nav("fund-2", DEC4) == 0
    await navs.strike(day(DEC3, mark="103.00"), restate=True)
    assert await navs.previous_nav("fund-1", dt.date(2026, 12, 7)) == D(10149)
    # the next session's strike starts from it
    nxt = await navs.strike(day(DEC4, previous_nav=await navs.previous_nav("fund-1", DEC4)))
    assert nxt.nav.previous_nav == D(10149)
    assert nxt.nav.nav == nxt.nav.previous_nav + nxt.nav.pnl + nxt.nav.flows
    assert await navs.previous_nav("fund-1", dt.date(2026, 12, 7)) == nxt.nav.nav


async def test_concurrent_strikes_of_a_session_store_one_row(db: TreasuryDb) -> None:
    navs = store(db)
    results = await asyncio.gather(*(navs.strike(day(DEC3)) for _ in range(4)))
    assert len({r.strike_id for r in results}) == 1
    assert len(await navs.history("fund-1", DEC3)) == 1


async def test_bad_input_stores_nothing(db: TreasuryDb) -> None:
    navs = store(db)
    with pytest.raises(TreasuryInputError):
        await navs.strike(replace(day(DEC3), marks={}))
    assert await navs.history("fund-1", DEC3) == []


async def test_history_cannot_be_rewritten(db: TreasuryDb) -> None:
    stored = await store(db).strike(day(DEC3))
    async with db.pool.acquire() as conn:
        with pytest.raises(asyncpg.RaiseError, match="history"):
            await conn.execute("UPDATE nav_strikes SET nav = 0 WHERE strike_id = $1",
                               stored.strike_id)
        with pytest.raises(asyncpg.RaiseError, match="history"):
            await conn.execute("DELETE FROM nav_strikes WHERE strike_id = $1", stored.strike_id)
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                "INSERT INTO nav_strikes (fund_id, session, inputs_json, inputs_sha256, "
                "nav_json, outputs_sha256, nav, struck_at) SELECT fund_id, session, "
                "inputs_json, inputs_sha256, nav_json, outputs_sha256, nav, struck_at "
                "FROM nav_strikes WHERE strike_id = $1", stored.strike_id)
