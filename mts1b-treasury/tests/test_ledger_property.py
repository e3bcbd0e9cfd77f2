"""Random fill sequences against the real ledger: the books always balance and agree with lots.

One schema serves every example; each example posts to funds of its own (fresh ids), which is
the reset: nothing an earlier example wrote is read by a later one. The test is synchronous and
drives its own event loop, because Hypothesis calls the example function synchronously.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import os
import uuid
from collections.abc import Iterator
from decimal import Decimal as D  # noqa: N817

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mts1b_foundation import Fill, Side, TaxLotMethod
from mts1b_treasury.db import TreasuryDb
from mts1b_treasury.ledger import FillPosting, Ledger, PostStatus
from mts1b_treasury.ledger_model import replay

pytestmark = pytest.mark.integration

DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
T0 = dt.datetime(2026, 3, 2, 14, 30, tzinfo=dt.UTC)
SYMBOLS = ("AAA", "BBB")
_example = itertools.count()

fills_st = st.lists(
    st.tuples(st.sampled_from(SYMBOLS), st.booleans(), st.integers(1, 60),
              st.integers(1, 20_000), st.integers(0, 300), st.sampled_from(["a", "b", ""])),
    min_size=1, max_size=12)


@pytest.fixture(scope="module")
def loop_db() -> Iterator[tuple[asyncio.AbstractEventLoop, TreasuryDb]]:
    loop = asyncio.new_event_loop()
    try:
        db = loop.run_until_complete(_open())
    except (OSError, asyncpg.PostgresError, TimeoutError):
        loop.close()
        pytest.skip(f"PostgreSQL not reachable at {DSN} (python3 dev.py test starts one)")
    try:
        yield loop, db
    finally:
        loop.run_until_complete(db.drop_schema())
        loop.run_until_complete(db.close())
        loop.close()


async def _open() -> TreasuryDb:
    conn = await asyncpg.connect(DSN, timeout=3)
    await conn.close()
    return await TreasuryDb.open(DSN, schema=f"tr_p_{uuid.uuid4().hex[:12]}")


def _posting(n: int, fund: str, i: int, spec: tuple[str, bool, int, int, int, str]
             ) -> FillPosting:
    symbol, is_buy, quantity, cents, commission_cents, sleeve = spec
    fill = Fill(trade_id=f"p{n}-{i}", order_id=f"o{n}-{i}", fund_id=fund, symbol=symbol,
                side=Side.BUY if is_buy else Side.SELL, quantity=D(quantity),
                price=D(cents) / 100, commission=D(commission_cents) / 100,
                ts=T0 + dt.timedelta(hours=i))
    sleeves = {sleeve: fill.signed_quantity} if sleeve else {}
    return FillPosting(fill, sleeves)


@settings(max_examples=25, deadline=None)
@given(method=st.sampled_from([TaxLotMethod.FIFO, TaxLotMethod.LIFO, TaxLotMethod.HIFO,
                               TaxLotMethod.AVERAGE_COST]),
       specs=fills_st, batch=st.integers(1, 5), bust=st.none() | st.integers(0, 3),
       contributed=st.integers(0, 10**6))
def test_random_fills_keep_the_books_balanced_and_equal_to_the_lots(
        loop_db: tuple[asyncio.AbstractEventLoop, TreasuryDb], method: TaxLotMethod,
        specs: list[tuple[str, bool, int, int, int, str]], batch: int, bust: int | None,
        contributed: int) -> None:
    loop, db = loop_db
    n = next(_example)
    loop.run_until_complete(_check(db, n, method, specs, batch, bust, D(contributed)))


async def _check(db: TreasuryDb, n: int, method: TaxLotMethod,
                 specs: list[tuple[str, bool, int, int, int, str]], batch: int,
                 bust: int | None, contributed: D) -> None:
    led = Ledger(db)
    fund = f"P{n}"
    await led.open_fund_accounts(fund, method)
    if contributed:
        await led.contribute(fund, contributed, key=f"c{n}", when=T0)
    postings = [_posting(n, fund, i, spec) for i, spec in enumerate(specs)]
    for start in range(0, len(postings), batch):
        outs = await led.post_fills(postings[start:start + batch])
        assert {o.status for o in outs} == {PostStatus.POSTED}
    again = await led.post_fills(postings)  # every replay is a duplicate
    assert {o.status for o in again} == {PostStatus.DUPLICATE}
    kept = postings
    if bust is not None:
        gone = bust % len(postings)
        await led.bust(postings[gone].fill.trade_id, reason="property")
        kept = postings[:gone] + postings[gone + 1:]

    assert (await led.trial_balance())[fund] == 0
    balances = await led.balances(fund)
    notional = sum((p.fill.signed_quantity * p.fill.price for p in kept), D(0))
    commissions = sum((p.fill.commission for p in kept), D(0))
    assert balances["cash"] == contributed - notional - commissions
    assert balances["commissions"] == commissions
    positions = await led.positions(fund)
    sleeves = await led.sleeve_positions(fund)
    realized = D(0)
    for symbol in SYMBOLS:
        lots = await led.lots(fund, symbol)
        quantity, cost = positions.get(symbol, (D(0), D(0)))
        assert sum((lot.quantity for lot in lots), D(0)) == quantity
        assert sum((lot.cost for lot in lots), D(0)) == cost
        assert sum((q for (_, s), q in sleeves.items() if s == symbol), D(0)) == quantity
        assert quantity == sum((p.fill.signed_quantity for p in kept
                                if p.fill.symbol == symbol), D(0))
        disposals = await led.disposals(fund, symbol=symbol)
        realized += sum((d.realized for d in disposals), D(0))
    assert balances["realized_pnl"] == -realized
    # the books equal a fresh replay of the fills that stand (so a bust restated correctly)
    fresh = [f for f in await led.fills(fund)]
    assert [f.posting.fill.trade_id for f in fresh] == [p.fill.trade_id for p in kept]
    for symbol in SYMBOLS:
        state = replay(method, [f for f in fresh if f.posting.fill.symbol == symbol])
        assert [(lot.lot_id, lot.quantity, lot.cost) for lot in state.lots] == [
            (lot.lot_id, lot.quantity, lot.cost) for lot in await led.lots(fund, symbol)]
