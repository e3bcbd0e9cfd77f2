"""Corporate actions in the OMS (issue #20): a split moves every sleeve position in its symbol,
once per action, durably, with its events; a bust or a late fill after it keeps it; a reverse
split leaves whole lots as the paper venue does - on the in-memory store and on PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest
from mts1b_foundation import (
    CorporateAction,
    Equity,
    ExecType,
    ExecutionReport,
    FundConfig,
    Order,
    Position,
    Quote,
    Side,
    ValidationFailed,
    parse_message,
)
from mts1b_oms.instruments import InstrumentRegistry
from mts1b_oms.oms import Oms, effective_at
from mts1b_oms.orderstore import OrderStore, OutboxRow
from mts1b_oms.positions import PositionState, lieu_quantities
from mts1b_oms.testing import RecordingBroker, make_fund

if TYPE_CHECKING:
    from conftest import MakeOms

D = Decimal
BEFORE = dt.datetime(2027, 1, 4, 21, 0, tzinfo=dt.UTC)  # the session before the ex-date
OPEN = dt.datetime(2027, 1, 5, 14, 30, tzinfo=dt.UTC)  # the ex-date's open
EX_DATE = "2027-01-05"


def fund(*strategies: str) -> FundConfig:
    return make_fund().model_copy(update={"strategies": list(strategies)})


def split(ratio: str, action_id: str = "act-split-1", symbol: str = "AAPL",
          ex_date: str = EX_DATE) -> CorporateAction:
    return CorporateAction(action_id=action_id, symbol=symbol, ex_date=ex_date, kind="split",
                           value=D(ratio))


async def buy(oms: Oms, strategy: str, qty: str, price: str, *, ts: dt.datetime = BEFORE,
              side: Side = Side.BUY, trade: str | None = None, commission: str = "0") -> str:
    """An order of ``strategy`` filled at once at ``price``, stamped ``ts``; its order id."""
    n = len(await oms.store.orders())
    reply = await oms.submit(Order(idempotency_key=f"k{n}", fund_id="f1", strategy_id=strategy,
                                   instrument=Equity(symbol="AAPL"), side=side,
                                   quantity=D(qty)))
    assert reply.ok and reply.order_id, reply
    await oms.on_execution_report(ExecutionReport(
        broker="paper", account_id="acc1", order_id=reply.order_id, exec_type=ExecType.FILL,
        ts=ts, trade_id=trade or f"t{n}", symbol="AAPL", side=side, last_quantity=D(qty),
        last_price=D(price), cumulative_quantity=D(qty), commission=D(commission)))
    return reply.order_id


def sleeves(oms: Oms) -> dict[str, PositionState]:
    return {s: p for (s, sym), p in oms.position_states("f1").items() if sym == "AAPL"}


def published_positions(rows: list[OutboxRow]) -> dict[str, Position]:
    return {p.strategy_id or "": p for p in (parse_message(Position, payload)
                                            for _id, subject, payload in rows
                                            if subject == "mts.v1.oms.positions.updated")}


async def test_a_two_for_one_split_doubles_each_sleeve_and_halves_its_cost(
        make: MakeOms, broker: RecordingBroker, store: OrderStore) -> None:
    oms = await make(broker, fund("A", "B"))
    await buy(oms, "A", "30", "100")
    await buy(oms, "B", "10", "120.5", commission="1")
    rows: list[OutboxRow] = []
    store.on_commit(rows.extend)
    assert await oms.apply_split(split("2")) == ["f1"]
    want = {"A": PositionState(D(60), D(50), D(0)),
            "B": PositionState(D(20), D("60.25"), D(-1))}
    assert sleeves(oms) == want
    events = published_positions(rows)
    assert {s: (p.quantity, p.avg_cost) for s, p in events.items()} == {
        "A": (D(60), D(50)), "B": (D(20), D("60.25"))}
    assert oms.prices["AAPL"] == D(50)  # the reference price is in the new terms too
    assert oms.positions("f1") == {"AAPL": D(80)}
    # durably: a new instance reads the split positions back, and a repeat changes nothing
    again = await make(broker, fund("A", "B"))
    assert sleeves(again) == want
    rows.clear()
    assert await again.apply_split(split("2")) == []
    assert await oms.apply_split(split("2")) == []
    assert sleeves(again) == want and sleeves(oms) == want
    assert rows == []


async def test_a_one_for_ten_reverse_split_keeps_whole_lots_as_the_venue_does(
        make: MakeOms, broker: RecordingBroker, store: OrderStore) -> None:
    oms = await make(broker, fund("A", "B"))
    await buy(oms, "A", "15", "100")
    await buy(oms, "B", "17", "100")
    oms.set_price("AAPL", D(110), at=BEFORE)
    rows: list[OutboxRow] = []
    store.on_commit(rows.extend)
    assert await oms.apply_split(split("0.1")) == ["f1"]
    # the fund held 32 -> 3.2 new shares: the venue keeps 3 lots of 1 and pays 0.2 in lieu.
    # A keeps its whole lot (1.5 -> 1: 0.5 sold at the adjusted 1100); the fund's third lot
    # goes to B, the larger fraction (1.7 -> 2: 0.3 more at 1100)
    assert oms.prices["AAPL"] == D(1100)
    assert sleeves(oms) == {
        "A": PositionState(D(1), D(1000), D("50.0")),
        "B": PositionState(D(2), (D("1.7") * 1000 + D("0.3") * 1100) / 2, D(0))}
    assert oms.positions("f1") == {"AAPL": D(3)}
    assert set(published_positions(rows)) == {"A", "B"}


async def test_a_reverse_split_without_a_registered_instrument_keeps_the_fraction(
        make: MakeOms, broker: RecordingBroker) -> None:
    # the venue pays cash in lieu only for an instrument it has terms for; neither does the OMS
    oms = await make(broker, fund("A"))
    await buy(oms, "A", "15", "100")
    oms.instruments = InstrumentRegistry()  # the order went through; the terms are gone
    await oms.apply_split(split("0.1"))
    assert sleeves(oms) == {"A": PositionState(D("1.5"), D(1000), D(0))}


async def test_a_bust_after_a_split_keeps_the_split(
        make: MakeOms, broker: RecordingBroker) -> None:
    oms = await make(broker, fund("A"))
    first = await buy(oms, "A", "10", "100", trade="t-first")
    await buy(oms, "A", "10", "110", trade="t-second")
    await oms.apply_split(split("2"))
    assert sleeves(oms)["A"] == PositionState(D(40), D("52.5"), D(0))
    await oms.bust(first, "t-first")
    assert sleeves(oms)["A"] == PositionState(D(20), D(55), D(0))  # not 10 @ 110


async def test_a_fill_of_the_ex_date_applied_before_the_split_still_comes_after_it(
        make: MakeOms, broker: RecordingBroker) -> None:
    # the venue splits before the session's bars; its fills of the open can reach the OMS
    # before the action does: the split rebuilds the sleeve with that fill after it
    oms = await make(broker, fund("A"))
    await buy(oms, "A", "10", "100")
    await buy(oms, "A", "20", "50", ts=OPEN, side=Side.SELL)  # post-split terms
    assert sleeves(oms)["A"].quantity == D(-10)  # wrong until the split is in
    await oms.apply_split(split("2"))
    assert sleeves(oms)["A"] == PositionState(D(0), D(0), D(0))


async def test_a_fill_from_before_a_booked_split_is_rebuilt_with_it(
        make: MakeOms, broker: RecordingBroker) -> None:
    # catch-up at start applies a fill the venue made before the ex-date, after the split
    oms = await make(broker, fund("A"))
    await buy(oms, "A", "10", "100")
    await oms.apply_split(split("2"))
    await buy(oms, "A", "10", "120", ts=BEFORE)  # old terms, booked late
    assert sleeves(oms)["A"] == PositionState(D(40), D(55), D(0))
    restarted = await make(broker, fund("A"))  # the split's time is read back at start
    await buy(restarted, "A", "10", "100", ts=BEFORE)
    pos = sleeves(restarted)["A"]
    assert pos.quantity == D(60) and round(pos.avg_cost, 12) == D("53.333333333333")


async def test_the_reference_price_is_divided_only_when_it_is_from_before_the_ex_date(
        make: MakeOms, broker: RecordingBroker) -> None:
    oms = await make(broker, fund("A"))
    oms.set_price("AAPL", D(100), at=BEFORE)
    await oms.apply_split(split("4"))
    assert oms.prices["AAPL"] == D(25)
    await oms.apply_split(split("4"))  # a repeat divides nothing
    assert oms.prices["AAPL"] == D(25)
    oms.set_price("MSFT", D(51), at=OPEN)  # the session's bar came first: new terms already
    await oms.apply_split(split("2", action_id="act-msft", symbol="MSFT"))
    assert oms.prices["MSFT"] == D(51)


async def test_working_orders_and_dividends_are_left_alone(
        make: MakeOms, broker: RecordingBroker) -> None:
    oms = await make(broker, fund("A"))
    await buy(oms, "A", "10", "100")
    reply = await oms.submit(Order(idempotency_key="working", fund_id="f1", strategy_id="A",
                                   instrument=Equity(symbol="AAPL"), side=Side.BUY,
                                   quantity=D(7)))
    assert reply.ok and reply.order_id
    dividend = CorporateAction(action_id="act-div", symbol="AAPL", ex_date=EX_DATE,
                               kind="dividend", value=D("0.25"))
    assert await oms.apply_action(dividend) == []
    assert await oms.apply_action(split("2")) == ["f1"]
    st = await oms.load_order(reply.order_id)
    assert st is not None and st.order.quantity == D(7) and st.is_open
    with pytest.raises(ValidationFailed) as err:
        await oms.apply_split(dividend)
    assert err.value.context["field"] == "kind"


def test_lieu_quantities_place_the_funds_lots_on_whole_lots_per_sleeve() -> None:
    assert lieu_quantities({"A": D("1.5"), "B": D("1.7")}, D(1)) == {"A": D("0.5"),
                                                                    "B": D("-0.3")}
    assert lieu_quantities({"A": D("0.4"), "B": D("0.4")}, D(1)) == {"A": D("0.4"),
                                                                    "B": D("0.4")}
    # long and short sleeves: the fund's 0.7 - 0.4 = 0.3 is cut to 0
    assert lieu_quantities({"A": D("0.7"), "B": D("-0.4")}, D(1)) == {"A": D("0.7"),
                                                                     "B": D("-0.4")}
    # a short fund is cut toward zero too (-2.2 -> -2); equal fractions: by name
    assert lieu_quantities({"A": D("-1.6"), "B": D("-0.6")}, D(1)) == {"A": D("0.4"),
                                                                      "B": D("-0.6")}
    assert effective_at("2026-12-04") == dt.datetime(2026, 12, 4, tzinfo=dt.UTC)


@pytest.mark.integration
@pytest.mark.parametrize(("ratio", "bought"), [("0.1", ("15", "17")), ("2", ("15", "17")),
                                               ("0.1", ("23", "-4"))])
async def test_positions_after_a_split_are_the_paper_venues(
        pg_store: OrderStore, ratio: str, bought: tuple[str, str]) -> None:
    """The real paper venue in process, the OMS on PostgreSQL: orders of two sleeves filled by
    the venue, then the split applied to both (the venue keeps whole lots and pays the rest in
    lieu): the OMS's positions are the venue's, and the start-up reconciliation agrees."""
    brokers = pytest.importorskip("mts1b_brokers", reason="the paper venue is mts1b-brokers'")
    venue = brokers.PaperClient(accounts={"acc1": "1000000"}, instruments=[Equity(symbol="AAPL")],
                                participation_rate=None)
    await venue.connect()
    oms = Oms(pg_store, venue, [fund("A", "B")], instruments=InstrumentRegistry(
        [Equity(symbol="AAPL")]), sweep_poll_seconds=None)
    oms.set_price("AAPL", D(100), at=BEFORE)
    await oms.start()
    try:
        for n, (strategy, qty) in enumerate(zip(("A", "B"), bought, strict=True)):
            side = Side.BUY if D(qty) > 0 else Side.SELL
            reply = await oms.submit(Order(idempotency_key=f"v{n}", fund_id="f1",
                                           strategy_id=strategy,
                                           instrument=Equity(symbol="AAPL"), side=side,
                                           quantity=abs(D(qty))))
            assert reply.ok, reply
        await venue.on_quote(Quote(symbol="AAPL", ts=BEFORE, bid=D("99.99"), ask=D("100.01")))
        for _ in range(100):
            if sum(abs(p.quantity) for p in sleeves(oms).values()) == sum(
                    abs(D(q)) for q in bought):
                break
            await asyncio.sleep(0.02)
        assert oms.positions("f1") == {"AAPL": sum((D(q) for q in bought), D(0))}
        venue.apply_split("AAPL", D(ratio))
        await oms.apply_split(split(ratio))
        theirs = {p.symbol: p.quantity for p in await venue.positions("acc1")}
        assert oms.positions("f1") == theirs
        assert all(p.quantity == p.quantity.to_integral_value() for p in sleeves(oms).values())
        assert await oms.reconcile("f1") == []
    finally:
        await oms.stop()
        await venue.close()


def delisting(price: str, action_id: str = "act-delist-1") -> CorporateAction:
    return CorporateAction(action_id=action_id, symbol="AAPL", ex_date=EX_DATE,
                           kind="delisting", value=D(price))


async def test_a_delisting_closes_each_sleeve_at_the_last_close_once(
        make: MakeOms, broker: RecordingBroker, store: OrderStore) -> None:
    """Every sleeve's position is closed at the action's price, no commission, realizing its
    PnL, with its events; durably; a repeat (or a new instance) changes nothing."""
    oms = await make(broker, fund("A", "B"))
    await buy(oms, "A", "30", "100")
    await buy(oms, "B", "10", "120", side=Side.SELL, commission="1")
    rows: list[OutboxRow] = []
    store.on_commit(rows.extend)
    assert await oms.apply_action(delisting("90")) == ["f1"]
    want = {"A": PositionState(D(0), D(0), D(-300)), "B": PositionState(D(0), D(0), D(299))}
    assert sleeves(oms) == want
    assert oms.positions("f1") == {}
    assert {s: (p.quantity, p.realized_pnl) for s, p in published_positions(rows).items()} == {
        "A": (D(0), D(-300)), "B": (D(0), D(299))}
    again = await make(broker, fund("A", "B"))
    assert sleeves(again) == want
    rows.clear()
    assert await again.apply_action(delisting("90")) == []
    assert await oms.apply_delisting(delisting("90")) == []
    assert rows == [] and sleeves(oms) == want
    with pytest.raises(ValidationFailed) as err:
        await oms.apply_delisting(split("2"))
    assert err.value.context["field"] == "kind"


async def test_a_bust_or_a_late_fill_after_a_delisting_keeps_the_position_closed(
        make: MakeOms, broker: RecordingBroker) -> None:
    oms = await make(broker, fund("A"))
    first = await buy(oms, "A", "10", "100", trade="t-first")
    await buy(oms, "A", "10", "110", trade="t-second")
    await oms.apply_delisting(delisting("80"))
    assert sleeves(oms)["A"] == PositionState(D(0), D(0), D(-500))
    await oms.bust(first, "t-first")  # the rebuild closes what stands at the delisting
    assert sleeves(oms)["A"] == PositionState(D(0), D(0), D(-300))
    await buy(oms, "A", "10", "90", ts=BEFORE)  # a fill of before it, caught up late
    assert sleeves(oms)["A"] == PositionState(D(0), D(0), D(-400))


@pytest.mark.integration
async def test_positions_after_a_delisting_are_the_paper_venues(pg_store: OrderStore) -> None:
    """The real paper venue in process, the OMS on PostgreSQL: two sleeves' fills, an order
    still working, then the delisting applied to both: the venue cancels the working order (the
    OMS hears it), both books are flat with the same realized PnL, and they reconcile."""
    brokers = pytest.importorskip("mts1b_brokers", reason="the paper venue is mts1b-brokers'")
    venue = brokers.PaperClient(accounts={"acc1": "1000000"}, instruments=[Equity(symbol="AAPL")],
                                participation_rate=None)
    await venue.connect()
    oms = Oms(pg_store, venue, [fund("A", "B")], instruments=InstrumentRegistry(
        [Equity(symbol="AAPL")]), sweep_poll_seconds=None)
    oms.set_price("AAPL", D(100), at=BEFORE)
    await oms.start()
    try:
        for n, (strategy, qty) in enumerate((("A", "15"), ("B", "-4"))):
            side = Side.BUY if D(qty) > 0 else Side.SELL
            reply = await oms.submit(Order(idempotency_key=f"v{n}", fund_id="f1",
                                           strategy_id=strategy,
                                           instrument=Equity(symbol="AAPL"), side=side,
                                           quantity=abs(D(qty))))
            assert reply.ok, reply
        await venue.on_quote(Quote(symbol="AAPL", ts=BEFORE, bid=D("99.99"), ask=D("100.01")))
        for _ in range(100):
            if oms.positions("f1") == {"AAPL": D(11)} and len(sleeves(oms)) == 2:
                break
            await asyncio.sleep(0.02)
        working = await oms.submit(Order(idempotency_key="w", fund_id="f1", strategy_id="A",
                                         instrument=Equity(symbol="AAPL"), side=Side.SELL,
                                         quantity=D(5), order_type="limit",
                                         limit_price=D(150)))
        assert working.ok and working.order_id
        venue.delist("AAPL", D("91.5"))
        assert await oms.apply_delisting(delisting("91.5")) == ["f1"]
        for _ in range(100):
            st = await oms.load_order(working.order_id)
            if st is not None and not st.is_open:
                break
            await asyncio.sleep(0.02)
        assert st is not None and not st.is_open
        assert oms.positions("f1") == {} == {p.symbol: p.quantity
                                             for p in await venue.positions("acc1")
                                             if p.quantity}
        (theirs,) = await venue.positions("acc1")
        assert sum((p.realized_pnl for p in sleeves(oms).values()), D(0)) == theirs.realized_pnl
        assert await oms.reconcile("f1") == []
    finally:
        await oms.stop()
        await venue.close()
