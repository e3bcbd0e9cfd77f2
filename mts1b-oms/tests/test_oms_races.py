"""Regression tests for concurrency and kill-switch races in the OMS.

Each test pins down one race found in review: a halt or a REDUCING state that lands while an
order is between its gates and its commit, or while its broker call is in flight; retries and
restarts that re-send pending orders under a halt; two OMS instances sharing one store. They run
on both stores, except those that hold a key in a PostgreSQL transaction to stop an order
between its gates and its commit (``pg_store``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import TYPE_CHECKING

from mts1b_foundation import (
    BrokerRejected,
    BrokerTransportError,
    BrokerUnknownOutcome,
    DenialCode,
    ExecType,
    ExecutionReport,
    Order,
    OrderStatus,
    SetTradingState,
    Side,
    TradingState,
)
from mts1b_oms.oms import Oms
from mts1b_oms.orderstore import CancelOutcome, OrderStore
from mts1b_oms.store import Store
from mts1b_oms.testing import RecordingBroker, make_fund
from mts1b_oms.testing import make_order as order
from mts1b_oms.tradingstate import make_change

if TYPE_CHECKING:
    from conftest import MakeOms

S = OrderStatus
D = Decimal


# --- helpers ----------------------------------------------------------------------------------


async def status_of(store: OrderStore, order_id: str | None) -> OrderStatus | None:
    st = await store.load_order(order_id or "")
    assert st is not None
    return st.status


def open_leaves(oms: Oms, fund_id: str = "f1") -> tuple[dict[str, Decimal], dict[str, Decimal]]:
    ctx = oms.gate_context(oms.funds[fund_id], oms.clock.now())
    return dict(ctx.open_buy), dict(ctx.open_sell)


@contextlib.asynccontextmanager
async def hold_key(store: Store, key: str) -> AsyncIterator[int]:
    """Hold an uncommitted idempotency row for ``key`` in another transaction: a create_order
    for that key waits on the unique index (real PostgreSQL behaviour) until we roll back, so
    the order sits between its gates and its commit. Yields the holder's backend pid."""
    conn = await store.pool.acquire()
    tx = conn.transaction()
    await tx.start()
    try:
        pid: int = await conn.fetchval("SELECT pg_backend_pid()")
        await conn.execute("INSERT INTO idempotency VALUES ($1, 'blocker', now())", key)
        yield pid
    finally:
        await tx.rollback()
        await store.pool.release(conn)


async def wait_blocked(store: Store, holder_pid: int, timeout: float = 2.0) -> None:
    """Wait until some backend is waiting on the holder's transaction (the order's write)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not await store.pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
            holder_pid):
        if loop.time() > end:
            raise TimeoutError("the order's write never blocked on the held key")
        await asyncio.sleep(0.005)


def cancel_report(order_id: str) -> ExecutionReport:
    return ExecutionReport(broker="paper", account_id="acc-f1", order_id=order_id,
                           exec_type=ExecType.CANCELED, ts=dt.datetime.now(dt.UTC))


# --- broker doubles ---------------------------------------------------------------------------


class LossyBroker(RecordingBroker):
    """The first submit of each order times out before reaching the venue (unknown outcome);
    later submits of it go through. With ``cancel_down`` every cancel fails in transport."""

    def __init__(self, *, cancel_down: bool = False) -> None:
        super().__init__()
        self.lost: list[str] = []
        self.cancel_down = cancel_down

    async def submit(self, order: Order) -> ExecutionReport:
        oid = order.order_id or ""
        if oid not in self.lost:
            self.lost.append(oid)
            raise BrokerUnknownOutcome("timeout", order_id=oid)
        return await super().submit(order)

    async def cancel(self, order_id: str) -> ExecutionReport:
        if self.cancel_down:
            raise BrokerTransportError("connection down", order_id=order_id)
        return await super().cancel(order_id)


class TimeoutBroker(RecordingBroker):
    """Every submit has an unknown outcome: the order stays pending in the OMS."""

    async def submit(self, order: Order) -> ExecutionReport:
        raise BrokerUnknownOutcome("timeout", order_id=order.order_id or "")


class SlowSubmitBroker(RecordingBroker):
    """A submit that is in flight (on its way to the venue) until the test releases it."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = asyncio.Event()
        self.release = asyncio.Event()
        self.in_flight_ids: list[str] = []

    async def submit(self, order: Order) -> ExecutionReport:
        self.in_flight_ids.append(order.order_id or "")
        self.in_flight.set()
        await self.release.wait()
        return await super().submit(order)


class CancelRefusingBroker(RecordingBroker):
    """Records every cancel call; refuses (BrokerRejected) cancels of the ids in ``refuse``."""

    def __init__(self, *, name: str = "paper") -> None:
        super().__init__(name=name)
        self.cancel_calls: list[str] = []
        self.refuse: set[str] = set()

    async def cancel(self, order_id: str) -> ExecutionReport:
        self.cancel_calls.append(order_id)
        if order_id in self.refuse:
            raise BrokerRejected("too late to cancel", order_id=order_id)
        return await super().cancel(order_id)


# --- 1. nothing reaches the broker for a HALTED fund ------------------------------------------


async def test_pending_order_not_resent_by_retry_or_restart_while_halted(
        store: OrderStore, make: MakeOms) -> None:
    """An order whose broker call had an unknown outcome stays PENDING; the halt's cancel of it
    fails in transport, so it may stay PENDING. While the fund is HALTED neither the client's
    retry with the same idempotency key nor a fresh instance's start() (recover) may send it:
    both paths used to re-send PENDING orders without looking at the trading state."""
    broker = LossyBroker(cancel_down=True)
    oms = await make(broker)
    first = await oms.submit(order("k1", "100"))
    assert first.status is S.PENDING and broker.lost == [first.order_id]
    assert (await oms.halt("fund", "f1", reason="kill")).ok
    retry = await oms.submit(order("k1", "100"))
    assert retry.order_id == first.order_id
    assert broker.submissions == [] and broker.new_orders == []
    oms2 = await make(broker)  # a restart on the same store: start() runs recover()
    assert oms2.states.get("fund", "f1") is TradingState.HALTED
    assert broker.submissions == [] and broker.new_orders == []
    assert await status_of(store, first.order_id) is not S.ACCEPTED
    assert retry.ok is False  # the client must not read "on its way" while the fund is halted


async def test_halt_cancel_of_pending_order_unknown_to_broker_ends_canceled(
        store: OrderStore, make: MakeOms) -> None:
    """The halt's sweep cancels a PENDING order whose first send never reached the venue; the
    venue answers "unknown order" (BrokerRejected), which proves the order is not working
    there, so it must end CANCELED - not be restored to PENDING, from where a retry or a
    restart used to send it live under the halt."""
    broker = LossyBroker()
    oms = await make(broker)
    r1 = await oms.submit(order("k1", "100"))
    r2 = await oms.submit(order("k2", "200"))
    assert r1.status is S.PENDING and r2.status is S.PENDING
    assert (await oms.halt("fund", "f1", reason="kill")).ok
    await oms.killswitch.settle()
    assert await status_of(store, r1.order_id) is S.CANCELED
    assert await status_of(store, r2.order_id) is S.CANCELED
    again = await oms.submit(order("k1", "100"))
    assert again.order_id == r1.order_id and again.status is S.CANCELED
    oms2 = await make(broker)
    assert oms2.states.get("fund", "f1") is TradingState.HALTED
    assert broker.submissions == [] and broker.new_orders == []
    assert open_leaves(oms) == ({}, {}) and open_leaves(oms2) == ({}, {})


# --- 2. REDUCING lands between an order's gates and its commit ---------------------------------


async def test_reducing_during_write_cancels_the_risk_adding_buy(pg_store: Store,
        pg_make: MakeOms) -> None:
    """A buy from a flat position (risk-adding) passes its gates, then REDUCING is set and its
    cancel sweep reads the store before the buy is committed, so the sweep cannot see it. The
    buy must then be canceled locally and never sent (only HALTED used to be re-checked)."""
    store, make = pg_store, pg_make
    broker = RecordingBroker()
    oms = await make(broker)
    async with hold_key(store, "k-inc") as holder:
        buy = asyncio.create_task(oms.submit(order("k-inc", "500")))
        await wait_blocked(store, holder)
        reducing = asyncio.create_task(oms.set_trading_state(SetTradingState(
            scope="fund", scope_id="f1", state=TradingState.REDUCING, actor="op",
            reason="reduce")))
        await asyncio.wait({reducing}, timeout=0.2)
    reply = await buy
    assert (await reducing).ok
    assert reply.ok is False and reply.code == DenialCode.TRADING_STATE_REDUCING.value
    assert reply.order_id not in broker.new_orders and broker.submissions == []
    assert await status_of(store, reply.order_id) is S.CANCELED
    assert open_leaves(oms) == ({}, {})


async def test_reducing_during_write_still_sends_a_reducing_sell(pg_store: Store,
        pg_make: MakeOms) -> None:
    """The fix for the race above must not over-reach: a sell that reduces an existing long,
    in flight when REDUCING lands, is sent normally, and so is one submitted afterwards."""
    store, make = pg_store, pg_make
    broker = RecordingBroker(fill_price="100")
    oms = await make(broker)
    assert (await oms.submit(order("long", "100"))).status is S.FILLED  # long 100
    broker.fill_price = None  # from here orders stay working
    async with hold_key(store, "k-sell") as holder:
        sell = asyncio.create_task(oms.submit(order("k-sell", "50", side=Side.SELL)))
        await wait_blocked(store, holder)
        reducing = asyncio.create_task(oms.set_trading_state(SetTradingState(
            scope="fund", scope_id="f1", state=TradingState.REDUCING, actor="op",
            reason="reduce")))
        await asyncio.wait({reducing}, timeout=0.2)
    reply = await sell
    assert (await reducing).ok
    assert reply.ok and reply.status is S.ACCEPTED and reply.order_id in broker.new_orders
    later = await oms.submit(order("k-sell2", "30", side=Side.SELL))
    assert later.ok and later.status is S.ACCEPTED and later.order_id in broker.new_orders
    assert await status_of(store, reply.order_id) is S.ACCEPTED
    assert oms.positions("f1") == {"AAPL": D(100)}
    assert open_leaves(oms) == ({}, {"AAPL": D(80)})


# --- 3. a halt lands while broker.submit is in flight ----------------------------------------


async def test_halt_during_inflight_submit_leaves_nothing_working(store: OrderStore,
                                                                  make: MakeOms) -> None:
    """The halt's cancel reaches the broker while the order's submit is still on its way (the
    venue does not know the order yet), then the ack arrives. The order must not be left
    working at the broker under HALTED: it ends canceled there and in the store, and the sweep
    records it canceled only once it is (its first cancel was refused as "unknown order").
    """
    broker = SlowSubmitBroker()
    oms = await make(broker)
    sub = asyncio.create_task(oms.submit(order("k1", "100")))
    await asyncio.wait_for(broker.in_flight.wait(), timeout=1)
    [oid] = broker.in_flight_ids
    h = await oms.halt("fund", "f1", reason="kill")  # the reply does not wait for the sweep
    assert h.ok and h.context["outstanding"] == 1
    broker.release.set()
    await sub
    await oms.killswitch.settle()
    assert oid in broker.canceled
    assert await status_of(store, oid) is S.CANCELED
    assert await store.open_orders("f1") == []
    assert open_leaves(oms) == ({}, {})
    sweep = await store.sweep(str(h.context["sweep_id"]))
    assert sweep is not None and sweep.finished
    assert [(o.order_id, o.outcome) for o in sweep.orders] == [(oid, CancelOutcome.CANCELED)]


async def test_halt_sweep_records_a_refused_cancel(store: OrderStore, make: MakeOms) -> None:
    """A cancel the broker refused (the order keeps working) is not counted as canceled: the
    sweep records it ``refused`` (the broker still lists the order) and raises an alert."""
    broker = CancelRefusingBroker()
    oms = await make(broker)
    kept = await oms.submit(order("a", "10"))
    gone = await oms.submit(order("b", "20"))
    broker.refuse.add(kept.order_id or "")
    h = await oms.halt("fund", "f1", reason="kill")
    assert h.ok and h.context["outstanding"] == 2
    await oms.killswitch.settle()
    assert set(broker.cancel_calls) == {kept.order_id, gone.order_id}
    assert broker.canceled == [gone.order_id]
    assert await status_of(store, gone.order_id) is S.CANCELED
    assert await status_of(store, kept.order_id) is S.ACCEPTED
    sweep = await store.sweep(str(h.context["sweep_id"]))
    assert sweep is not None and sweep.finished
    assert {o.order_id: o.outcome for o in sweep.orders} == {
        kept.order_id: CancelOutcome.REFUSED, gone.order_id: CancelOutcome.CANCELED}
    assert [a.context["outcome"] for a in oms.alerts] == ["refused"]


# --- 4. a drawdown REDUCING never downgrades an operator HALT --------------------------------


async def test_drawdown_reducing_does_not_downgrade_operator_halt(pg_store: Store,
        pg_make: MakeOms) -> None:
    """A buy breaches the drawdown (action REDUCING); its denial is being written when the
    operator halts the fund. The drawdown's state change, applied after the write, must not
    overwrite the HALT with REDUCING: that lifted the halt without a resume."""
    store, make = pg_store, pg_make
    broker = RecordingBroker(fill_price="100")
    oms = await make(broker, make_fund(max_drawdown_pct=D("0.10"),
                                  drawdown_action=TradingState.REDUCING))
    assert (await oms.submit(order("seed", "100"))).status is S.FILLED  # long 100
    await oms.update_nav("f1", D(1_000_000))
    await oms.update_nav("f1", D(800_000))  # 20% drawdown > 10%
    async with hold_key(store, "k-dd") as holder:
        buy = asyncio.create_task(oms.submit(order("k-dd", "10")))
        await wait_blocked(store, holder)
        halt = asyncio.create_task(oms.halt("fund", "f1", reason="operator halt"))
        await asyncio.wait({halt}, timeout=0.2)
    reply = await buy
    assert (await halt).ok
    assert reply.ok is False and reply.code == DenialCode.DRAWDOWN_HALT.value
    assert oms.states.get("fund", "f1") is TradingState.HALTED
    assert await store.trading_states() == [("fund", "f1", TradingState.HALTED)]
    sell = await oms.submit(order("after", "50", side=Side.SELL))
    assert sell.ok is False and sell.code == DenialCode.TRADING_HALTED.value
    assert oms.positions("f1") == {"AAPL": D(100)}


# --- 5. a drawdown stampede changes the state once -------------------------------------------


async def test_concurrent_drawdown_breaches_change_state_once(store: OrderStore,
                                                              make: MakeOms) -> None:
    """Ten concurrent submits all breach the drawdown before any of them has set the state.
    The fund must change state exactly once (one state.changed event, one cancel sweep), not
    once per submit with a sweep each that cancels every working order again."""
    broker = RecordingBroker()
    oms = await make(broker, make_fund(max_drawdown_pct=D("0.10")))
    working = [await oms.submit(order(f"w{i}", str(10 + i))) for i in range(3)]
    assert {r.status for r in working} == {S.ACCEPTED}
    await oms.update_nav("f1", D(1_000_000))
    await oms.update_nav("f1", D(800_000))
    replies = await asyncio.gather(*(oms.submit(order(f"dd{i}", str(50 + i)))
                                     for i in range(10)))
    assert not any(r.ok for r in replies)
    await oms.killswitch.settle()
    n_changes = [subject for _, subject, _ in await store.unpublished(1000)
                 if subject == "mts.v1.oms.state.changed"]
    assert len(n_changes) == 1
    assert await store.trading_states() == [("fund", "f1", TradingState.HALTED)]
    assert sorted(broker.canceled) == sorted(r.order_id or "" for r in working)
    assert sorted(broker.cancel_requests) == sorted(broker.canceled)  # each one once
    assert list(oms.alerts) == []


# --- 6. StaleState keeps the in-memory book right --------------------------------------------


async def test_report_after_another_instance_changed_the_order_fixes_open_leaves(
        store: OrderStore, make: MakeOms) -> None:
    """Another instance cancels this instance's order behind its back; the venue's CANCELED
    report then reaches this instance, whose cached copy is stale (StaleState). After reloading,
    the order must also leave this instance's open leaves: it used to stay there forever and
    count in the exposure gates."""
    venue = RecordingBroker()
    a = await make(venue)
    r = await a.submit(order("a-sell", "100", side=Side.SELL))
    assert r.status is S.ACCEPTED and open_leaves(a) == ({}, {"AAPL": D(100)})
    b = await make(venue)  # a second instance on the same store sees the order
    assert (await b.cancel(r.order_id or "")).ok
    assert await status_of(store, r.order_id) is S.CANCELED
    await a.on_execution_report(cancel_report(r.order_id or ""))
    assert await status_of(store, r.order_id) is S.CANCELED
    assert open_leaves(a) == ({}, {})


# --- 7. an instance only touches its own funds -----------------------------------------------


async def test_start_does_not_send_another_funds_pending_orders(store: OrderStore,
                                                                make: MakeOms) -> None:
    """Instance A (fund f1) leaves an order PENDING (unknown outcome). Instance B serves only
    fund f2 on another venue; its start() and recover() must not send f1's order to B's venue
    (start used to load every fund's open orders and recover re-sent the pending ones)."""
    venue_a, venue_b = TimeoutBroker(name="venueA"), RecordingBroker(name="venueB")
    a = await make(venue_a, make_fund("f1"))
    r = await a.submit(order("k1", "100"))
    assert r.status is S.PENDING
    b = await make(venue_b, make_fund("f2"))
    assert await b.recover() == 0
    assert venue_b.submissions == [] and venue_b.orders == {}
    assert await status_of(store, r.order_id) is S.PENDING


async def test_global_halt_on_other_instance_does_not_cancel_through_its_broker(
        store: OrderStore, make: MakeOms) -> None:
    """A global halt issued on instance B (fund f2, venue B) must cancel only B's own orders
    through B's broker; fund f1's order lives at venue A and is canceled by instance A when it
    sees the state change (the fan-out), through venue A."""
    venue_a = CancelRefusingBroker(name="venueA")
    venue_b = CancelRefusingBroker(name="venueB")
    a = await make(venue_a, make_fund("f1"))
    b = await make(venue_b, make_fund("f2"))
    ra = await a.submit(order("a1", "10"))
    rb = await b.submit(order("b1", "10", fund_id="f2"))
    assert ra.status is S.ACCEPTED and rb.status is S.ACCEPTED
    h = await b.halt(reason="global kill")
    assert h.ok and h.context["outstanding"] == 2  # the halt covers both funds' orders ...
    await b.killswitch.settle()  # ... but B cancels only its own
    assert venue_b.cancel_calls == [rb.order_id] and venue_b.canceled == [rb.order_id]
    assert venue_a.cancel_calls == []
    assert await status_of(store, ra.order_id) is S.ACCEPTED
    assert await status_of(store, rb.order_id) is S.CANCELED
    sweep = await store.sweep(str(h.context["sweep_id"]))
    assert sweep is not None and not sweep.finished and sweep.outstanding == 1
    change = make_change("global", "*", TradingState.HALTED, "operator", "global kill",
                         dt.datetime.now(dt.UTC))
    await a.enforce_state(change)  # A sees the change on the fan-out: it sweeps its part
    await a.killswitch.settle()
    assert venue_a.canceled == [ra.order_id]
    assert venue_b.cancel_calls == [rb.order_id]
    assert await status_of(store, ra.order_id) is S.CANCELED
    sweep = await store.sweep(str(h.context["sweep_id"]))
    assert sweep is not None and sweep.finished and sweep.outstanding == 0


# --- 8. a refused cancel is not ok -----------------------------------------------------------


async def test_cancel_refused_by_broker_is_not_ok(store: OrderStore, make: MakeOms) -> None:
    """When the broker refuses a cancel the order keeps working, so cancel() must answer
    ok=False (it used to answer ok=True whatever the broker said)."""
    broker = CancelRefusingBroker()
    oms = await make(broker)
    r = await oms.submit(order("c1", "10"))
    broker.refuse.add(r.order_id or "")
    reply = await oms.cancel(r.order_id or "")
    assert reply.ok is False
    assert reply.order_id == r.order_id
    assert broker.cancel_calls == [r.order_id] and broker.canceled == []
    assert await status_of(store, r.order_id) is S.ACCEPTED
    assert open_leaves(oms) == ({"AAPL": D(10)}, {})
