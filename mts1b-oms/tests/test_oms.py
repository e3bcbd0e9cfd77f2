"""The OMS's lifecycle against both stores (in memory, and PostgreSQL as ``integration``):
idempotency, lifecycle persistence, outbox, kill switch. What only PostgreSQL does (another
process on the same database, migrations, query plans) is tested on ``pg_store``."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from mts1b_foundation import (
    DenialCode,
    ExecType,
    ExecutionReport,
    Fill,
    FundConfig,
    InMemoryPublisher,
    Order,
    OrderStatus,
    ReplaceRequest,
    SetTradingState,
    Side,
    TradingState,
)
from mts1b_oms.orderstore import OrderStore
from mts1b_oms.outbox import OutboxRelay
from mts1b_oms.store import Store
from mts1b_oms.testing import RecordingBroker, make_fund
from mts1b_oms.testing import make_order as order
from mts1b_oms.tradingstate import make_change

if TYPE_CHECKING:
    from conftest import MakeOms

DSN = os.environ.get("MTS_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
S = OrderStatus
D = Decimal


def fund(fund_id: str = "f1", **risk: Any) -> FundConfig:
    return make_fund(fund_id, name="Fund", broker_account_id=f"acc-{fund_id}", **risk)


async def test_submit_assigns_order_id_and_acks(
        store: OrderStore, broker: RecordingBroker, make: MakeOms) -> None:
    oms = await make(broker)
    reply = await oms.submit(order("k1"))
    assert reply.ok and reply.status is S.ACCEPTED and reply.order_id
    assert reply.order_id.startswith("ord-")
    assert broker.new_orders == [reply.order_id]
    st = await store.load_order(reply.order_id)
    assert st is not None and st.status is S.ACCEPTED
    assert [e["event_type"] for e in await store.events(reply.order_id)] == [
        "submitted", "accepted"]


async def test_idempotency_key_resolves_to_same_order(
        store: OrderStore, broker: RecordingBroker, make: MakeOms) -> None:
    oms = await make(broker)
    first = await oms.submit(order("same"))
    again = await oms.submit(order("same", qty="10.000"))  # the same number, written otherwise
    assert again.duplicate and again.ok and again.order_id == first.order_id
    assert broker.new_orders == [first.order_id] and len(broker.submissions) == 1
    # a fresh OMS on the same store (a restart) still knows the key
    oms2 = await make(broker)
    third = await oms2.submit(order("same"))
    assert third.duplicate and third.order_id == first.order_id


async def test_idempotency_window_expiry_creates_new_order(
        store: OrderStore, broker: RecordingBroker, make: MakeOms) -> None:
    class Clock:
        t = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)

        def now(self) -> dt.datetime:
            return self.t

    clock = Clock()
    oms = await make(broker, idempotency_window=dt.timedelta(seconds=10), clock=clock)
    a = await oms.submit(order("w"))
    clock.t += dt.timedelta(seconds=10)
    assert (await oms.submit(order("w"))).order_id == a.order_id  # at the edge: same
    clock.t += dt.timedelta(seconds=1)
    b = await oms.submit(order("w"))
    assert not b.duplicate and b.order_id != a.order_id


async def test_pending_order_resent_with_same_id_on_retry(
        store: OrderStore, broker: RecordingBroker, make: MakeOms) -> None:
    from mts1b_foundation import BrokerUnknownOutcome

    oms = await make(broker)
    real = broker.submit

    async def timeout(o: Order) -> ExecutionReport:
        raise BrokerUnknownOutcome("timeout after send")

    broker.submit = timeout  # type: ignore[method-assign]
    first = await oms.submit(order("u"))
    assert first.ok and first.status is S.PENDING
    broker.submit = real  # type: ignore[method-assign]
    again = await oms.submit(order("u"))
    assert again.duplicate and again.status is S.ACCEPTED and again.order_id == first.order_id
    assert broker.new_orders == [first.order_id]


async def test_denial_is_event_and_row_and_repeat_returns_it(
        store: OrderStore, broker: RecordingBroker, make: MakeOms) -> None:
    oms = await make(broker, fund(max_order_quantity=D(5)))
    reply = await oms.submit(order("big", qty="6"))
    assert not reply.ok and reply.status is S.DENIED and reply.code == "QUANTITY_EXCEEDS_MAXIMUM"
    assert reply.denial is not None and reply.denial.context["limit"] == "5"
    assert broker.submissions == []
    rows = await store.denials("f1")
    assert [(r["code"], r["gate"]) for r in rows] == [("QUANTITY_EXCEEDS_MAXIMUM", "order_size")]
    again = await oms.submit(order("big", qty="6"))  # a DENIED key may be tried again:
    assert not again.duplicate and again.order_id != reply.order_id  # a new, linked attempt
    assert again.denial == reply.denial and again.context["previous_order_id"] == reply.order_id
    assert broker.submissions == []


async def test_broker_reject(
        store: OrderStore, broker: RecordingBroker, make: MakeOms) -> None:
    oms = await make(broker)
    broker.reject_next = "no buying power"
    reply = await oms.submit(order("r"))
    assert not reply.ok and reply.status is S.REJECTED
    ev = await store.events(reply.order_id or "")
    assert ev[-1]["reason"] == "no buying power"


async def test_fills_update_positions_once_per_trade(
        store: OrderStore, broker: RecordingBroker, make: MakeOms) -> None:
    oms = await make(broker)
    r = await oms.submit(order("f", qty="10"))
    oid = r.order_id or ""
    now = dt.datetime.now(dt.UTC)
    rep = ExecutionReport(broker="paper", account_id="acc-f1", order_id=oid,
                          exec_type=ExecType.PARTIAL_FILL, ts=now, trade_id="T1", symbol="AAPL",
                          side=Side.BUY, last_quantity=D(4), last_price=D(100))
    await oms.on_execution_report(rep)
    await oms.on_execution_report(rep)  # duplicate trade id: applied once
    assert oms.positions("f1") == {"AAPL": D(4)}
    await oms.on_execution_report(rep.model_copy(update={
        "trade_id": "T2", "exec_type": ExecType.FILL, "last_quantity": D(6),
        "last_price": D(110)}))
    st = await store.load_order(oid)
    assert st is not None and st.status is S.FILLED
    [(_, _, _, p)] = await store.positions("f1")
    assert p.quantity == 10 and p.avg_cost == D(106)
    # overfill refused and alerted, nothing changes
    await oms.on_execution_report(rep.model_copy(update={"trade_id": "T3"}))
    assert oms.positions("f1") == {"AAPL": D(10)}
    assert any("impossible" in a.text or "overfill" in a.text for a in oms.alerts)
    # bust T2: the position is rebuilt from what stands
    await oms.bust(oid, "T2")
    [(_, _, _, p)] = await store.positions("f1")
    assert p.quantity == 4 and p.avg_cost == 100
    assert (await store.load_order(oid)).status is S.PARTIALLY_FILLED  # type: ignore[union-attr]
    # correction of T1's price
    await oms.correct(Fill(trade_id="T1", order_id=oid, fund_id="f1", symbol="AAPL",
                           side=Side.BUY, quantity=D(4), price=D(90), ts=now))
    [(_, _, _, p)] = await store.positions("f1")
    assert p.quantity == 4 and p.avg_cost == 90


async def test_cancel_and_replace(
        store: OrderStore, broker: RecordingBroker, make: MakeOms) -> None:
    oms = await make(broker)
    r = await oms.submit(order("c", qty="10"))
    oid = r.order_id or ""
    rep = await oms.replace(ReplaceRequest(order_id=oid, quantity=D(20)))
    assert rep.ok and rep.status is S.ACCEPTED
    assert (await store.load_order(oid)).quantity == 20  # type: ignore[union-attr]
    c = await oms.cancel(oid)
    assert c.ok and c.status is S.CANCELED and broker.canceled == [oid]
    again = await oms.cancel(oid)
    assert not again.ok and again.code == "ORDER_NOT_OPEN"
    unknown = await oms.cancel("ord-nope")
    assert unknown.code == "ORDER_NOT_FOUND"


async def test_impossible_report_is_alert_not_crash(
        store: OrderStore, broker: RecordingBroker, make: MakeOms) -> None:
    oms = await make(broker)
    r = await oms.submit(order("i"))
    oid = r.order_id or ""
    await oms.cancel(oid)
    st = await oms.on_execution_report(ExecutionReport(
        broker="paper", account_id="a", order_id=oid, exec_type=ExecType.REPLACED,
        ts=dt.datetime.now(dt.UTC)))
    assert st is not None and st.status is S.CANCELED
    assert oms.alerts and "impossible transition" in oms.alerts[-1].text


async def test_outbox_relay_publishes_each_event_once(
        store: OrderStore, broker: RecordingBroker, make: MakeOms) -> None:
    pub = InMemoryPublisher()
    relay = OutboxRelay(store, pub)
    oms = await make(broker, relay=relay)
    r = await oms.submit(order("o"))
    await oms.cancel(r.order_id or "")
    assert await relay.drain() == 4
    assert await relay.drain() == 0
    subjects = [s for s, _, _ in pub.published]
    assert subjects == ["mts.v1.oms.orders.submitted", "mts.v1.oms.orders.accepted",
                        "mts.v1.oms.orders.cancel_requested", "mts.v1.oms.orders.canceled"]
    assert all(msg_id == m.event_id for _, m, msg_id in pub.published)  # type: ignore[attr-defined]


async def test_outbox_failed_publish_stays_for_retry(
        store: OrderStore, broker: RecordingBroker, make: MakeOms) -> None:
    class Flaky(InMemoryPublisher):
        fail = True

        async def publish(self, subject: str, message: Any, *, msg_id: str | None = None) -> None:
            if self.fail:
                raise RuntimeError("nats down")
            await super().publish(subject, message, msg_id=msg_id)

    pub = Flaky()
    relay = OutboxRelay(store, pub)
    oms = await make(broker)
    await oms.submit(order("x"))
    with pytest.raises(RuntimeError):
        await relay.publish_pending()
    assert await store.unpublished_count() == 2
    pub.fail = False
    assert await relay.drain() == 2


async def test_relay_publishes_from_memory_and_sweeps_what_it_was_not_handed(
        pg_store: Store, broker: RecordingBroker, make: MakeOms) -> None:
    """The relay publishes the rows its store hands over at commit without reading them back;
    rows it was not handed (another process's writes, a crashed process's leftovers) are found
    by the sweep, but only once they are ``sweep_after_seconds`` old."""
    store = pg_store
    pub = InMemoryPublisher()
    relay = OutboxRelay(store, pub, sweep_after_seconds=3600)
    oms = await make(broker, store=store)
    await oms.submit(order("mine"))
    other = await Store.open(DSN, schema=store.schema)
    try:  # another process on the same database: its rows never reach this relay's memory
        foreign = await make(RecordingBroker(), store=other)
        await foreign.submit(order("theirs"))
        await foreign.stop()
    finally:
        await other.close()
    assert await relay.publish_pending() == 2  # this store's two events, from memory
    assert await store.unpublished_count() == 2  # the other process's two
    assert await relay.publish_pending() == 0  # too young for the sweep
    assert await relay.sweep(dt.timedelta(0)) == 2
    assert await store.unpublished_count() == 0
    keys = [m.order.idempotency_key for _, m, _ in pub.published  # type: ignore[attr-defined]
            if m.event_type.value == "submitted"]
    assert keys == ["mine", "theirs"]
    relay.close()
    await oms.submit(order("after-close"))  # a detached relay is handed nothing more
    assert await relay.publish_pending() == 0
    assert await relay.drain() == 2  # but the table still has it for any sweep


async def test_relay_publishing_again_after_a_lost_mark_sends_the_same_msg_ids(
        store: OrderStore, broker: RecordingBroker, make: MakeOms) -> None:
    """Published, then the mark never happened (the process died): the sweep publishes the
    rows again with the same Nats-Msg-Id, which the stream's duplicate window drops."""
    pub = InMemoryPublisher()
    relay = OutboxRelay(store, pub)
    oms = await make(broker)
    await oms.submit(order("lost-mark"))

    async def no_mark(msg_ids: Any) -> None:
        raise ConnectionError("database gone")

    real_mark = store.mark_published
    store.mark_published = no_mark  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await relay.publish_pending()
    store.mark_published = real_mark  # type: ignore[method-assign]
    first = [msg_id for _, _, msg_id in pub.published]
    assert len(first) == 2 and await store.unpublished_count() == 2
    assert await relay.drain() == 2
    assert [msg_id for _, _, msg_id in pub.published] == first + first
    assert await store.unpublished_count() == 0


async def test_running_relay_writes_the_marks_of_several_batches_in_one_delete(
        store: OrderStore, broker: RecordingBroker, make: MakeOms) -> None:
    """The running relay holds the marks of what it published and deletes them together;
    a sweep writes the held marks first, so nothing already out is published a second time,
    and held marks are written within ``mark_linger_seconds`` with no more traffic."""
    pub = InMemoryPublisher()
    deletes: list[int] = []
    real_mark = store.mark_published

    async def counted(msg_ids: Any) -> None:
        await real_mark(msg_ids)
        deletes.append(len(msg_ids))  # once written: the test reads the table after it

    store.mark_published = counted  # type: ignore[method-assign]
    relay = OutboxRelay(store, pub, linger_seconds=0, idle_seconds=60,
                        sweep_after_seconds=3600, mark_linger_seconds=3600)
    oms = await make(broker, relay=relay)
    relay.start()
    try:
        for i in range(3):  # one after another: the relay publishes in several batches
            await oms.submit(order(f"held-{i}"))
            for _ in range(200):
                if len(pub.published) == 2 * (i + 1):
                    break
                await asyncio.sleep(0.01)
        assert len(pub.published) == 6
        assert deletes == [] and await store.unpublished_count() == 6  # marks held
        assert await relay.sweep(dt.timedelta(0)) == 0  # writes them, then finds nothing
        assert deletes == [6] and await store.unpublished_count() == 0
        assert len(pub.published) == 6  # nothing went out twice
        relay.mark_linger = 0.05
        await oms.submit(order("held-3"))
        for _ in range(300):
            if deletes == [6, 2]:
                break
            await asyncio.sleep(0.01)
        assert deletes == [6, 2] and await store.unpublished_count() == 0
    finally:
        await relay.stop()
        store.mark_published = real_mark  # type: ignore[method-assign]


async def test_halt_cancels_working_orders_and_only_resume_clears(
        store: OrderStore, broker: RecordingBroker, make: MakeOms) -> None:
    oms = await make(broker, fund("f1"), fund("f2"))
    a = await oms.submit(order("a1"))
    b = await oms.submit(order("b1", fund_id="f2"))
    reply = await oms.set_trading_state(SetTradingState(
        scope="fund", scope_id="f1", state=TradingState.HALTED, actor="ops", reason="test"))
    assert reply.ok and reply.context["outstanding"] == 1
    await oms.killswitch.settle()
    assert (await store.load_order(a.order_id or "")).status is S.CANCELED  # type: ignore[union-attr]
    assert (await store.load_order(b.order_id or "")).status is S.ACCEPTED  # type: ignore[union-attr]
    denied = await oms.submit(order("a2"))
    assert denied.code == DenialCode.TRADING_HALTED.value
    # the halt survives a restart (PostgreSQL is the system of record)
    oms2 = await make(broker, fund("f1"), fund("f2"))
    assert (await oms2.submit(order("a3"))).code == DenialCode.TRADING_HALTED.value
    await oms2.set_trading_state(SetTradingState(
        scope="fund", scope_id="f1", state=TradingState.ACTIVE, actor="ops", reason="ok"))
    assert (await oms2.submit(order("a4"))).ok


async def test_global_halt_cancels_everything(
        store: OrderStore, broker: RecordingBroker, make: MakeOms) -> None:
    oms = await make(broker, fund("f1"), fund("f2"))
    await oms.submit(order("g1"))
    await oms.submit(order("g2", fund_id="f2"))
    reply = await oms.halt(actor="ops", reason="all")
    assert reply.context["outstanding"] == 2
    await oms.killswitch.settle()
    assert await store.open_orders() == []


async def test_drawdown_breach_switches_fund_state(
        store: OrderStore, broker: RecordingBroker, make: MakeOms) -> None:
    oms = await make(broker, fund(max_drawdown_pct=D("0.1"),
                                  drawdown_action=TradingState.REDUCING))
    await oms.update_nav("f1", D(1_000_000))
    await oms.update_nav("f1", D(800_000))
    reply = await oms.submit(order("dd"))
    assert reply.code == "DRAWDOWN_HALT"
    assert oms.states.get("fund", "f1") is TradingState.REDUCING
    assert (await store.trading_states()) == [("fund", "f1", TradingState.REDUCING)]


async def test_reconcile_reports_mismatch(make: MakeOms) -> None:
    broker = RecordingBroker(fill_price="100")
    oms = await make(broker)
    await oms.submit(order("p1", qty="10"))
    assert await oms.reconcile("f1") == []
    broker.held_positions["AAPL"] = D(12)
    [m] = await oms.reconcile("f1")
    assert (m.symbol, m.oms_quantity, m.broker_quantity) == ("AAPL", D(10), D(12))
    assert oms.positions("f1") == {"AAPL": D(10)}  # reported, not overwritten


async def test_migrations_are_versioned_and_idempotent(pg_store: Store) -> None:
    assert await pg_store.migration_versions() == [1, 2, 3, 4, 5, 6, 7, 8]
    assert await pg_store.migrate() == []


async def test_concurrent_submissions_cannot_overrun_the_position_cap(
        store: OrderStore, broker: RecordingBroker, make: MakeOms) -> None:
    """The NATS service submits concurrently. Each order's quantity is reserved in the book
    the moment its gates pass, before the commit, so six concurrent orders of 30 against a cap
    of 100 shares (1% of 1,000,000 at 100) let exactly three through."""
    oms = await make(broker, fund(max_position_pct_nav=D("0.01")))
    replies = await asyncio.gather(*(oms.submit(order(f"cap-{i}", qty="30")) for i in range(6)))
    assert sorted(r.status.value for r in replies if r.status) == ["accepted"] * 3 + [
        "denied"] * 3
    assert {r.code for r in replies if not r.ok} == {DenialCode.POSITION_CAP.value}
    assert oms.gate_context(oms.funds["f1"], oms.clock.now()).open_buy == {"AAPL": D(90)}
    assert len(broker.new_orders) == 3


async def test_a_report_that_failed_to_apply_is_applied_when_sent_again(
        store: OrderStore, broker: RecordingBroker, make: MakeOms) -> None:
    """Reports are deduplicated by content, but a report is remembered only once it applied:
    a copy resent after a failed attempt (here the database write fails once) must not be
    skipped as already seen, or the fill would be lost."""
    oms = await make(broker)
    oid = (await oms.submit(order("k1", qty="10"))).order_id or ""
    report = ExecutionReport(broker="paper", account_id="acc-f1", order_id=oid,
                             exec_type=ExecType.FILL, ts=dt.datetime.now(dt.UTC), trade_id="T1",
                             symbol="AAPL", side=Side.BUY, last_quantity=D(10),
                             last_price=D(100))
    real = oms.apply
    calls = 0

    async def fails_once(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database went away")
        return await real(*args, **kwargs)

    oms.apply = fails_once  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await oms.on_execution_report(report)
    after = await oms.on_execution_report(report)
    assert after is not None and after.status is S.FILLED
    assert oms.positions("f1") == {"AAPL": D(10)}


async def test_concurrent_fills_on_one_position_are_all_counted(store: OrderStore,
                                                               make: MakeOms) -> None:
    """Fills of different orders on one (fund, strategy, symbol) arrive concurrently when the
    service handles submits at once and the broker fills synchronously. Each fill must build
    on the position left by the one before it, in memory and in the store: 40 buys of 1..40
    shares and then 20 sells of 1..20 leave 820 - 210 = 610 shares, as the broker holds."""
    broker = RecordingBroker(fill_price="100")
    oms = await make(broker)
    buys = await asyncio.gather(*(oms.submit(order(f"b{i}", qty=str(i)))
                                  for i in range(1, 41)))
    assert {r.status for r in buys} == {S.FILLED}
    sells = await asyncio.gather(*(oms.submit(order(f"s{i}", qty=str(i), side=Side.SELL))
                                   for i in range(1, 21)))
    assert {r.status for r in sells} == {S.FILLED}
    assert oms.positions("f1") == {"AAPL": D(610)}
    [(_f, _s, symbol, stored)] = await store.positions()
    assert (symbol, stored.quantity, stored.avg_cost, stored.realized_pnl) == (
        "AAPL", D(610), D(100), D(0))
    assert oms.position_states("f1")[("s1", "AAPL")] == stored
    assert broker.held_positions == {"AAPL": D(610)}
    assert await oms.reconcile("f1") == []


async def test_concurrent_repeats_of_one_key_make_one_order(
        store: OrderStore, broker: RecordingBroker, make: MakeOms) -> None:
    oms = await make(broker, fund(max_position_pct_nav=D("0.01")))
    replies = await asyncio.gather(*(oms.submit(order("twin", qty="30")) for _ in range(5)))
    assert len({r.order_id for r in replies}) == 1
    assert sum(r.duplicate for r in replies) == 4
    assert broker.new_orders == [replies[0].order_id]
    # the losers' reservations were released: only the one order counts as open
    assert oms.gate_context(oms.funds["f1"], oms.clock.now()).open_buy == {"AAPL": D(30)}


async def test_a_repeat_is_not_counted_as_another_execution(
        store: OrderStore, broker: RecordingBroker, make: MakeOms) -> None:
    oms = await make(broker, fund(max_repeated_executions=2))
    assert (await oms.submit(order("e1"))).ok
    assert (await oms.submit(order("e1"))).duplicate  # a retry of the first
    assert (await oms.submit(order("e2"))).ok  # the second execution: still allowed
    third = await oms.submit(order("e3"))
    assert not third.ok and third.code == DenialCode.REPEATED_EXECUTION.value


async def test_reducing_cancels_the_working_orders_that_add_risk(store: OrderStore,
                                                                make: MakeOms) -> None:
    broker = RecordingBroker(fill_price="100")
    oms = await make(broker)
    assert (await oms.submit(order("long", qty="100"))).status is S.FILLED  # long 100
    broker.fill_price = None  # from here orders stay working
    kept = [await oms.submit(order(k, qty=q, side=Side.SELL)) for k, q in (("s1", "60"),
                                                                          ("s2", "30"))]
    over = await oms.submit(order("s3", qty="20", side=Side.SELL))  # 110 in sells > 100 held
    more = await oms.submit(order("b1", qty="10"))  # adds to the long
    reply = await oms.set_trading_state(SetTradingState(
        scope="fund", scope_id="f1", state=TradingState.REDUCING, actor="risk", reason="test"))
    assert reply.context["outstanding"] == 2
    await oms.killswitch.settle()
    status = {r.order_id: (await store.load_order(r.order_id or "")).status  # type: ignore[union-attr]
              for r in (*kept, over, more)}
    assert [status[r.order_id] for r in kept] == [S.ACCEPTED, S.ACCEPTED]
    assert status[over.order_id] is S.CANCELED and status[more.order_id] is S.CANCELED


async def test_an_order_written_while_a_halt_lands_is_not_sent(
        store: OrderStore, broker: RecordingBroker, make: MakeOms) -> None:
    """The halt's cancel sweep can run between the gates and the commit of an order; the order
    must then be canceled locally instead of reaching the broker."""
    oms = await make(broker)
    create = store.create_order

    async def create_then_halt(*args: Any, **kwargs: Any) -> str | None:
        held = await create(*args, **kwargs)
        oms.apply_state_change(make_change("fund", "f1", TradingState.HALTED, "ops", "race",
                                           oms.clock.now()))
        return held

    store.create_order = create_then_halt  # type: ignore[method-assign]
    reply = await oms.submit(order("late"))
    assert not reply.ok and reply.code == DenialCode.TRADING_HALTED.value
    assert reply.status is S.CANCELED and broker.submissions == []
    assert (await store.load_order(reply.order_id or "")).status is S.CANCELED  # type: ignore[union-attr]


async def test_start_reconciles_positions_with_the_broker(make: MakeOms) -> None:
    broker = RecordingBroker(positions={"AAPL": D(5)})
    oms = await make(broker)
    assert [a.text for a in oms.alerts] == ["position mismatch f1 AAPL: oms 0 broker 5"]
    assert oms.positions("f1") == {}  # reported, not overwritten


async def test_store_plans_each_statement_for_the_tables_as_they_are(pg_store: Store) -> None:
    """A generic plan made while the tables were empty would be kept as they grow (autovacuum
    may never ANALYZE them) and scan the whole orders table per batch; custom plans do not."""
    async with pg_store.pool.acquire() as conn:
        assert await conn.fetchval("SHOW plan_cache_mode") == "force_custom_plan"
