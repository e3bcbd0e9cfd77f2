"""The kill switch as a durable procedure, on both stores.

Reproduced failures, each a test here that failed on the code before the durable sweep:

* the sweep canceled one order at a time before the halt replied (168 cancels against a broker
  taking 0.2 s each took 6.8 s to answer): the reply now comes once the state and the sweep are
  written, and the cancels run concurrently
  (``test_halt_replies_before_its_cancels_and_they_run_concurrently``);
* a crash mid-sweep left orders working at the broker in a HALTED fund and a restarted instance
  did not finish the job (``test_a_restarted_instance_finishes_an_interrupted_sweep``).

No test asserts a duration: the broker doubles hold their cancels until the test lets them go,
and the cancel rate is checked on a clock the test drives.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from mts1b_foundation import (
    BrokerRejected,
    BrokerUnknownOutcome,
    Equity,
    ExecType,
    ExecutionReport,
    Order,
    OrderStatus,
    ReplyCode,
    Side,
    TradingState,
)
from mts1b_oms.killswitch import DEFAULT_CANCEL_RATE, Pacer
from mts1b_oms.memstore import InMemoryStore
from mts1b_oms.orderstore import CancelOutcome, OrderStore
from mts1b_oms.store import OutboxItem
from mts1b_oms.testing import RecordingBroker, make_fund
from mts1b_oms.testing import make_order as order
from mts1b_oms.tradingstate import make_change, make_command

if TYPE_CHECKING:
    from conftest import MakeOms

S = OrderStatus
D = Decimal


class GatedCancelBroker(RecordingBroker):
    """A venue that takes each cancel at once but answers only when the test opens ``gate``
    (a slow venue, with the answer in the test's hands); counts the cancels in flight."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.gate = asyncio.Event()
        self.in_flight = 0
        self.most_in_flight = 0
        self.reached = asyncio.Event()
        self.wanted_in_flight = 1
        self.hidden: set[str] = set()  # refused cancels of these, and not listed as open
        self.refuse: set[str] = set()  # refused cancels, still listed as open
        self.before_refusing: dict[str, Callable[[], Awaitable[None]]] = {}  # refused after

    async def cancel(self, order_id: str) -> ExecutionReport:
        if order_id in self.before_refusing:
            self.cancel_requests.append(order_id)
            await self.before_refusing[order_id]()
            raise BrokerRejected("ORDER_NOT_OPEN: filled", order_id=order_id,
                                 reason_code="ORDER_NOT_OPEN")
        if order_id in self.refuse or order_id in self.hidden:
            self.cancel_requests.append(order_id)
            raise BrokerRejected("too late to cancel", order_id=order_id)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if self.in_flight >= self.wanted_in_flight:
            self.reached.set()
        try:
            report = await super().cancel(order_id)  # the venue has canceled it ...
            await self.gate.wait()  # ... and the answer is on its way
            return report
        finally:
            self.in_flight -= 1

    async def open_orders(self, account_id: str | None = None) -> list[Order]:
        return [o for o in await super().open_orders(account_id)
                if o.order_id not in self.hidden]


async def working_orders(oms_make: MakeOms, broker: RecordingBroker, n: int,
                         **kw: Any) -> tuple[Any, list[str]]:
    oms = await oms_make(broker, **kw)
    ids = []
    for i in range(n):
        r = await oms.submit(order(f"w{i}", str(1 + i)))
        assert r.ok and r.status is S.ACCEPTED, r
        ids.append(r.order_id or "")
    return oms, ids


async def statuses(store: OrderStore, ids: list[str]) -> list[OrderStatus | None]:
    out = []
    for oid in ids:
        st = await store.load_order(oid)
        out.append(st.status if st else None)
    return out


# --- the reply does not wait, the cancels do not queue -------------------------------------------


async def test_halt_replies_before_its_cancels_and_they_run_concurrently(
        store: OrderStore, make: MakeOms) -> None:
    """Reproduced: the sweep canceled one order at a time and the halt replied only after the
    last one. Here the venue answers no cancel until the test says so: the halt's reply comes
    first and counts 12 outstanding, then all 12 cancels are at the venue at once."""
    broker = GatedCancelBroker()
    broker.wanted_in_flight = 12
    oms, ids = await working_orders(make, broker, 12)
    reply = await asyncio.wait_for(oms.halt("fund", "f1", reason="incident"), 10)
    assert reply.ok and reply.context["state"] == "HALTED"
    assert reply.context["outstanding"] == 12 and broker.canceled == []
    assert oms.states.get("fund", "f1") is TradingState.HALTED  # durable and in force
    await asyncio.wait_for(broker.reached.wait(), 10)  # liveness guard, not a timing
    assert broker.most_in_flight == 12
    broker.gate.set()
    await oms.killswitch.settle()
    assert await statuses(store, ids) == [S.CANCELED] * 12
    assert sorted(broker.canceled) == sorted(ids) and len(broker.cancel_requests) == 12
    sweep = await store.sweep(str(reply.context["sweep_id"]))
    assert sweep is not None and sweep.finished
    assert (sweep.scope, sweep.scope_id, sweep.state, sweep.reason) == (
        "fund", "f1", TradingState.HALTED, "incident")
    assert {o.outcome for o in sweep.orders} == {CancelOutcome.CANCELED}


async def test_pacer_spaces_starts_at_the_rate() -> None:
    """The pacer hands out start times ``1/rate`` apart (and none in the past)."""
    clock = FakeClock()
    pacer = Pacer(20, clock=clock.now, sleep=clock.sleep)
    starts = []
    for _ in range(5):
        await pacer.wait()
        starts.append(clock.t)
    assert starts == [0.0, 0.05, 0.1, 0.15000000000000002, 0.2]
    clock.t = 10.0  # idle for a while: the next one starts at once, not in a burst of back slots
    await pacer.wait()
    await pacer.wait()
    assert clock.t == 10.05
    with pytest.raises(ValueError, match="must be > 0"):
        Pacer(0)


class FakeClock:
    """A monotonic clock that moves only when something sleeps on it."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds
        await asyncio.sleep(0)


async def test_cancels_start_at_the_brokers_rate(store: OrderStore, make: MakeOms) -> None:
    """The sweep starts its cancels at the broker's cancel rate (a broker setting, default 10
    per second): on a clock the test drives, 8 cancels at 20/s start 50 ms apart."""
    assert make_rate(RecordingBroker()) == DEFAULT_CANCEL_RATE == 10.0
    assert make_rate(RecordingBroker(cancel_rate=20)) == 20.0
    clock = FakeClock()
    broker = StampingBroker(clock)
    slept = 0

    async def sleep(seconds: float) -> None:
        """Move the clock to the end of this sleep once the cancels of the slots before it
        have reached the venue, so that each cancel is stamped with its own slot's time."""
        nonlocal slept
        slept += 1
        until = clock.t + seconds
        while len(broker.stamps) < slept:
            await asyncio.sleep(0.001)
        clock.t = max(clock.t, until)

    oms, ids = await working_orders(make, broker, 8,
                                    pacer=Pacer(20, clock=clock.now, sleep=sleep))
    await oms.halt("fund", "f1")
    await oms.killswitch.settle()
    assert [round(t, 9) for t in broker.stamps] == [round(i * 0.05, 9) for i in range(8)]
    assert await statuses(store, ids) == [S.CANCELED] * 8


def make_rate(broker: RecordingBroker) -> float:
    from mts1b_oms.oms import broker_cancel_rate

    return broker_cancel_rate(broker)


class StampingBroker(RecordingBroker):
    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.stamps: list[float] = []

    async def cancel(self, order_id: str) -> ExecutionReport:
        self.stamps.append(self.clock.t)
        return await super().cancel(order_id)


# --- durable: a crash mid-sweep, a restart, another instance ------------------------------------


async def test_a_restarted_instance_finishes_an_interrupted_sweep(
        store: OrderStore, make: MakeOms) -> None:
    """Reproduced: an instance that stopped mid-sweep (SIGTERM, crash) left orders working at
    the broker in a HALTED fund, and the instance started next did not finish the job. Here
    the first instance stops with 10 cancels taken by the venue but unanswered; the next one
    resumes the stored sweep at start and settles every order, each canceled once at the
    venue (the re-sent cancels are repeats the venue answers as such)."""
    venue = GatedCancelBroker()
    venue.wanted_in_flight = 10
    first, ids = await working_orders(make, venue, 10)
    reply = await first.halt("fund", "f1", reason="crash test")
    await asyncio.wait_for(venue.reached.wait(), 10)
    await first.stop()  # dies with every cancel in flight
    assert sorted(venue.canceled) == sorted(ids)  # the venue took them ...
    assert set(await statuses(store, ids)) == {S.PENDING_CANCEL}  # ... the OMS never heard
    sweep = await store.sweep(str(reply.context["sweep_id"]))
    assert sweep is not None and sweep.outstanding == 10
    venue.gate.set()
    second = await make(venue)  # resumes the sweep in the background at start
    assert second.states.get("fund", "f1") is TradingState.HALTED
    await second.killswitch.settle()
    assert await statuses(store, ids) == [S.CANCELED] * 10
    assert sorted(venue.canceled) == sorted(ids)  # each order canceled once at the venue
    assert len(venue.cancel_requests) == 20  # the second cancel of each was a repeat
    sweep = await store.sweep(str(reply.context["sweep_id"]))
    assert sweep is not None and sweep.finished
    assert {o.outcome for o in sweep.orders} == {CancelOutcome.CANCELED}
    for oid in ids:  # one canceled event per order
        assert [e["event_type"] for e in await store.events(oid)].count("canceled") == 1


async def test_only_the_lock_holder_sweeps_a_fund_and_another_takes_over(
        store: OrderStore, make: MakeOms) -> None:
    """Two instances serve f1 (a misconfiguration the lock makes safe): the halt written by
    the second is swept by the first, which holds the fund's lock; when the first goes away
    mid-sweep, the second takes the lock at its next poll and finishes."""
    venue = GatedCancelBroker()
    venue.wanted_in_flight = 3
    first, ids = await working_orders(make, venue, 3)
    other_venue = RecordingBroker()
    second = await make(other_venue)
    reply = await second.halt("fund", "f1", reason="halt from the second")
    assert reply.context["outstanding"] == 3
    await second.killswitch.settle()
    assert other_venue.cancel_requests == []  # not its lock: it leaves the sweep alone
    change = make_change("fund", "f1", TradingState.HALTED, "operator", "x",
                         dt.datetime.now(dt.UTC))
    await first.enforce_state(change)  # the fan-out reaches the lock holder
    await asyncio.wait_for(venue.reached.wait(), 10)
    await first.stop()
    second.broker = venue  # same venue, reached through the second instance now
    venue.gate.set()
    await second.killswitch.poll_once()
    sweep = await second.killswitch.wait(str(reply.context["sweep_id"]))
    assert sweep is not None and sweep.finished
    assert await statuses(store, ids) == [S.CANCELED] * 3
    assert list(second.alerts) == []  # it took the orders as the first left them


async def test_submits_in_the_halted_scope_wait_for_the_sweep(store: OrderStore,
                                                             make: MakeOms) -> None:
    """A resume that comes while the halt's cancels are outstanding clears the state, but
    submits in that scope are still denied TRADING_HALTED until the sweep has settled;
    other funds trade on."""
    venue = GatedCancelBroker()
    venue.wanted_in_flight = 2
    oms, ids = await working_orders(make, venue, 2)
    reply = await oms.halt("fund", "f1", reason="incident")
    await asyncio.wait_for(venue.reached.wait(), 10)
    assert (await oms.resume("fund", "f1", reason="false alarm")).ok
    assert oms.states.get("fund", "f1") is TradingState.ACTIVE
    denied = await oms.submit(order("during"))
    assert not denied.ok and denied.code is ReplyCode.TRADING_HALTED
    assert denied.denial is not None and denied.denial.context["outstanding"] == 2
    assert denied.denial.context["sweep_id"] == reply.context["sweep_id"]
    assert "still canceling 2 orders" in (denied.message or "")
    venue.gate.set()
    await oms.killswitch.settle()
    after = await oms.submit(order("after"))
    assert after.ok and after.status is S.ACCEPTED
    assert await statuses(store, ids) == [S.CANCELED] * 2


async def test_the_sweep_records_how_each_order_ended(store: OrderStore,
                                                      make: MakeOms) -> None:
    """Each order's cancel status is stored: canceled; closed (its cancel lost the race with
    the last fill: the venue fills it, then refuses the cancel); not working (the venue
    refused the cancel and no longer lists the order); refused (the venue refused and still
    lists it: an alert for a person). The fill's late refusal is no alert."""
    venue = GatedCancelBroker()
    venue.gate.set()
    oms, ids = await working_orders(make, venue, 4)
    canceled, filled, gone, stuck = ids
    venue.hidden.add(gone)
    venue.refuse.add(stuck)

    async def fill_first() -> None:  # the venue fills it as the cancel arrives
        await oms.on_execution_report(ExecutionReport(
            broker="paper", account_id="acc1", order_id=filled, exec_type=ExecType.FILL,
            ts=dt.datetime.now(dt.UTC), trade_id="T-fill", symbol="AAPL", side=Side.BUY,
            last_quantity=D(2), last_price=D(100)))

    venue.before_refusing[filled] = fill_first
    reply = await oms.halt("fund", "f1", reason="outcomes")
    await oms.killswitch.settle()
    sweep = await store.sweep(str(reply.context["sweep_id"]))
    assert sweep is not None and sweep.finished
    assert {o.order_id: (o.outcome, o.status) for o in sweep.orders} == {
        canceled: (CancelOutcome.CANCELED, S.CANCELED),
        filled: (CancelOutcome.CLOSED, S.FILLED),
        gone: (CancelOutcome.NOT_WORKING, S.ACCEPTED),
        stuck: (CancelOutcome.REFUSED, S.ACCEPTED)}
    assert sorted(str(a.context["outcome"]) for a in oms.alerts) == ["not_working", "refused"]
    assert oms.positions("f1") == {"AAPL": D(2)}


# --- taken in from the store: a state stored while the bus was down, an order missed --------


async def test_the_poll_takes_in_a_halt_stored_directly_and_sweeps_what_it_missed(
        store: OrderStore, make: MakeOms) -> None:
    """``halt`` stores the state in PostgreSQL itself when no instance can be asked; the
    running instance takes it in at its next poll and runs its sweep. An order that is working
    in the halted scope without being in any sweep (committed just as the halt landed) is
    swept by the same poll."""
    venue = RecordingBroker()
    oms, ids = await working_orders(make, venue, 2)
    change = make_change("fund", "f1", TradingState.HALTED, "operator", "bus down",
                         dt.datetime.now(dt.UTC))
    written = await store.set_trading_state(
        change, [OutboxItem("mts.v1.oms.state.changed", change, "evt-direct")],
        sweep_id="swp-direct", sweep_orders=[ids[0]])  # as if ids[1] came a moment later
    assert written.applied and written.sweep is not None and written.sweep.outstanding == 1
    assert oms.states.get("fund", "f1") is TradingState.ACTIVE  # not heard yet
    await oms.killswitch.poll_once()
    assert oms.states.get("fund", "f1") is TradingState.HALTED
    await oms.killswitch.settle()
    assert await statuses(store, ids) == [S.CANCELED] * 2
    assert sorted(venue.cancel_requests) == sorted(ids)
    assert await store.unfinished_sweeps() == []
    assert (await oms.submit(order("late"))).code is ReplyCode.TRADING_HALTED


async def test_reducing_sweeps_only_what_adds_risk_and_records_it(
        store: OrderStore, make: MakeOms) -> None:
    """REDUCING writes a sweep of exactly the orders that add risk (here the buy adding to a
    long), and the reply counts them."""
    venue = RecordingBroker(fill_price="100")
    oms = await make(venue)
    assert (await oms.submit(order("long", "100"))).status is S.FILLED
    venue.fill_price = None
    sell = await oms.submit(order("sell", "40", side=Side.SELL))
    buy = await oms.submit(order("buy", "10"))
    reply = await oms.set_trading_state(
        make_command("fund", "f1", TradingState.REDUCING, "risk", "reduce"))
    assert reply.context["outstanding"] == 1
    await oms.killswitch.settle()
    sweep = await store.sweep(str(reply.context["sweep_id"]))
    assert sweep is not None and [o.order_id for o in sweep.orders] == [buy.order_id]
    assert await statuses(store, [sell.order_id or "", buy.order_id or ""]) == [
        S.ACCEPTED, S.CANCELED]


# --- the in-memory store keeps the contract ------------------------------------------------------


def test_both_stores_satisfy_the_protocol(store: OrderStore) -> None:
    from mts1b_oms.orderstore import FundLock
    from mts1b_oms.orderstore import OrderStore as Protocol

    assert isinstance(store, Protocol)
    assert isinstance(store.fund_lock(["f1"]), FundLock)


async def test_a_fund_lock_has_one_holder() -> None:
    store = InMemoryStore()
    a, b = store.fund_lock(["f1", "f2"]), store.fund_lock(["f2", "f3"])
    assert await a.acquire() == {"f1", "f2"}
    assert await b.acquire() == {"f3"}
    await a.release()
    assert await b.acquire() == {"f2", "f3"} and a.held == frozenset()


async def test_pg_fund_lock_is_released_when_its_connection_dies(pg_store: Any) -> None:
    """PostgreSQL gives a dead holder's locks to the next one: what lets an instance started
    after a crash take the sweeps over."""
    a, b = pg_store.fund_lock(["f1"]), pg_store.fund_lock(["f1"])
    assert await a.acquire() == {"f1"}
    assert await b.acquire() == frozenset()
    a._conn.terminate()  # the holder's process dies: its connection with it
    for _ in range(100):  # the server notices the closed socket at once; poll a few times
        if await b.acquire() == {"f1"}:
            break
        await asyncio.sleep(0.02)
    assert b.held == {"f1"}
    await b.release()
    await a.release()


# --- the order path: server-assigned fields, the venue's words in rejects -----------------------


async def test_submit_assigns_order_id_and_created_at_on_the_server(
        store: OrderStore, make: MakeOms) -> None:
    """``order_id`` and ``created_at`` are the OMS's: a client's ``created_at`` (here 1990) is
    replaced by the OMS clock's reading, in the stored order and in its event."""

    class Clock:
        def now(self) -> dt.datetime:
            return dt.datetime(2026, 3, 2, 14, 30, tzinfo=dt.UTC)

    broker = RecordingBroker()
    oms = await make(broker, clock=Clock())
    sent = Order(idempotency_key="k-time", fund_id="f1", strategy_id="s1",
                 instrument=Equity(symbol="AAPL"), side=Side.BUY, quantity=D(1),
                 created_at=dt.datetime(1990, 1, 1, tzinfo=dt.UTC))
    reply = await oms.submit(sent)
    st = await store.load_order(reply.order_id or "")
    assert st is not None and st.order.created_at == Clock().now()
    assert st.order.order_id == reply.order_id and st.order.broker == "paper"
    [submitted, _accepted] = await store.events(reply.order_id or "")
    assert submitted["order"]["created_at"] == "2026-03-02T14:30:00Z"
    assert broker.orders[reply.order_id or ""].created_at == Clock().now()
    bad = await oms.submit(sent.model_copy(update={"idempotency_key": "k2", "order_id": "x"}))
    assert (bad.ok, bad.code) == (False, ReplyCode.INVALID_ORDER)


class RejectingBroker(RecordingBroker):
    """Rejects submits like the paper venue does: a REJECT report with the stack's code and
    the venue's own, carried by the BrokerRejected."""

    async def submit(self, order: Order) -> ExecutionReport:
        oid = order.order_id or ""
        if order.quantity == 7:  # a bare rejection, no report
            raise BrokerRejected("no buying power", order_id=oid)
        report = ExecutionReport(
            broker="paper", account_id="acc1", order_id=oid, exec_type=ExecType.REJECT,
            ts=dt.datetime.now(dt.UTC), reason="TICK_SIZE: 100.005 is off the 0.01 tick",
            code=ReplyCode.TICK_SIZE, venue_code="201",
            venue_message="Order rejected - reason: price does not conform to tick")
        raise BrokerRejected(report.reason or "", order_id=oid, report=report,
                             reason_code="TICK_SIZE")


async def test_a_broker_reject_carries_its_code_and_the_venues_words(
        store: OrderStore, make: MakeOms) -> None:
    """The rejected event and the reply carry the broker's ReplyCode (TICK_SIZE) and what the
    venue said (venue_code, venue_message); a rejection without a report is BROKER_REJECTED
    with the venue's text, and a REJECT report from the stream is recorded the same way."""
    oms = await make(RejectingBroker())
    reply = await oms.submit(order("tick", "3"))
    assert (reply.ok, reply.status, reply.code, reply.venue_code) == (
        False, S.REJECTED, ReplyCode.TICK_SIZE, "201")
    assert reply.venue_message == "Order rejected - reason: price does not conform to tick"
    ev = (await store.events(reply.order_id or ""))[-1]
    assert (ev["event_type"], ev["code"], ev["venue_code"], ev["venue_message"],
            ev["reason"]) == ("rejected", "TICK_SIZE", "201",
                              "Order rejected - reason: price does not conform to tick",
                              "TICK_SIZE: 100.005 is off the 0.01 tick")
    again = await oms.submit(order("tick", "3"))  # a REJECTED key opens a new attempt
    assert not again.duplicate and again.context["previous_order_id"] == reply.order_id
    assert (again.code, again.venue_code) == (ReplyCode.TICK_SIZE, "201")
    bare = await oms.submit(order("bare", "7"))
    assert (bare.code, bare.venue_code, bare.venue_message) == (
        ReplyCode.BROKER_REJECTED, None, "no buying power")
    streamed = await make(PendingBroker(), make_fund("f2"))
    pending = await streamed.submit(order("s", "1", fund_id="f2"))
    assert pending.status is S.PENDING
    await streamed.on_execution_report(ExecutionReport(
        broker="paper", account_id="acc1", order_id=pending.order_id or "",
        exec_type=ExecType.REJECT, ts=dt.datetime.now(dt.UTC), reason="LOT_SIZE: 1 is off",
        code=ReplyCode.LOT_SIZE, venue_code="LOT", venue_message="lot is 100"))
    ev = (await store.events(pending.order_id or ""))[-1]
    assert (ev["event_type"], ev["code"], ev["venue_code"], ev["venue_message"]) == (
        "rejected", "LOT_SIZE", "LOT", "lot is 100")


class PendingBroker(RecordingBroker):
    """Every submit times out after sending: the order stays pending."""

    async def submit(self, order: Order) -> ExecutionReport:
        raise BrokerUnknownOutcome("timeout", order_id=order.order_id or "")
