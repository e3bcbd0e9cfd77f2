"""The paper-trading loop in one process (issue #20): a broker's rejection reaches the reply
(code and reason, in ``context`` too, also for a duplicate), the OMS's prices reach a paper
venue in the same process, and a rebalance is identified by strategy, fund and ``as_of`` - on
both rebalance paths, on the in-memory store and on PostgreSQL.

The tests with a real ``PaperClient`` skip, saying why, where mts1b-brokers is not installed
(the OMS does not depend on it)."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from mts1b_foundation import (
    Bar,
    ExecType,
    ExecutionReport,
    Order,
    OrderStatus,
    RebalanceReport,
    ReplyCode,
    SleeveAllocation,
    TargetPortfolio,
    ValidationFailed,
    parse_message,
)
from mts1b_oms.oms import REJECT_CODE_KEY, REJECT_REASON_KEY, MarkSink, Oms
from mts1b_oms.orderstore import OrderStore
from mts1b_oms.rebalance import rebalance_key
from mts1b_oms.testing import RecordingBroker, make_fund, make_order

if TYPE_CHECKING:
    from conftest import MakeOms

D = Decimal
AS_OF = dt.datetime(2026, 12, 4, 21, 0, tzinfo=dt.UTC)


def paper(**kw: Any) -> Any:
    """A real paper venue (``mts1b_brokers.PaperClient``), or a skip naming why not."""
    brokers = pytest.importorskip(
        "mts1b_brokers", reason="mts1b-brokers is not installed: the OMS does not depend on "
                                "it; install it (-e ../mts1b-brokers) for the paper tests")
    return brokers.PaperClient(**kw)


async def started(make: MakeOms, venue: Any, **kw: Any) -> Oms:
    await venue.connect()
    oms: Oms = await make(venue, make_fund(), **kw)
    return oms


# --- 1. a broker's rejection in the reply ------------------------------------------------------


async def test_a_broker_rejection_reply_carries_the_brokers_code_and_reason(
        make: MakeOms) -> None:
    venue = paper(accounts={"acc1": "500"})  # 10 AAPL at 100 need 1,000
    oms = await started(make, venue)
    reply = await oms.submit(make_order("k1"))
    assert not reply.ok and reply.status is OrderStatus.REJECTED
    assert reply.code is ReplyCode.INSUFFICIENT_BUYING_POWER
    assert reply.context[REJECT_CODE_KEY] == "INSUFFICIENT_BUYING_POWER"
    reason = reply.context[REJECT_REASON_KEY]
    assert isinstance(reason, str) and "buying power" in reason
    assert reply.message == reason and reply.venue_code == "INSUFFICIENT_BUYING_POWER"
    assert "Traceback" not in reason and "Error" not in reason


async def test_a_duplicate_of_a_rejected_order_carries_the_same_code_and_reason(
        make: MakeOms) -> None:
    """A repeat that arrives while the first send is with the broker waits for it and gets
    that order back (``duplicate=True``) with the broker's code and reason, not a bare
    "rejected by the broker"."""
    venue = paper(accounts={"acc1": "500"})
    oms = await started(make, venue)
    gate = asyncio.Event()
    submit = venue.submit

    async def slow_submit(order: Order) -> ExecutionReport:
        await gate.wait()
        report: ExecutionReport = await submit(order)
        return report

    venue.submit = slow_submit
    first = asyncio.create_task(oms.submit(make_order("k1")))
    await asyncio.sleep(0.2)  # the first holds the key and waits at the venue
    repeat = asyncio.create_task(oms.submit(make_order("k1")))
    await asyncio.sleep(0.2)
    gate.set()
    one, two = await asyncio.gather(first, repeat)
    assert not one.ok and not one.duplicate and two.duplicate
    assert two.order_id == one.order_id and two.status is OrderStatus.REJECTED
    assert two.code is one.code is ReplyCode.INSUFFICIENT_BUYING_POWER
    assert two.message == one.message and two.venue_code == one.venue_code
    assert two.context == one.context
    assert two.context[REJECT_CODE_KEY] == "INSUFFICIENT_BUYING_POWER"


async def test_a_retry_after_the_cause_is_fixed_makes_a_new_order_not_a_stale_duplicate(
        make: MakeOms) -> None:
    venue = paper(accounts={"acc1": "1000000"})
    oms = await started(make, venue)
    venue.halt("AAPL")
    refused = await oms.submit(make_order("k1"))
    assert refused.code is ReplyCode.INSTRUMENT_CLOSED
    assert refused.context[REJECT_CODE_KEY] == "INSTRUMENT_CLOSED"
    venue.resume("AAPL")
    again = await oms.submit(make_order("k1"))
    assert again.ok and not again.duplicate and again.status is OrderStatus.ACCEPTED
    assert again.order_id != refused.order_id
    assert again.context == {"previous_order_id": refused.order_id}


async def test_a_retry_that_is_rejected_again_keeps_both_the_link_and_the_reason(
        make: MakeOms) -> None:
    venue = paper(accounts={"acc1": "500"})
    oms = await started(make, venue)
    first = await oms.submit(make_order("k1"))
    second = await oms.submit(make_order("k1"))
    assert second.context["previous_order_id"] == first.order_id
    assert second.context[REJECT_CODE_KEY] == "INSUFFICIENT_BUYING_POWER"


async def test_a_transport_failure_reply_names_no_venue_text(make: MakeOms) -> None:
    venue = paper(accounts={"acc1": "1000000"})
    oms = await started(make, venue)
    await venue.close()  # the venue is unreachable: the request never reached it
    reply = await oms.submit(make_order("k1"))
    assert reply.code is ReplyCode.BROKER_TRANSPORT_ERROR and reply.venue_code is None
    assert reply.venue_message is None
    assert reply.context[REJECT_CODE_KEY] == "BROKER_TRANSPORT_ERROR"
    assert str(reply.context[REJECT_REASON_KEY]).startswith("transport: ")


async def test_a_replace_the_broker_refuses_carries_its_code_in_context(
        make: MakeOms) -> None:
    broker = RecordingBroker()
    oms = await make(broker)
    placed = await oms.submit(make_order("k1"))
    assert placed.ok and placed.order_id
    st = await oms.load_order(placed.order_id)
    assert st is not None
    refusal = ExecutionReport(broker="paper", account_id="acc1", order_id=placed.order_id,
                              exec_type=ExecType.REPLACE_REJECT, ts=dt.datetime.now(dt.UTC),
                              reason="TOO_LATE_TO_REPLACE: order is filling",
                              venue_code="TOO_LATE", venue_message="order is filling")

    async def refuse(order_id: str, **_kw: object) -> ExecutionReport:
        return refusal

    broker.replace = refuse  # type: ignore[method-assign]
    from mts1b_foundation import ReplaceRequest

    reply = await oms.replace(ReplaceRequest(order_id=placed.order_id, quantity=D(5)))
    assert not reply.ok
    assert reply.context == {REJECT_CODE_KEY: "TOO_LATE", REJECT_REASON_KEY: "order is filling"}


# --- 2. Oms.set_price reaches a paper venue in the same process --------------------------------


async def test_the_oms_price_reaches_a_paper_venue_and_a_later_bar_fills_the_order(
        make: MakeOms) -> None:
    """Before issue #20 every market order came back NO_REFERENCE_PRICE: the venue had seen
    no market data, and the OMS's price did not reach it."""
    venue = paper(accounts={"acc1": "1000000"})
    assert isinstance(venue, MarkSink)  # duck typing: the OMS imports no broker
    venue = paper(accounts={"acc1": "1000000"})
    oms = await started(make, venue)  # make() sets the OMS's AAPL price: 100
    reply = await oms.submit(make_order("k1"))
    assert reply.ok and reply.status is OrderStatus.ACCEPTED, reply
    account = await venue.account("acc1")
    assert account.buying_power == D(1_000_000) - D(10) * D(100)  # reserved at the mark
    ts = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    reports = await venue.on_bar(Bar(symbol="AAPL", ts=ts, open=D(101), high=D(102),
                                     low=D(100), close=D(101), volume=D(1_000)))
    for report in reports:
        await oms.on_execution_report(report)
    assert oms.positions("f1") == {"AAPL": D(10)}
    st = await oms.load_order(reply.order_id or "")
    assert st is not None and st.status is OrderStatus.FILLED


async def test_a_bar_wins_over_the_oms_mark(make: MakeOms) -> None:
    venue = paper(accounts={"acc1": "1500"})
    oms = await started(make, venue)
    ts = dt.datetime.now(dt.UTC)
    await venue.on_bar(Bar(symbol="AAPL", ts=ts, open=D(200), high=D(200), low=D(200),
                           close=D(200), volume=D(1_000)))
    oms.set_price("AAPL", D(100))  # the OMS's price does not override the venue's market
    reply = await oms.submit(make_order("k1"))  # 10 at the bar's 200 need 2,000 > 1,500
    assert reply.code is ReplyCode.INSUFFICIENT_BUYING_POWER, reply


async def test_set_price_refuses_a_price_that_is_no_positive_number(make: MakeOms) -> None:
    oms = await make(RecordingBroker())
    for bad in (D(0), D(-1), D("NaN"), 100):
        with pytest.raises(ValidationFailed) as info:
            oms.set_price("AAPL", bad)
        assert info.value.context["field"] == "price"
        assert repr(bad) in str(info.value.context["value"])
    assert oms.prices["AAPL"] == D(100)


async def test_a_broker_without_marks_is_left_alone(make: MakeOms) -> None:
    broker = RecordingBroker()
    assert not isinstance(broker, MarkSink)
    oms = await make(broker)
    oms.set_price("MSFT", D(250))
    assert oms.prices["MSFT"] == D(250)


async def test_at_start_a_fill_made_while_no_oms_listened_is_taken_in(make: MakeOms) -> None:
    """The paper service outlives the OMS and fills on bars meanwhile (issue #20); the next
    OMS takes the fill in from ``order_status`` when it is the only one it missed, and raises
    an alert, changing nothing, when more were missed (one report cannot rebuild them)."""
    venue = paper(accounts={"acc1": "1000000"}, participation_rate="0.1")
    oms = await started(make, venue)  # reports not consumed: as if no OMS listened
    one = await oms.submit(make_order("k1"))
    two = await oms.submit(make_order("k2").model_copy(update={"time_in_force": "GTC"}))
    ts = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    for i, volume in enumerate(("100", "50", "50")):  # k1 fills in one trade, k2 in two
        await venue.on_bar(Bar(symbol="AAPL", ts=ts + dt.timedelta(minutes=i), open=D(101),
                               high=D(101), low=D(101), close=D(101), volume=D(volume)))
    assert await oms.catch_up() == 1
    st = await oms.load_order(one.order_id or "")
    assert st is not None and st.status is OrderStatus.FILLED
    left = await oms.load_order(two.order_id or "")
    assert left is not None and left.status is OrderStatus.ACCEPTED
    assert any(two.order_id in a.text and "missed" in a.text for a in oms.alerts)
    assert await oms.catch_up() == 0  # nothing new: nothing applied twice


# --- 4. a rebalance is identified by strategy, fund and as_of ----------------------------------


def weights_target(as_of: dt.datetime, *, source: str | None = None,
                   weight: str = "0.001") -> TargetPortfolio:
    return TargetPortfolio(fund_id="f1", as_of=as_of, weights={"AAPL": D(weight)},
                           nav=D(1_000_000), sources=[source] if source else [])


def composed_target(as_of: dt.datetime, shares: str = "10") -> TargetPortfolio:
    alloc = SleeveAllocation(fund_id="f1", as_of=as_of, sleeves={"A": {"AAPL": D(shares)}})
    return TargetPortfolio(fund_id="f1", as_of=as_of, weights={}, allocation=alloc)


def orders_of(reply: Any) -> dict[str, str]:
    assert reply.payload is not None, reply
    return parse_message(RebalanceReport, reply.payload).orders


@pytest.mark.parametrize("kind", ["weights", "composed"])
async def test_a_repeat_is_a_duplicate_and_a_new_as_of_makes_new_orders(
        make: MakeOms, broker: RecordingBroker, kind: str) -> None:
    build = weights_target if kind == "weights" else composed_target
    oms = await make(broker)
    first = await oms.rebalance(build(AS_OF))
    assert first.ok and first.context["repeated"] == 0, first
    again = await oms.rebalance(build(AS_OF))
    assert orders_of(again) == orders_of(first) and again.context["repeated"] == 1
    assert len(broker.new_orders) == 1
    # a new rebalance in the same second: before issue #20 the weights path's keys kept
    # whole seconds, so it was taken for a repeat of the first
    later = await oms.rebalance(build(AS_OF + dt.timedelta(microseconds=1)))
    assert later.ok and later.context["repeated"] == 0
    assert orders_of(later)["AAPL"] != orders_of(first)["AAPL"]
    assert len(broker.new_orders) == 2


@pytest.mark.parametrize("kind", ["weights", "composed"])
async def test_a_repeat_after_a_partial_fill_is_still_a_duplicate(
        make: MakeOms, broker: RecordingBroker, store: OrderStore, kind: str) -> None:
    """The repeat works the delta out again from positions a fill has moved; the order the
    first run placed is still that rebalance's order - no conflict, no second order."""
    build = weights_target if kind == "weights" else composed_target
    oms = await make(broker)
    first = await oms.rebalance(build(AS_OF))
    oid = orders_of(first)["AAPL"]
    await oms.on_execution_report(ExecutionReport(
        broker="paper", account_id="acc1", order_id=oid, exec_type=ExecType.PARTIAL_FILL,
        ts=dt.datetime.now(dt.UTC), trade_id="t1", symbol="AAPL", side="buy",
        last_quantity=D(4), last_price=D(100)))
    again = await oms.rebalance(build(AS_OF))
    assert again.ok, again
    assert orders_of(again) == {"AAPL": oid} and again.context["repeated"] == 1
    assert len(broker.new_orders) == 1


async def test_the_weights_path_tells_strategies_apart(
        make: MakeOms, broker: RecordingBroker) -> None:
    oms = await make(broker)
    a = await oms.rebalance(weights_target(AS_OF, source="A"))
    b = await oms.rebalance(weights_target(AS_OF, source="B", weight="0.002"))
    assert a.ok and b.ok and orders_of(a)["AAPL"] != orders_of(b)["AAPL"]
    assert b.context["repeated"] == 0


def test_rebalance_keys_name_the_strategy_fund_and_time() -> None:
    assert rebalance_key("f1", "A", AS_OF, "AAPL") == "rb-f1-A-20261204T210000-AAPL"
    micro = AS_OF + dt.timedelta(microseconds=5)
    assert rebalance_key("f1", "A", micro, "AAPL") == "rb-f1-A-20261204T210000.000005-AAPL"
    other_zone = AS_OF.astimezone(dt.timezone(dt.timedelta(hours=-5)))
    assert rebalance_key("f1", "A", other_zone, "AAPL") == rebalance_key("f1", "A", AS_OF,
                                                                         "AAPL")
    long_ids = rebalance_key("f" * 100, "s" * 100, AS_OF, "AAPL")
    assert long_ids.startswith("rb-") and len(long_ids) <= 128
    assert long_ids != rebalance_key("f" * 100, "s" * 99, AS_OF, "AAPL")
