"""Sleeve ownership in the OMS (issue #17): composed targets, the fill split, a strategy's
halt or removal, and the permissions gate - on the in-memory store and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from mts1b_foundation import (
    MULTI_SLEEVE_STRATEGY,
    Equity,
    ExecType,
    ExecutionReport,
    FundConfig,
    Order,
    OrderStatus,
    RebalanceReport,
    ReplyCode,
    Side,
    SleeveAllocation,
    TargetPortfolio,
    TradingState,
    ValidationFailed,
    parse_message,
)
from mts1b_oms.oms import Oms
from mts1b_oms.orderstore import OrderStore, Transfer
from mts1b_oms.store import Store
from mts1b_oms.testing import RecordingBroker, make_fund
from mts1b_oms.tradingstate import make_command

if TYPE_CHECKING:
    from conftest import MakeOms

D = Decimal
AS_OF = dt.datetime(2026, 12, 4, 21, 0, tzinfo=dt.UTC)


def fund(*strategies: str) -> FundConfig:
    return make_fund().model_copy(update={"strategies": list(strategies)})


def target(sleeves: dict[str, dict[str, str]], as_of: dt.datetime = AS_OF) -> TargetPortfolio:
    alloc = SleeveAllocation(fund_id="f1", as_of=as_of,
                             sleeves={s: {k: D(v) for k, v in t.items()}
                                      for s, t in sleeves.items()})
    return TargetPortfolio(fund_id="f1", as_of=as_of, weights={}, allocation=alloc)


def report_of(reply: Any) -> RebalanceReport:
    assert reply.payload is not None, reply
    return parse_message(RebalanceReport, reply.payload)


async def fill(oms: Oms, order_id: str, trade: str, qty: str, price: str,
               commission: str = "0") -> None:
    st = await oms.load_order(order_id)
    assert st is not None
    await oms.on_execution_report(ExecutionReport(
        broker="paper", account_id="acc1", order_id=order_id, exec_type=ExecType.PARTIAL_FILL,
        ts=dt.datetime.now(dt.UTC), trade_id=trade, symbol=st.order.instrument.symbol,
        side=st.order.side, last_quantity=D(qty), last_price=D(price),
        commission=D(commission)))


def held(oms: Oms) -> dict[tuple[str, str], Decimal]:
    return {(s, sym): p.quantity for s, by in oms.sleeve_positions("f1").items()
            for sym, p in by.items()}


async def test_a_composed_target_nets_sleeves_into_one_order_and_reports_the_cross(
        make: MakeOms, broker: RecordingBroker) -> None:
    oms = await make(broker, fund("A", "B", "C"))
    oms.set_price("MSFT", D("200.5"))
    reply = await oms.rebalance(target({"A": {"AAPL": "100", "MSFT": "50"},
                                        "B": {"AAPL": "-60"}, "C": {"MSFT": "-50"}}))
    assert reply.ok, reply
    report = report_of(reply)
    assert list(report.orders) == ["AAPL"]  # MSFT crosses wholly: nothing for the venue,
    assert list(report.transfers) == ["MSFT"]  # its shares change owner at 200.5
    assert held(oms) == {("A", "MSFT"): D(50), ("C", "MSFT"): D(-50)}
    assert oms.sleeve_positions("f1")["C"]["MSFT"].avg_cost == D("200.5")
    sent = broker.orders[report.orders["AAPL"]]
    assert (sent.side, sent.quantity, sent.strategy_id) == (Side.BUY, D(40),
                                                            MULTI_SLEEVE_STRATEGY)
    assert sent.sleeves == {"A": D(100), "B": D(-60)}
    assert report.crossed == {"AAPL": D(60), "MSFT": D(50)}
    assert (report.gross_shares, report.net_shares, report.crossed_shares) == (
        D(260), D(40), D(110))
    assert report.crossed_notional == D(60) * D(100) + D(50) * D("200.5") == D("16025.0")
    again = await oms.rebalance(target({"A": {"AAPL": "100", "MSFT": "50"},
                                        "B": {"AAPL": "-60"}, "C": {"MSFT": "-50"}}))
    assert report_of(again).orders == report.orders and len(broker.new_orders) == 1
    assert report_of(again).transfers == {}  # MSFT is where the target wants it now
    repeat = Transfer(report.transfers["MSFT"], "f1", "MSFT", D("200.5"), AS_OF,
                      {"A": D(50), "C": D(-50)})
    assert not await oms.book_transfer(repeat)  # a transfer id is booked once
    assert held(oms) == {("A", "MSFT"): D(50), ("C", "MSFT"): D(-50)}


async def test_fills_split_exactly_across_sleeves_and_survive_a_restart(
        make: MakeOms, broker: RecordingBroker, store: OrderStore) -> None:
    oms = await make(broker, fund("A", "B"))
    reply = await oms.rebalance(target({"A": {"AAPL": "100"}, "B": {"AAPL": "-60"}}))
    oid = report_of(reply).orders["AAPL"]
    await fill(oms, oid, "t1", "10", "100.5", "0.40")
    assert held(oms) == {("A", "AAPL"): D(25), ("B", "AAPL"): D(-15)}
    await fill(oms, oid, "t2", "3", "100.5")
    assert held(oms) == {("A", "AAPL"): D(32), ("B", "AAPL"): D(-19)}
    await fill(oms, oid, "t3", "27", "99.75")
    assert held(oms) == {("A", "AAPL"): D(100), ("B", "AAPL"): D(-60)}
    assert oms.positions("f1") == {"AAPL": D(40)}
    current = oms.sleeve_holdings("f1")  # what a composer starts from
    assert current is not None and current.sleeves == {"A": {"AAPL": D(100)},
                                                       "B": {"AAPL": D(-60)}}
    st = await oms.load_order(oid)
    assert st is not None and st.status is OrderStatus.FILLED
    a = oms.sleeve_positions("f1")["A"]["AAPL"]
    b = oms.sleeve_positions("f1")["B"]["AAPL"]
    assert a.avg_cost == (32 * D("100.5") + 68 * D("99.75")) / 100 == D("99.99")
    assert b.avg_cost == (19 * D("100.5") + 41 * D("99.75")) / 60 == D("99.9875")
    # the commission of t1 (0.40) is split 25:15 and booked as each sleeve's realized loss
    assert (a.realized_pnl, b.realized_pnl) == (D("-0.25"), D("-0.15"))
    credited = [(f.trade_id, f.side, f.quantity, f.commission)
                for f in await store.fills_for("f1", "B", "AAPL")]
    assert credited == [("t1", Side.SELL, D(15), D("0.15")), ("t2", Side.SELL, D(4), D(0)),
                        ("t3", Side.SELL, D(41), D(0))]
    # a bust replays each sleeve from what stands
    await oms.bust(oid, "t2")
    assert held(oms) == {("A", "AAPL"): D(93), ("B", "AAPL"): D(-56)}
    # a correction splits the trade again over what the other fills left: t3 27 -> 20
    # credits A 75 x 20/30 = 50 and B -30 (A 25 + 50, B -15 - 30)
    t3 = next(f for f in await store.fills(oid) if f.trade_id == "t3")
    await oms.correct(t3.model_copy(update={"quantity": D(20)}))
    assert held(oms) == {("A", "AAPL"): D(75), ("B", "AAPL"): D(-45)}
    await oms.stop()
    again = await make(broker, fund("A", "B"))
    assert held(again) == {("A", "AAPL"): D(75), ("B", "AAPL"): D(-45)}
    stored = {(s, sym): p.quantity for _f, s, sym, p in await store.positions("f1")}
    assert stored == {("A", "AAPL"): D(75), ("B", "AAPL"): D(-45)}
    assert [(f.trade_id, f.quantity) for f in await store.fills_for("f1", "B", "AAPL")] == [
        ("t1", D(15)), ("t3", D(30))]


async def test_a_halted_strategy_leaves_only_its_share_of_open_orders(
        make: MakeOms, broker: RecordingBroker) -> None:
    oms = await make(broker, fund("A", "B", "C"))
    oms.set_price("MSFT", D(200))
    oms.set_price("IBM", D(150))
    reply = await oms.rebalance(target({"A": {"AAPL": "30"}, "B": {"AAPL": "20", "MSFT": "10"},
                                        "C": {"IBM": "5"}}))
    orders = report_of(reply).orders
    await fill(oms, orders["AAPL"], "t1", "10", "100")  # A +6, B +4
    halt = await oms.halt("strategy", "B", reason="model broke")
    assert halt.ok
    await oms.killswitch.settle()
    aapl = await oms.load_order(orders["AAPL"])
    msft = await oms.load_order(orders["MSFT"])
    ibm = await oms.load_order(orders["IBM"])
    assert aapl is not None and msft is not None and ibm is not None
    # B keeps the 4 it was credited; its 16 still to buy leave the order: 50 -> 34
    assert (aapl.status, aapl.quantity, aapl.order.sleeves) == (
        OrderStatus.PARTIALLY_FILLED, D(34), {"A": D(30), "B": D(4)})
    assert broker.replaced[-1].quantity == D(34)
    assert msft.status is OrderStatus.CANCELED  # B's alone
    assert ibm.status is OrderStatus.ACCEPTED  # C is untouched
    await fill(oms, orders["AAPL"], "t2", "24", "101")
    assert held(oms) == {("A", "AAPL"): D(30), ("B", "AAPL"): D(4)}
    # a target that still lists B is refused for B's orders by the gates (B's AAPL target
    # is 0 now: it would sell its 4)
    later = await oms.rebalance(target({"B": {"MSFT": "10"}}, AS_OF + dt.timedelta(days=1)))
    assert not later.ok and later.code is ReplyCode.TRADING_HALTED
    assert report_of(later).refused == {"AAPL": ReplyCode.TRADING_HALTED,
                                        "MSFT": ReplyCode.TRADING_HALTED}


async def test_a_halt_never_turns_a_crossed_order_around(
        make: MakeOms, broker: RecordingBroker) -> None:
    oms = await make(broker, fund("A", "B"))
    reply = await oms.rebalance(target({"A": {"AAPL": "100"}, "B": {"AAPL": "-60"}}))
    oid = report_of(reply).orders["AAPL"]
    await oms.halt("strategy", "B", reason="stop")  # without B's sell the order would grow
    await oms.killswitch.settle()
    st = await oms.load_order(oid)
    assert st is not None and st.status is OrderStatus.CANCELED and not broker.replaced


async def test_a_strategy_removed_from_the_fund_is_withdrawn(
        make: MakeOms, broker: RecordingBroker) -> None:
    oms = await make(broker, fund("A", "B"))
    reply = await oms.rebalance(target({"A": {"AAPL": "30"}, "B": {"AAPL": "20"}}))
    oid = report_of(reply).orders["AAPL"]
    done = await oms.update_fund(fund("A"))
    assert [w.reduced for w in done] == [[oid]]
    st = await oms.load_order(oid)
    assert st is not None and (st.quantity, st.order.sleeves) == (D(30), {"A": D(30)})


async def test_the_permissions_gate_checks_every_sleeve(
        make: MakeOms, broker: RecordingBroker) -> None:
    oms = await make(broker, fund("A", "B"))
    ok = await oms.rebalance(target({"A": {"AAPL": "3"}, "B": {"AAPL": "2"}}))
    assert ok.ok
    denied = await oms.rebalance(target({"A": {"MSFT": "3"}, "X": {"MSFT": "2"}},
                                        AS_OF + dt.timedelta(hours=1)))
    assert not denied.ok and denied.code is ReplyCode.STRATEGY_NOT_ALLOWED
    assert denied.context["strategy_id"] == "X" and "sleeve X" in (denied.message or "")
    assert len(broker.new_orders) == 1  # nothing of the refused target was sent
    direct = await oms.submit(Order(
        idempotency_key="d1", fund_id="f1", strategy_id=MULTI_SLEEVE_STRATEGY,
        instrument=Equity(symbol="IBM"), side=Side.BUY, quantity=D(5),
        sleeves={"A": D(8), "X": D(-3)}))
    assert direct.code is ReplyCode.STRATEGY_NOT_ALLOWED
    assert direct.denial is not None and direct.denial.context["strategy_id"] == "X"


async def test_malformed_and_fuzzed_targets_get_coded_replies(
        make: MakeOms, broker: RecordingBroker) -> None:
    oms = await make(broker, fund("A", "B"))
    rng = random.Random(5)
    names = ["A", "B", "X", "", "a/b", "." * 3]
    numbers = ["1", "-7", "0", "1e14", "-999999999999999", "0.5", "1E-13", "NaN", 3.5, True,
               None, "10" * 40]
    codes: set[str] = set()
    for i in range(150):
        sleeves = {rng.choice(names): {rng.choice(["AAPL", "MSFT", "^X", "b d"]):
                                       rng.choice(numbers) for _ in range(rng.randint(0, 3))}
                   for _ in range(rng.randint(0, 3))}
        fund_id = rng.choice(["f1", "f1", "f1", "nope"])
        data = {"fund_id": fund_id, "as_of": AS_OF.isoformat(),
                "weights": {}, "allocation": {"fund_id": fund_id,
                                              "as_of": (AS_OF + dt.timedelta(minutes=i))
                                              .isoformat(), "sleeves": sleeves}}
        try:
            t = parse_message(TargetPortfolio, data)
        except ValidationFailed as exc:  # what the service answers before the OMS is asked
            assert exc.context["errors"][0]["field"]
            codes.add("VALIDATION_FAILED")
            continue
        reply = await oms.rebalance(t)
        assert reply.ok or reply.code not in {None, ReplyCode.INTERNAL_ERROR}, reply
        codes.add(reply.code.value if reply.code else "ok")
    built = TargetPortfolio.model_construct(fund_id="f1", as_of=AS_OF,
                                            weights={"AAPL": "x"})  # type: ignore[dict-item]
    bad = await oms.rebalance(built)
    assert bad.code is ReplyCode.VALIDATION_FAILED
    assert str(bad.context["field"]).startswith("weights")
    huge = await oms.rebalance(target({"A": {"AAPL": "999999999999999"},
                                       "B": {"AAPL": "-999999999999999"}}))
    assert huge.code is ReplyCode.VALIDATION_FAILED
    assert {"VALIDATION_FAILED", "ok", "STRATEGY_NOT_ALLOWED", "FUND_NOT_FOUND"} <= codes


@pytest.mark.integration
async def test_migration_6_credits_earlier_fills_to_their_orders_strategy(
        pg_store: Store) -> None:
    """Fills stored before sleeve ownership belong wholly to their order's strategy: the
    migration copies them into sleeve_fills, signed, so a later bust replays them."""
    async with pg_store.pool.acquire() as conn:
        await conn.execute("DROP TABLE sleeve_fills, sleeve_transfers; "
                           "DELETE FROM schema_migrations WHERE version = 6")
        await conn.execute(
            "INSERT INTO fills (trade_id, order_id, fund_id, strategy_id, symbol, side, "
            "quantity, price, commission, ts) VALUES "
            "('t1', 'o1', 'f1', 's1', 'AAPL', 'sell', 7, 101.5, 0.25, now())")
    assert await pg_store.migrate() == [6]
    [f] = await pg_store.fills_for("f1", "s1", "AAPL")
    assert (f.trade_id, f.side, f.quantity, f.price, f.commission) == (
        "t1", Side.SELL, D(7), D("101.5"), D("0.25"))


async def test_a_reducing_strategy_leaves_the_shares_that_add_to_its_sleeve(
        make: MakeOms, broker: RecordingBroker) -> None:
    """Strategy-scope REDUCING reaches the orders A shares with B: A's buy of more AAPL (it
    holds 100) leaves the order, B's half stays; A's sell of 40 of its 100 MSFT only reduces
    A and stays; A's IBM sell short (it holds none) would leave B's buy larger without it,
    so that order is canceled whole. A's own order is the REDUCING sweep's, as before."""
    oms = await make(broker, fund("A", "B"))
    for sym, px in (("MSFT", 200), ("IBM", 150)):
        oms.set_price(sym, D(px))
    first = report_of(await oms.rebalance(target({"A": {"AAPL": "100", "MSFT": "100"}})))
    for n, (_sym, oid) in enumerate(sorted(first.orders.items())):
        await fill(oms, oid, f"t{n}", "100", "100")
    assert held(oms) == {("A", "AAPL"): D(100), ("A", "MSFT"): D(100)}
    later = AS_OF + dt.timedelta(days=1)
    second = report_of(await oms.rebalance(target(
        {"A": {"AAPL": "150", "MSFT": "60", "IBM": "-30"},
         "B": {"AAPL": "50", "MSFT": "100", "IBM": "50"}}, later)))
    orders = second.orders
    aapl = await oms.load_order(orders["AAPL"])
    assert aapl is not None and aapl.order.sleeves == {"A": D(50), "B": D(50)}
    reply = await oms.set_trading_state(make_command("strategy", "A", TradingState.REDUCING,
                                                     "risk", "drawdown"))
    assert reply.ok and reply.context["applied"], reply
    await oms.killswitch.settle()
    aapl, msft, ibm = [await oms.load_order(orders[s]) for s in ("AAPL", "MSFT", "IBM")]
    assert aapl is not None and msft is not None and ibm is not None
    # A's 50 more AAPL leave the order; B's 50 stay working
    assert (aapl.status, aapl.quantity, aapl.order.sleeves) == (
        OrderStatus.ACCEPTED, D(50), {"B": D(50)})
    assert [(r.order_id, r.quantity) for r in broker.replaced] == [(orders["AAPL"], D(50))]
    # A's sell of 40 of its 100 MSFT only reduces A: untouched
    assert (msft.status, msft.quantity, msft.order.sleeves) == (
        OrderStatus.ACCEPTED, D(60), {"A": D(-40), "B": D(100)})
    # without A's short the IBM order would grow from 20 to 50: canceled whole
    assert ibm.status is OrderStatus.CANCELED
    # the state held: a fresh OMS on the same store withdraws nothing more
    await oms.stop()
    again = await make(broker, fund("A", "B"))
    msft_again = await again.load_order(orders["MSFT"])
    assert msft_again is not None and msft_again.status is OrderStatus.ACCEPTED
    assert len(broker.replaced) == 1


async def test_a_strategy_reducing_at_start_is_withdrawn_from_shared_orders(
        make: MakeOms, broker: RecordingBroker, store: OrderStore) -> None:
    """A REDUCING stored while no OMS ran the withdrawal (a crash just after the change) is
    finished at the next start."""
    oms = await make(broker, fund("A", "B"))
    orders = report_of(await oms.rebalance(target({"A": {"AAPL": "30"},
                                                   "B": {"AAPL": "20"}}))).orders
    oms.killswitch.on_strategy_reduce = None  # the process dies before it withdraws
    assert (await oms.set_trading_state(make_command("strategy", "A", TradingState.REDUCING,
                                                     "risk", "limit"))).ok
    await oms.killswitch.settle()
    st = await oms.load_order(orders["AAPL"])
    assert st is not None and st.quantity == D(50)
    await oms.stop()
    again = await make(broker, fund("A", "B"), store=store)
    st = await again.load_order(orders["AAPL"])
    assert st is not None and (st.quantity, st.order.sleeves) == (D(20), {"B": D(20)})
