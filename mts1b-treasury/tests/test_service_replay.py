"""The treasury on a lockstep replay's clock (issue #20), over a real NATS JetStream and PostgreSQL.

What a ``mts mts1b-datalake replay --lockstep ...,treasury`` does is done by hand here: a
session's order events and bars are published, then its tick is handed out with
:func:`~mts1b_platform.replayclock.hand_out`. When ``hand_out`` returns the treasury has
answered, so by then every event must be booked and the session's NAV struck at its close with
its own bars, exactly, and published. The next session's tick strikes the next session; a
tick handed out again - to the same process, or to a restarted one that never saw the bars on
its live subscription - stores and publishes nothing new.

A session's corporate actions go out before its bars, as the replay sends them: the tick books
them (a split re-bases the lots, a dividend pays the shares held at the previous close) after
the fills of the session's open and before the strike, once whatever happens again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from mts1b_foundation import (
    Bar,
    ClockTick,
    CorporateAction,
    Equity,
    Fill,
    FundConfig,
    FundNav,
    Order,
    OrderEvent,
    OrderEventType,
    OrderStatus,
    Side,
    parse_message,
    symbol_subject,
)
from mts1b_platform.bus import Bus, BusError
from mts1b_platform.calendars import MarketCalendar
from mts1b_platform.replayclock import hand_out
from mts1b_treasury.db import TreasuryDb
from mts1b_treasury.funds import FundRegistry
from mts1b_treasury.ledger import FillPosting, Ledger
from mts1b_treasury.navstore import NavStore
from mts1b_treasury.service import ServeOptions, TreasuryService, run_service

from .conftest import DSN, open_db

pytestmark = pytest.mark.integration
D = Decimal
S1, S2 = dt.date(2026, 12, 3), dt.date(2026, 12, 4)
S3, S4 = dt.date(2026, 12, 7), dt.date(2026, 12, 8)
CLOSE = {s: MarketCalendar("XNYS").close_of(s) for s in (S1, S2, S3, S4)}
OPEN = {s: MarketCalendar("XNYS").open_of(s) for s in (S1, S2, S3, S4)}
CAPITAL = D(100_000)


@dataclass
class Replay:
    bus: Bus
    db: TreasuryDb
    navs: list[FundNav] = field(default_factory=list)
    alerts: list[bytes] = field(default_factory=list)
    service: asyncio.Task[TreasuryService] | None = None
    stop: asyncio.Event | None = None

    async def start(self) -> None:
        self.stop, ready = asyncio.Event(), asyncio.Event()
        self.service = asyncio.get_running_loop().create_task(run_service(
            ServeOptions(dsn=DSN, schema=self.db.schema, namespace=self.bus.namespace,
                         replay_clock=True, bars_wait=0.5, actions_wait=0.5),
            ready=ready, stop=self.stop))
        await asyncio.wait_for(ready.wait(), 20)

    async def halt(self) -> TreasuryService:
        assert self.stop is not None and self.service is not None
        self.stop.set()
        return await asyncio.wait_for(self.service, 20)

    async def order(self, n: int, session: dt.date, qty: int, price: str, *,
                    at_open: bool = False) -> None:
        """Order ``n`` of the session: submitted, then filled an hour before the close (or at
        the open: an order decided at the previous close, as in the paper loop)."""
        ts = OPEN[session] if at_open else CLOSE[session] - dt.timedelta(hours=1)
        oid = f"o-{session}-{n}"
        order = Order(idempotency_key=f"k-{oid}", order_id=oid, fund_id="f1",
                      strategy_id="mom", instrument=Equity(symbol="AAPL"), side=Side.BUY,
                      quantity=D(qty), created_at=ts)
        fill = Fill(trade_id=f"t-{oid}", order_id=oid, fund_id="f1", symbol="AAPL",
                    side=Side.BUY, quantity=D(qty), price=D(price), ts=ts)
        for kind, status, extra in ((OrderEventType.SUBMITTED, OrderStatus.PENDING,
                                     {"order": order}),
                                    (OrderEventType.FILLED, OrderStatus.FILLED, {"fill": fill})):
            event = OrderEvent(event_id=f"e-{kind.value}-{oid}", order_id=oid, fund_id="f1",
                               event_type=kind, status=status, ts=ts, **extra)
            await self.bus.publish_acked(f"mts.v1.oms.orders.{kind.value}", event)

    async def bars(self, session: dt.date, closes: dict[str, str]) -> None:
        """The session's daily bars, as the replay publishes them (stamped at the close)."""
        for symbol, close in closes.items():
            bar = Bar(symbol=symbol, ts=CLOSE[session], open=D(close), high=D(close),
                      low=D(close), close=D(close), volume=D(1000))
            await self.bus.publish_acked(f"mts.v1.datalake.bars.{symbol}", bar,
                                         msg_id=f"bar:{symbol}:{session}")

    async def actions(self, session: dt.date, *actions: tuple[str, str, str]) -> None:
        """The session's corporate actions ``(symbol, kind, value)``, as the replay publishes
        them before the session's bars (stored in the datalake stream under their id)."""
        for symbol, kind, value in actions:
            action = CorporateAction(action_id=f"ca-{symbol}-{session}-{kind}", symbol=symbol,
                                     ex_date=session.isoformat(), kind=kind, value=D(value))
            await self.bus.publish_acked(symbol_subject("actions", symbol), action,
                                         msg_id=action.action_id)

    async def tick(self, seq: int, session: dt.date, bars: int, actions: int = 0) -> None:
        tick = ClockTick(replay_id="r1", seq=seq, session=session.isoformat(),
                         ts=CLOSE[session], bars=bars, actions=actions)
        await hand_out(self.bus, tick, ["treasury"], timeout=60)

    async def nav_events(self) -> int:
        subject = self.bus.wire_subject("mts.v1.treasury.nav.struck")
        info = await self.bus.js.stream_info(self.bus.stream_for("treasury"),
                                             subjects_filter=subject)
        return int((info.state.subjects or {}).get(subject, 0))


@pytest.fixture
async def replay() -> AsyncIterator[Replay]:
    try:
        bus = await Bus.connect(namespace=f"t{uuid.uuid4().hex[:10]}", connect_timeout=2)
    except BusError as exc:
        pytest.skip(f"NATS not reachable: {exc}")
    db = await open_db()
    world = Replay(bus, db)
    try:
        registry = FundRegistry(db)
        before = CLOSE[S1] - dt.timedelta(days=7)
        for fund, symbol in (("f1", None), ("f2", "MSFT")):
            config = FundConfig(fund_id=fund, name=fund, target_nav_usd=CAPITAL,
                                broker="paper", broker_account_id=f"a-{fund}",
                                strategies=["mom"])
            await registry.create(config, actor="test", now=before)
            ledger = Ledger(db)
            await ledger.open_fund_accounts(fund, config.tax_lot_method)
            await ledger.contribute(fund, CAPITAL, key=f"c-{fund}", when=before)
            if symbol is not None:  # f2 holds a symbol the replay never prices
                await ledger.post_fills([FillPosting(Fill(
                    trade_id="t-f2", order_id="o-f2", fund_id=fund, symbol=symbol,
                    side=Side.BUY, quantity=D(10), price=D(100), ts=before),
                    sleeves={"mom": D(10)})])
        await bus.declare_streams(["oms", "treasury", "brokers", "datalake", "operations"])

        async def on_nav(msg: Any) -> None:
            world.navs.append(parse_message(FundNav, msg.data))

        async def on_alert(msg: Any) -> None:
            world.alerts.append(msg.data)

        await bus.nc.subscribe(bus.wire_subject("mts.v1.treasury.nav.struck"), cb=on_nav)
        await bus.nc.subscribe(bus.wire_subject("mts.v1.operations.alerts.raised"),
                               cb=on_alert)
        await world.start()
        yield world
    finally:
        if world.stop is not None and not world.stop.is_set():
            await world.halt()
        await bus.delete_streams()
        await bus.drain()
        await db.drop_schema()
        await db.close()


async def _settled(items: list[Any], n: int) -> None:
    """Core subscriptions deliver a moment after the JetStream ack: wait for ``n`` items."""
    for _ in range(200):
        if len(items) >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(items)} of {n} arrived")


async def test_each_tick_strikes_its_session_after_booking_the_session_events(
        replay: Replay) -> None:
    ledger, store = Ledger(replay.db), NavStore(replay.db)
    # session 1: forty fills published just before the tick, AAPL and IBM bars
    fills1 = [(n, 1 + n % 7, f"{100 + n % 5}.25") for n in range(40)]
    for n, qty, price in fills1:
        await replay.order(n, S1, qty, price)
    await replay.bars(S1, {"AAPL": "103.10", "IBM": "250"})
    await replay.tick(1, S1, bars=2)

    # answered: every fill is booked, the NAV struck at the close with the session's mark
    qty1 = sum(D(q) for _, q, _ in fills1)
    cost1 = sum(D(q) * D(p) for _, q, p in fills1)
    assert len(await ledger.fills("f1")) == 40
    nav1 = CAPITAL - cost1 + qty1 * D("103.10")
    stored1 = await store.current("f1", S1)
    assert stored1 is not None and stored1.nav.nav == nav1
    assert stored1.struck_at == CLOSE[S1]  # stamped on the replay's clock
    assert stored1.nav.previous_nav == D(0)
    await _settled(replay.navs, 1)
    assert [(n.fund_id, n.session, n.nav) for n in replay.navs] == [("f1", S1.isoformat(), nav1)]
    assert await replay.nav_events() == 1
    # f2 holds MSFT, which no bar priced: not struck, an alert names it, the tick answered
    assert await store.current("f2", S1) is None
    await _settled(replay.alerts, 1)
    assert b"f2" in replay.alerts[0] and b"MSFT" in replay.alerts[0]

    # session 2: more fills and the next close
    fills2 = [(100 + n, 2 + n % 3, f"{104 + n % 2}.50") for n in range(10)]
    for n, qty, price in fills2:
        await replay.order(n, S2, qty, price)
    await replay.bars(S2, {"AAPL": "104.95", "IBM": "251"})
    await replay.tick(2, S2, bars=2)
    qty2 = qty1 + sum(D(q) for _, q, _ in fills2)
    cost2 = cost1 + sum(D(q) * D(p) for _, q, p in fills2)
    nav2 = CAPITAL - cost2 + qty2 * D("104.95")
    stored2 = await store.current("f1", S2)
    assert stored2 is not None and stored2.nav.nav == nav2
    assert stored2.nav.previous_nav == nav1
    assert stored2.struck_at == CLOSE[S2]
    await _settled(replay.navs, 2)
    assert replay.navs[1].nav == nav2 and replay.navs[1].session == S2.isoformat()
    assert await replay.nav_events() == 2

    # the same tick again: answered, nothing stored, published or booked again
    await replay.tick(2, S2, bars=2)
    # and again to a restarted treasury, which never saw the bars live: it reads AAPL's
    # mark back from the datalake stream, strikes the same inputs, stores nothing new
    await replay.halt()
    await replay.start()
    await replay.tick(2, S2, bars=2)
    restarted = await replay.halt()
    assert [(n.fund_id, n.nav) for n in restarted.struck] == [("f1", nav2)]
    assert [s.strike_id for s in await store.history("f1", S2)] == [stored2.strike_id]
    assert [s.strike_id for s in await store.history("f1", S1)] == [stored1.strike_id]
    assert await replay.nav_events() == 2  # republished under the same message id: dropped
    assert len(await ledger.fills("f1")) == 50
    assert await ledger.trial_balance() == {"f1": D(0), "f2": D(0)}


async def test_a_tick_of_a_day_the_calendar_has_no_session_is_refused(
        replay: Replay) -> None:
    """A replay on another exchange calendar than the treasury's would strike the wrong
    closes: the tick is refused, the refusal names the session, and nothing is struck."""
    from mts1b_platform.replayclock import ReplayStalled

    tick = ClockTick(replay_id="r2", seq=1, session="2026-12-05",  # a Saturday
                     ts=dt.datetime(2026, 12, 5, 21, tzinfo=dt.UTC), bars=0)
    with pytest.raises(ReplayStalled) as refused:
        await hand_out(replay.bus, tick, ["treasury"], timeout=10)
    assert "2026-12-05" in refused.value.message and "XNYS" in refused.value.message
    assert await replay.nav_events() == 0


async def _books(replay: Replay) -> tuple[Any, ...]:
    """What a repeated tick or a restart must not change: f1's positions, lots, sleeves and
    cash, f2's cash, every strike stored, the NAVs published."""
    ledger = Ledger(replay.db)
    strikes = await replay.db.pool.fetch("SELECT fund_id, session, strike_id FROM nav_strikes "
                                         "ORDER BY 1, 2, 3")
    return (await ledger.positions("f1"), await ledger.lots("f1", "AAPL"),
            await ledger.sleeve_positions("f1"), await ledger.balances("f1"),
            await ledger.balances("f2"), [tuple(r) for r in strikes],
            await replay.nav_events())


async def test_a_tick_books_its_sessions_split_and_dividend_before_striking(
        replay: Replay) -> None:
    """A 2-for-1 split of AAPL at S2's open and cash dividends at S3's open (AAPL 0.10, MSFT
    0.75), each session's fills at its open published after the actions, as in the paper
    loop: the split re-bases the shares held before S2's fills, the dividend pays the shares
    held at S2's close and not the ones bought at S3's open; the NAV and its attribution are
    exact. The same tick again, and to a restarted treasury that saw none of it live (it
    reads the actions and bars back from the datalake stream), books nothing twice."""
    ledger, store = Ledger(replay.db), NavStore(replay.db)
    # S1: 100 AAPL at its open, close 101
    await replay.bars(S1, {"AAPL": "101"})
    await replay.order(1, S1, 100, "99.50", at_open=True)
    await replay.tick(1, S1, bars=1)
    nav1 = CAPITAL - D("9950") + 100 * D(101)
    stored1 = await store.current("f1", S1)
    assert stored1 is not None and stored1.nav.nav == nav1 == D("100150")

    # S2: the split at the open, then the bars, then 20 post-split shares bought at the open
    # (booked by the order consumer before the tick books the split)
    await replay.actions(S2, ("AAPL", "split", "2"))
    await replay.bars(S2, {"AAPL": "51.10"})
    await replay.order(2, S2, 20, "50.25", at_open=True)
    await replay.tick(2, S2, bars=1, actions=1)
    assert await ledger.positions("f1") == {"AAPL": (D(220), D("10955.00"))}
    assert [(lot.quantity, lot.cost) for lot in await ledger.lots("f1", "AAPL")] == [
        (D(200), D("9950.00")), (D(20), D("1005.00"))]  # the cost of the 100 is unchanged
    assert await ledger.sleeve_positions("f1") == {("mom", "AAPL"): D(220)}
    cash2 = CAPITAL - D("9950") - D("1005")
    assert (await ledger.balances("f1"))["cash"] == cash2 == D("89045")
    nav2 = cash2 + 220 * D("51.10")
    stored2 = await store.current("f1", S2)
    assert stored2 is not None and stored2.nav.nav == nav2 == D("100287")
    # the previous close re-based (200 at 50.50): no PnL from the split itself
    assert stored2.nav.pnl == nav2 - nav1 == D(137)
    assert stored2.nav.pnl_by_strategy == {"mom": 200 * (D("51.10") - D("50.50"))
                                           + 20 * (D("51.10") - D("50.25"))}
    assert stored2.nav.unattributed == 0

    # S3 with the treasury down while the dividends, bars and the open's fill go out
    await replay.halt()
    await replay.actions(S3, ("AAPL", "dividend", "0.10"), ("MSFT", "dividend", "0.75"))
    await replay.bars(S3, {"AAPL": "52.40"})
    await replay.order(3, S3, 30, "52", at_open=True)
    await replay.start()
    await replay.tick(3, S3, bars=1, actions=2)
    assert await ledger.positions("f1") == {"AAPL": (D(250), D("12515.00"))}
    cash3 = cash2 - 30 * D(52) + 220 * D("0.10")  # not the 30 bought at this open
    assert (await ledger.balances("f1"))["cash"] == cash3 == D("87507.00")
    assert (await ledger.balances("f1"))["dividends"] == D("-22.00")
    assert (await ledger.balances("f2"))["cash"] == CAPITAL - 10 * D(100) + 10 * D("0.75")
    nav3 = cash3 + 250 * D("52.40")
    stored3 = await store.current("f1", S3)
    assert stored3 is not None and stored3.nav.nav == nav3 == D("100607.00")
    assert stored3.nav.pnl_by_strategy == {"mom": 220 * (D("52.40") - D("51.10"))
                                           + 30 * (D("52.40") - D(52)) + D("22.00")}
    assert stored3.nav.unattributed == 0
    assert await ledger.trial_balance() == {"f1": D(0), "f2": D(0)}

    # the same tick again; then a restarted treasury given S2's and S3's ticks again
    books = await _books(replay)
    assert books[-1] == 3
    await replay.tick(3, S3, bars=1, actions=2)
    assert await _books(replay) == books
    await replay.halt()
    await replay.start()
    await replay.tick(2, S2, bars=1, actions=1)
    await replay.tick(3, S3, bars=1, actions=2)
    assert await _books(replay) == books
    assert len(await ledger.fills("f1")) == 3


async def test_a_tick_whose_actions_are_nowhere_is_refused(replay: Replay) -> None:
    """The tick says one action and neither the bus nor the stream has it: the tick is refused
    (a NAV struck without it would differ from the venue's), naming the count."""
    from mts1b_platform.replayclock import ReplayStalled

    await replay.bars(S1, {"AAPL": "101"})
    tick = ClockTick(replay_id="r3", seq=1, session=S1.isoformat(), ts=CLOSE[S1], bars=1,
                     actions=1)
    with pytest.raises(ReplayStalled) as refused:
        await hand_out(replay.bus, tick, ["treasury"], timeout=30)
    assert "0 of 1" in refused.value.message
    assert await replay.nav_events() == 0


async def test_a_tick_books_its_sessions_delisting_as_the_disposal_at_the_last_close(
        replay: Replay) -> None:
    """AAPL's last session is S1 (close 101); its delisting at S2's open pays the 100 shares
    out at 101, no commission: the lots close with their realised PnL, the sleeve is flat, the
    cash is the venue's, the books balance and S2's NAV needs no AAPL mark. The same tick
    again, a restarted treasury, and the action booked once more book nothing twice; the
    same key at another price is a conflict."""
    from mts1b_treasury.corporate import book_actions

    ledger, store = Ledger(replay.db), NavStore(replay.db)
    await replay.bars(S1, {"AAPL": "101"})
    await replay.order(1, S1, 100, "99.50", at_open=True)
    await replay.tick(1, S1, bars=1)
    await replay.actions(S2, ("AAPL", "delisting", "101"))
    await replay.tick(2, S2, bars=0, actions=1)
    assert await ledger.positions("f1") == {} and await ledger.lots("f1", "AAPL") == []
    assert await ledger.sleeve_positions("f1") == {}
    balances = await ledger.balances("f1")
    cash = CAPITAL - D("9950") + 100 * D(101)
    assert balances["cash"] == cash and balances["realized_pnl"] == -(100 * D("1.50"))
    assert "commissions" not in balances or balances["commissions"] == 0
    assert await ledger.trial_balance() == {"f1": D(0), "f2": D(0)}
    stored = await store.current("f1", S2)
    assert stored is not None and stored.nav.nav == cash and stored.nav.pnl == 0
    books = await _books(replay)
    await replay.tick(2, S2, bars=0, actions=1)
    await replay.halt()
    await replay.start()
    await replay.tick(2, S2, bars=0, actions=1)
    assert await _books(replay) == books
    assert len(await ledger.fills("f1")) == 2
    again = CorporateAction(action_id="other-id", symbol="AAPL", ex_date=S2.isoformat(),
                            kind="delisting", value=D(101))
    assert [(f, o.status.value) for _a, f, o in await book_actions(FundRegistry(replay.db),
                                                                   [again])] == [
        ("f1", "duplicate")]
    other = again.model_copy(update={"value": D(100)})
    assert [(f, o.status.value) for _a, f, o in await book_actions(FundRegistry(replay.db),
                                                                   [other])] == [
        ("f1", "conflict")]
    assert await _books(replay) == books
