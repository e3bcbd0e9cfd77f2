"""A cancel-replace runs through the pre-trade gates (both stores).

Reproduced before: ``Oms.replace`` wrote ``replace_requested`` and called the broker without a
gate, so a replace took an order to 1,000,001 units, off the lot or the tick, outside the
collar, beyond the position cap, and did so while the fund was HALTED or REDUCING. A replace is
now judged as the order it would make - its new quantity and prices against the registry and
the fund's limits, with the order's own open quantity replaced in the book rather than added -
and refused with the code a submit of those terms would get. A refused replace reaches no
broker and leaves the order, its events and the book's open quantities as they were.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from mts1b_foundation import (
    BrokerRejected,
    BrokerUnknownOutcome,
    Equity,
    ExecType,
    ExecutionReport,
    FundConfig,
    Order,
    OrderStatus,
    OrderType,
    ReplaceRequest,
    ReplyCode,
    Side,
    TradingState,
)
from mts1b_oms.instruments import InstrumentRegistry
from mts1b_oms.memstore import InMemoryStore
from mts1b_oms.oms import Oms
from mts1b_oms.orderstore import OrderStore
from mts1b_oms.state import OrderState
from mts1b_oms.testing import RecordingBroker, make_fund, make_registry
from mts1b_oms.testing import make_order as market
from mts1b_oms.tradingstate import make_change, make_command

if TYPE_CHECKING:
    from conftest import MakeOms

D = Decimal
S = OrderStatus
R = ReplyCode


def fund(**risk: Any) -> FundConfig:
    """NAV 1,000,000; at AAPL's reference 100 a position cap of 1 % is 100 shares."""
    return make_fund(**{"max_order_quantity": D(1_000_000), "price_collar_pct": D("0.05"),
                        "max_position_pct_nav": D("0.01"), **risk})


def limit(key: str, qty: str, price: str, side: Side = Side.BUY) -> Order:
    return Order(idempotency_key=key, fund_id="f1", strategy_id="s1",
                 instrument=Equity(symbol="AAPL"), side=side, quantity=D(qty),
                 order_type=OrderType.LIMIT, limit_price=D(price))


def book(oms: Oms) -> tuple[dict[str, Decimal], dict[str, Decimal], dict[str, Decimal]]:
    """The fund's open buy and sell quantities and positions as the gates read them."""
    ctx = oms.gate_context(oms.funds["f1"], dt.datetime.now(dt.UTC))
    return dict(ctx.open_buy), dict(ctx.open_sell), dict(ctx.positions)


def halt_in_memory(oms: Oms) -> None:
    """HALTED in force before its sweep has canceled the order (the sweep runs after the
    reply, in the background): the order is still working when the replace arrives."""
    oms.apply_state_change(make_change("fund", "f1", TradingState.HALTED, "operator", "halt",
                                       dt.datetime.now(dt.UTC)))


def stricter_registry(oms: Oms) -> None:
    """The registry now says AAPL trades in lots of 10 (a restart with a new file)."""
    oms.instruments = InstrumentRegistry([Equity(symbol="AAPL", lot_size=D(10))])


async def assert_refused(oms: Oms, store: OrderStore, broker: RecordingBroker, order_id: str,
                         request: ReplaceRequest, code: ReplyCode, gate: str) -> None:
    """The replace is refused with ``code`` (from ``gate``), no replace reached the broker,
    and the order, its events and the book are exactly as before."""
    stored, events, held = (await store.load_order(order_id), await store.events(order_id),
                            book(oms))
    reply = await oms.replace(request)
    assert not reply.ok and reply.code is code, reply
    assert reply.order_id == order_id and reply.status is S.ACCEPTED
    assert reply.denial is not None and reply.denial.gate == gate
    assert broker.replace_requests == []
    assert await store.load_order(order_id) == stored
    assert await store.events(order_id) == events
    assert book(oms) == held


REFUSED: list[tuple[str, dict[str, str], Callable[[Oms], None] | None, ReplyCode, str]] = [
    ("1,000,001 units", {"quantity": "1000001"}, None, R.QUANTITY_EXCEEDS_MAXIMUM,
     "order_size"),
    ("off the lot", {"quantity": "50.5"}, None, R.LOT_SIZE, "instrument"),
    ("off the tick", {"limit_price": "100.005"}, None, R.TICK_SIZE, "instrument"),
    ("above the collar", {"limit_price": "105.01"}, None, R.PRICE_COLLAR, "price_collar"),
    ("below the collar", {"limit_price": "94.99"}, None, R.PRICE_COLLAR, "price_collar"),
    ("beyond the position cap", {"quantity": "101"}, None, R.POSITION_CAP, "position_cap"),
    ("while HALTED, even smaller", {"quantity": "40"}, halt_in_memory, R.TRADING_HALTED,
     "trading_state"),
    ("the registry changed", {"limit_price": "100.01"}, stricter_registry,
     R.INSTRUMENT_MISMATCH, "instrument"),
]


@pytest.mark.parametrize(("terms", "setup", "code", "gate"),
                         [pytest.param(t, s, c, g, id=i) for i, t, s, c, g in REFUSED])
async def test_a_replace_the_gates_refuse_changes_nothing(
        store: OrderStore, broker: RecordingBroker, make: MakeOms, terms: dict[str, str],
        setup: Callable[[Oms], None] | None, code: ReplyCode, gate: str) -> None:
    """A working buy of 50 at 100.00, replaced to terms a submit would be refused: the same
    code, from the same gate, and nothing changes anywhere."""
    oms = await make(broker, fund())
    oid = (await oms.submit(limit("k", "50", "100.00"))).order_id or ""
    assert book(oms) == ({"AAPL": D(50)}, {}, {})
    if setup is not None:
        setup(oms)
    await assert_refused(oms, store, broker, oid,
                         ReplaceRequest(order_id=oid, **{k: D(v) for k, v in terms.items()}),
                         code, gate)
    assert book(oms) == ({"AAPL": D(50)}, {}, {})


async def test_the_order_s_own_open_quantity_is_replaced_not_added(
        store: OrderStore, broker: RecordingBroker, make: MakeOms) -> None:
    """Buy 50 against a cap of 100 shares: a replace to 100 is exactly at the cap (counted on
    top of the order's own 50 it would be 150), and afterwards the book holds 100 - the order
    once."""
    oms = await make(broker, fund())
    oid = (await oms.submit(limit("k", "50", "100.00"))).order_id or ""
    reply = await oms.replace(ReplaceRequest(order_id=oid, quantity=D(100)))
    assert reply.ok and reply.status is S.ACCEPTED, reply
    assert broker.replace_requests == [oid] and broker.orders[oid].quantity == D(100)
    assert (await store.load_order(oid)).quantity == D(100)  # type: ignore[union-attr]
    assert book(oms) == ({"AAPL": D(100)}, {}, {})
    # the room is used up: one more share by submit or by replace is over the cap
    assert (await oms.submit(limit("one", "1", "100.00"))).code is R.POSITION_CAP
    again = await oms.replace(ReplaceRequest(order_id=oid, quantity=D(101)))
    assert again.code is R.POSITION_CAP and broker.replace_requests == [oid]
    assert book(oms) == ({"AAPL": D(100)}, {}, {})


async def test_while_reducing_a_replace_that_adds_risk_is_refused_one_that_reduces_is_not(
        store: OrderStore, make: MakeOms) -> None:
    """Long 100 with a working sell of 40, fund REDUCING: a replace of the sell to 101 would
    turn the long into a short (refused, ``TRADING_STATE_REDUCING``); one to 100 closes the
    long exactly (allowed: the sell's 40 are replaced, not added to the 100)."""
    venue = RecordingBroker(fill_price="100")
    oms = await make(venue, fund(max_position_pct_nav="unlimited"))
    assert (await oms.submit(market("long", "100"))).status is S.FILLED
    venue.fill_price = None
    sell = (await oms.submit(limit("sell", "40", "100.00", Side.SELL))).order_id or ""
    state = await oms.set_trading_state(
        make_command("fund", "f1", TradingState.REDUCING, "risk", "reduce"))
    assert state.ok and state.context["outstanding"] == 0  # the sell reduces: it stays
    await oms.killswitch.settle()
    assert book(oms) == ({}, {"AAPL": D(40)}, {"AAPL": D(100)})
    await assert_refused(oms, store, venue, sell,
                         ReplaceRequest(order_id=sell, quantity=D(101)),
                         R.TRADING_STATE_REDUCING, "trading_state")
    reply = await oms.replace(ReplaceRequest(order_id=sell, quantity=D(100)))
    assert reply.ok and reply.status is S.ACCEPTED, reply
    assert venue.replace_requests == [sell] and venue.orders[sell].quantity == D(100)
    assert book(oms) == ({}, {"AAPL": D(100)}, {"AAPL": D(100)})


class UnknownReplace(RecordingBroker):
    """A venue whose answer to a replace never comes back (the OMS cannot know whether it
    took)."""

    async def replace(self, order_id: str, *, quantity: Decimal | None = None,
                      limit_price: Decimal | None = None,
                      stop_price: Decimal | None = None) -> ExecutionReport:
        self.replace_requests.append(order_id)
        raise BrokerUnknownOutcome("timed out", order_id=order_id)


async def test_a_pending_replace_holds_the_larger_quantity_until_the_venue_answers(
        store: OrderStore, make: MakeOms) -> None:
    """Until the venue says whether a replace of 50 to 100 took, the book counts 100 (the
    venue may work either): another share is refused by the cap. When the venue refuses the
    replace the book counts 50 again, exactly."""
    venue = UnknownReplace()
    oms = await make(venue, fund())
    oid = (await oms.submit(limit("k", "50", "100.00"))).order_id or ""
    reply = await oms.replace(ReplaceRequest(order_id=oid, quantity=D(100)))
    assert reply.ok and reply.status is S.PENDING_REPLACE, reply
    assert book(oms) == ({"AAPL": D(100)}, {}, {})
    assert (await oms.submit(limit("one", "1", "100.00"))).code is R.POSITION_CAP
    await oms.on_execution_report(ExecutionReport(
        broker="paper", account_id="acc1", order_id=oid, exec_type=ExecType.REPLACE_REJECT,
        ts=dt.datetime.now(dt.UTC), reason="too late"))
    st = await store.load_order(oid)
    assert st is not None and st.status is S.ACCEPTED and st.quantity == D(50)
    assert book(oms) == ({"AAPL": D(50)}, {}, {})
    assert (await oms.submit(limit("fifty", "50", "100.00"))).ok


async def test_a_replace_and_a_submit_at_once_cannot_both_take_the_last_room(
        store: OrderStore, broker: RecordingBroker, make: MakeOms) -> None:
    """Buy 50 working, cap 100 shares: a replace to 100 and a new buy of 50 arrive together.
    Each is judged with the other counted (the replace holds its increase from its gates'
    decision on), so exactly one gets through and the book never holds more than 100."""
    oms = await make(broker, fund())
    oid = (await oms.submit(limit("k", "50", "100.00"))).order_id or ""
    replaced, submitted = await asyncio.gather(
        oms.replace(ReplaceRequest(order_id=oid, quantity=D(100))),
        oms.submit(limit("more", "50", "100.00")))
    assert sorted([replaced.ok, submitted.ok]) == [False, True], (replaced, submitted)
    assert R.POSITION_CAP in {replaced.code, submitted.code}
    assert book(oms) == ({"AAPL": D(100)}, {}, {})


class HaltWhileWriting(InMemoryStore):
    """A store during whose write of ``replace_requested`` a halt lands."""

    oms: Oms | None = None

    async def update_order(self, before_sequence: int, state: OrderState,
                           *args: Any, **kw: Any) -> None:
        await super().update_order(before_sequence, state, *args, **kw)
        if state.status is S.PENDING_REPLACE and self.oms is not None:
            halt_in_memory(self.oms)


async def test_a_halt_landing_while_the_replace_is_written_keeps_it_from_the_broker() -> None:
    """The gates passed, then a halt came into force before the broker was called: the
    replace is not sent; it ends ``replace_rejected`` with ``TRADING_HALTED`` and the order
    keeps its terms for the halt's sweep to cancel. In memory: the store is the hook."""
    store, broker = HaltWhileWriting(), RecordingBroker()
    oms = Oms(store, broker, [fund()], instruments=make_registry(), sweep_poll_seconds=None)
    oms.set_price("AAPL", D(100))
    await oms.start(consume_reports=False)
    try:
        oid = (await oms.submit(limit("k", "50", "100.00"))).order_id or ""
        store.oms = oms
        reply = await oms.replace(ReplaceRequest(order_id=oid, quantity=D(60)))
        assert not reply.ok and reply.code is R.TRADING_HALTED, reply
        assert reply.status is S.ACCEPTED and broker.replace_requests == []
        st = await store.load_order(oid)
        assert st is not None and st.quantity == D(50) and st.pending_replace is None
        events = await store.events(oid)
        assert [e["event_type"] for e in events] == [
            "submitted", "accepted", "replace_requested", "replace_rejected"]
        assert events[-1]["code"] == "TRADING_HALTED"
        assert book(oms) == ({"AAPL": D(50)}, {}, {})
    finally:
        await oms.stop()


async def test_bad_replace_input_is_a_coded_refusal(
        store: OrderStore, broker: RecordingBroker, make: MakeOms) -> None:
    """Never an exception, never the broker: an unvalidated request with a NaN or 1E+308,
    not a request at all, a limit price on a market order, a quantity below what filled, an
    unknown order."""
    oms = await make(broker, fund())
    oid = (await oms.submit(market("m", "10"))).order_id or ""
    part = (await oms.submit(limit("l", "10", "100.00"))).order_id or ""
    await oms.on_execution_report(ExecutionReport(
        broker="paper", account_id="acc1", order_id=part, exec_type=ExecType.PARTIAL_FILL,
        ts=dt.datetime.now(dt.UTC), trade_id="T1", symbol="AAPL", side=Side.BUY,
        last_quantity=D(4), last_price=D(100)))
    assert book(oms) == ({"AAPL": D(16)}, {}, {"AAPL": D(4)})
    cases: list[tuple[Any, ReplyCode]] = [
        (ReplaceRequest.model_construct(order_id=oid, quantity=D("NaN")), R.VALIDATION_FAILED),
        (ReplaceRequest.model_construct(order_id=oid, quantity=D("1E+308")),
         R.VALIDATION_FAILED),
        (ReplaceRequest.model_construct(order_id=oid), R.VALIDATION_FAILED),
        ("not a request", R.VALIDATION_FAILED),
        (ReplaceRequest(order_id=oid, limit_price=D(100)), R.VALIDATION_FAILED),
        (ReplaceRequest(order_id=part, quantity=D(3)), R.INVALID_ORDER),
        (ReplaceRequest(order_id="ord-nope", quantity=D(5)), R.ORDER_NOT_FOUND),
    ]
    for request, code in cases:
        reply = await oms.replace(request)
        assert not reply.ok and reply.code is code, (request, reply)
        assert "Traceback" not in (reply.message or "")
    assert broker.replace_requests == []
    assert book(oms) == ({"AAPL": D(16)}, {}, {"AAPL": D(4)})


class _RefusingVenue(RecordingBroker):
    """A venue that takes orders but refuses every replace, as a venue does outside its price
    band: by raising (``raises``) or by answering with a REPLACE_REJECT report."""

    def __init__(self, raises: bool) -> None:
        super().__init__()
        self.raises = raises

    async def replace(self, order_id: str, *, quantity: Decimal | None = None,
                      limit_price: Decimal | None = None,
                      stop_price: Decimal | None = None) -> ExecutionReport:
        self.replace_requests.append(order_id)
        if self.raises:
            raise BrokerRejected("outside the venue's price band", order_id=order_id)
        return self._report(order_id, ExecType.REPLACE_REJECT,
                            reason="outside the venue's price band", venue_code="PX_BAND")


@pytest.mark.parametrize("raises", [True, False], ids=["raised", "reported"])
async def test_a_replace_the_venue_refuses_is_not_answered_ok(
        store: OrderStore, make: MakeOms, raises: bool) -> None:
    """The gates pass it, the venue refuses it: the reply says so (ok=False, the venue's
    code), the order is back to accepted on its old terms, and the book holds the old 50."""
    venue = _RefusingVenue(raises)
    oms = await make(venue, fund())
    oid = (await oms.submit(limit("k", "50", "100.00"))).order_id or ""
    reply = await oms.replace(ReplaceRequest(order_id=oid, limit_price=D("100.01")))
    assert not reply.ok and reply.code is R.BROKER_REJECTED, reply
    assert reply.status is S.ACCEPTED
    assert reply.message == "replace refused by the broker: outside the venue's price band"
    assert reply.venue_code == (None if raises else "PX_BAND")
    # the broker's code and text also in the context, as for a refused submit
    assert reply.context["broker_code"] == ("BROKER_REJECTED" if raises else "PX_BAND")
    assert reply.context["broker_reason"] == "outside the venue's price band"
    assert venue.replace_requests == [oid]
    state = await store.load_order(oid)
    assert state is not None and state.order.limit_price == D("100.00")
    assert [e["event_type"] for e in await store.events(oid)][-2:] == [
        "replace_requested", "replace_rejected"]
    assert book(oms) == ({"AAPL": D(50)}, {}, {})
