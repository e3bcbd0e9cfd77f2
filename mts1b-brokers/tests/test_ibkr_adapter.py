"""IbkrBroker against FakeTws: the field's known faults one by one, the id store, error
mapping, reconnects, pacing, snapshots and contract mapping (no live IB account is used)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import ClassVar

import pytest
from ib_async import Forex, Future, Option, Stock
from mts1b_brokers import get_broker
from mts1b_brokers.ibkr import IbkrBroker, JsonFileOrderStore, MemoryOrderStore, OrderRecord
from mts1b_brokers.ibkr.mapping import (
    UnsupportedOrder,
    ib_order,
    order_contract,
    session_route,
    to_contract,
)
from mts1b_brokers.testing.tws import FakeTws
from mts1b_foundation import (
    BrokerRejected,
    BrokerTransportError,
    BrokerUnknownOutcome,
    ConnectionState,
    CryptoPair,
    Equity,
    ExecType,
    ExecutionReport,
    Fill,
    FxPair,
    Order,
    OrderType,
    Side,
    TimeInForce,
    TradingSession,
)
from mts1b_foundation import Future as FutureInstrument
from mts1b_foundation import Option as OptionInstrument

ACCOUNT = "DU1234567"


@pytest.fixture
async def tws() -> AsyncIterator[FakeTws]:
    server = FakeTws(prices={"AAPL": Decimal(100)})
    await server.start()
    yield server
    await server.stop()


def broker_for(tws: FakeTws, **kw: object) -> IbkrBroker:
    options: dict[str, object] = {"request_timeout": 1.0, "commission_wait": 0.5,
                                  "reconnect_initial": 0.05}
    options.update(kw)
    return IbkrBroker(port=tws.port, client_id=7, **options)  # type: ignore[arg-type]


def state(broker: IbkrBroker) -> ConnectionState:
    """Read anew each time (mypy would keep the first reading's narrowed type)."""
    return broker.connection_state


def order(n: int | str, *, qty: int = 10, limit: str | None = "99.50",
          instrument: object = None) -> Order:
    return Order(order_id=f"ord-{n}", idempotency_key=f"k-{n}", fund_id="core",
                 strategy_id="s", instrument=instrument or Equity(symbol="AAPL"),
                 side=Side.BUY, quantity=Decimal(qty),
                 order_type=OrderType.LIMIT if limit else OrderType.MARKET,
                 limit_price=Decimal(limit) if limit else None, time_in_force=TimeInForce.GTC)


class Reports:
    def __init__(self, broker: IbkrBroker) -> None:
        self.seen: list[ExecutionReport] = []
        self._task = asyncio.create_task(self._run(broker.execution_reports()))

    async def _run(self, stream: AsyncIterator[ExecutionReport]) -> None:
        async for r in stream:
            self.seen.append(r)

    async def until(self, oid: str, exec_type: ExecType, timeout: float = 3) -> ExecutionReport:
        for _ in range(int(timeout / 0.02)):
            found = [r for r in self.seen if r.order_id == oid and r.exec_type is exec_type]
            if found:
                return found[-1]
            await asyncio.sleep(0.02)
        raise AssertionError(f"no {exec_type} for {oid}: {[r.exec_type for r in self.seen]}")

    def types(self, oid: str) -> list[ExecType]:
        return [r.exec_type for r in self.seen if r.order_id == oid]

    def close(self) -> None:
        self._task.cancel()


async def test_id_is_recorded_before_place_order_and_found_after_a_restart(
        tws: FakeTws, tmp_path: Path) -> None:
    path = tmp_path / "ibkr-orders.json"

    class Watching(JsonFileOrderStore):
        placed_before_first_put: ClassVar[list[bool]] = []

        def put(self, record: OrderRecord) -> None:
            self.placed_before_first_put.append(bool(tws.placed(record.order_id)))
            super().put(record)

    store = Watching(path)
    first = IbkrBroker(port=tws.port, client_id=7, store=store)
    await first.connect()
    ack = await first.submit(order(1))
    assert ack.exec_type is ExecType.ACK and ack.broker_order_id is not None
    assert store.placed_before_first_put[0] is False  # the record came first
    ib_id = tws.placed("ord-1")[0].order_id
    assert str(ib_id) == ack.broker_order_id
    assert tws.placed("ord-1")[0].order_ref == "ord-1"  # our id travels in orderRef
    await first.close()

    # a new process with the same store file: finds the order, cancels it at IB
    second = IbkrBroker(port=tws.port, client_id=7, store=str(path))
    await second.connect()
    status = await second.order_status("ord-1")
    assert status is not None and status.exec_type is ExecType.ACK
    assert status.broker_order_id == str(ib_id)
    canceled = await second.cancel("ord-1")
    assert canceled.exec_type is ExecType.CANCELED
    assert tws.orders[ib_id].status == "Cancelled"
    assert await second.order_status("never-sent") is None
    await second.close()
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"ibkr-orders\.json"):
        JsonFileOrderStore(path)


async def test_reject_carries_ib_code_and_text_and_is_never_resent(tws: FakeTws) -> None:
    broker = broker_for(tws)
    await broker.connect()
    reports = Reports(broker)
    tws.faults.reject_next = (201, "Order rejected - reason:Trading is not allowed")
    with pytest.raises(BrokerRejected) as caught:
        await broker.submit(order(1))
    assert caught.value.context["venue_code"] == "201"
    assert caught.value.context["venue_message"] == "Order rejected - reason:Trading is not allowed"
    reject = await reports.until("ord-1", ExecType.REJECT)
    assert reject.venue_code == "201" and reject.reason is not None
    assert reject.reason.startswith("201: Order rejected")
    with pytest.raises(BrokerRejected):
        await broker.submit(order(1))  # the same id again: the same answer, nothing sent
    placed = [f for f in tws.received if f[0] == "3"]
    assert len(placed) == 1
    status = await broker.order_status("ord-1")
    assert status is not None and status.exec_type is ExecType.REJECT
    with pytest.raises(BrokerRejected) as tick:  # IB error 110 -> TICK_SIZE
        await broker.submit(order(2, limit="99.505"))
    assert tick.value.context["reason_code"] == "TICK_SIZE"
    reports.close()
    await broker.close()


async def test_error_10349_does_not_cancel_and_the_order_fills(tws: FakeTws) -> None:
    broker = broker_for(tws)
    await broker.connect()
    reports = Reports(broker)
    tws.faults.warn_10349_next = True
    await broker.submit(order(1))
    # 10349 went out right behind the order's acceptance, ahead of any fill on the socket
    assert any(d == "out" and b"\x0010349\x00" in data for d, data in tws.transcript)
    await tws.trade("AAPL", Decimal("99.50"), Decimal(100))
    fill = await reports.until("ord-1", ExecType.FILL)
    assert fill.cumulative_quantity == 10 and fill.commission == Decimal("1.00")
    assert ExecType.CANCELED not in reports.types("ord-1")
    reports.close()
    await broker.close()


async def test_fills_without_order_status_and_a_cancel_known_by_error_202(
        tws: FakeTws) -> None:
    tws.faults.drop_order_status = True
    broker = broker_for(tws)
    await broker.connect()
    reports = Reports(broker)
    assert (await broker.submit(order(1))).exec_type is ExecType.ACK  # from openOrder
    await tws.trade("AAPL", Decimal("99.40"), Decimal(4))
    part = await reports.until("ord-1", ExecType.PARTIAL_FILL)
    assert (part.last_quantity, part.last_price, part.cumulative_quantity,
            part.leaves_quantity, part.commission) == (
        Decimal(4), Decimal("99.40"), Decimal(4), Decimal(6), Decimal("1.00"))
    assert part.trade_id == "0000e0d5.00000001.01"  # the execId before its last period
    canceled = await broker.cancel("ord-1")
    assert (canceled.exec_type, canceled.cumulative_quantity, canceled.venue_code) == (
        ExecType.CANCELED, Decimal(4), "202")
    assert not [d for d, data in tws.transcript  # no orderStatus was sent
                if d == "out" and data[4:6] == b"3\0"]
    reports.close()
    await broker.close()


async def test_a_fill_that_races_the_cancel_wins(tws: FakeTws) -> None:
    broker = broker_for(tws)
    await broker.connect()
    reports = Reports(broker)
    await broker.submit(order(1))
    tws.faults.fill_before_cancel_next = True
    answer = await broker.cancel("ord-1")
    assert answer.exec_type is ExecType.CANCEL_REJECT and answer.venue_code == "10148"
    fill = await reports.until("ord-1", ExecType.FILL)
    assert fill.cumulative_quantity == 10
    assert ExecType.CANCELED not in reports.types("ord-1")
    reports.close()
    await broker.close()


async def test_a_timeout_is_an_unknown_outcome_resolved_by_reconciliation(
        tws: FakeTws) -> None:
    broker = broker_for(tws, request_timeout=0.3)
    await broker.connect()
    tws.faults.silence_next_place = True
    with pytest.raises(BrokerUnknownOutcome):
        await broker.submit(order(1))
    status = await broker.order_status("ord-1")  # asks IB's open orders: it is there
    assert status is not None and status.exec_type is ExecType.ACK
    again = await broker.submit(order(1))
    assert again.exec_type is ExecType.ACK
    assert len(tws.placed("ord-1")) == 1
    assert len([f for f in tws.received if f[0] == "3"]) == 1  # never re-sent
    await broker.close()


async def test_corrections_stream_and_duplicate_executions(tws: FakeTws) -> None:
    broker = broker_for(tws)
    await broker.connect()
    reports = Reports(broker)
    corrected: list[Fill] = []

    async def follow() -> None:
        async for fill in broker.corrections():
            corrected.append(fill)

    follower = asyncio.create_task(follow())
    await broker.submit(order(1))
    tws.faults.duplicate_next_execution = True
    await tws.trade("AAPL", Decimal("99.50"), Decimal(10))
    first = await reports.until("ord-1", ExecType.FILL)
    new = await tws.correct_execution(price=Decimal("99.45"))
    for _ in range(100):
        if corrected:
            break
        await asyncio.sleep(0.02)
    (fill,) = corrected
    assert fill.trade_id == first.trade_id and new.exec_id.endswith(".02")
    assert (fill.price, fill.quantity, fill.fund_id) == (Decimal("99.45"), Decimal(10), "core")
    assert reports.types("ord-1") == [ExecType.ACK, ExecType.FILL]
    status = await broker.order_status("ord-1")
    assert status is not None and status.last_price == Decimal("99.45")
    follower.cancel()
    reports.close()
    await broker.close()


async def test_reconnects_with_backoff_alerts_while_down_and_resyncs(tws: FakeTws) -> None:
    alerts: list[str] = []
    broker = broker_for(tws, on_alert=alerts.append)
    await broker.connect()
    reports = Reports(broker)
    await broker.submit(order(1))
    port = tws.port
    await tws.stop()  # the gateway goes away (daily reset)
    for _ in range(50):
        if state(broker) is ConnectionState.RECONNECTING and len(alerts) >= 2:
            break
        await asyncio.sleep(0.02)
    assert state(broker) is ConnectionState.RECONNECTING
    assert "disconnected" in alerts[0]
    assert any("reconnect attempt" in a for a in alerts[1:])
    with pytest.raises(BrokerTransportError):
        await broker.submit(order(2))
    await tws.start(port)  # back, with a fill made while we were away
    await tws.trade("AAPL", Decimal("99.50"), Decimal(10))
    for _ in range(150):
        if state(broker) is ConnectionState.CONNECTED:
            break
        await asyncio.sleep(0.02)
    assert state(broker) is ConnectionState.CONNECTED
    fill = await reports.until("ord-1", ExecType.FILL)
    assert fill.cumulative_quantity == 10
    reports.close()
    await broker.close()


async def test_nothing_listening_is_a_transport_error() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    broker = IbkrBroker(port=port, client_id=7, connect_timeout=0.5)
    with pytest.raises(BrokerTransportError, match="cannot connect"):
        await broker.connect()
    assert state(broker) is ConnectionState.DISCONNECTED


async def test_pacing_keeps_to_45_requests_a_second(tws: FakeTws) -> None:
    broker = broker_for(tws, request_timeout=3.0)
    await broker.connect()
    start = len(tws.received)
    acks = await asyncio.gather(*(broker.submit(order(n, limit="90.00")) for n in range(50)))
    assert {a.exec_type for a in acks} == {ExecType.ACK}
    times = [t for f, t in zip(tws.received[start:], tws.received_at[start:], strict=True)
             if f[0] == "3"]
    assert len(times) == 50
    assert times[45] - times[0] >= 0.5  # the 46th waited for the one-second window
    assert tws.pacing_violations == 0
    await broker.close()
    # without the throttle IB's 50/s cap is broken: the control that the check can fail
    hasty = broker_for(tws, request_timeout=0.5, max_requests_per_second=1000)
    await hasty.connect()
    outcomes = await asyncio.gather(*(hasty.submit(order(f"h{n}", limit="90.00"))
                                      for n in range(60)), return_exceptions=True)
    assert tws.pacing_violations > 0
    assert any(isinstance(o, BrokerUnknownOutcome) for o in outcomes)
    await hasty.close()


async def test_tws_losing_ib_alerts_and_its_return_resyncs(tws: FakeTws) -> None:
    alerts: list[str] = []
    broker = broker_for(tws, on_alert=alerts.append)
    await broker.connect()
    tws.connectivity(1100)
    for _ in range(100):
        if alerts:
            break
        await asyncio.sleep(0.02)
    assert any("lost its connection to IB" in a for a in alerts)
    asked = sum(1 for f in tws.received if f[0] == "5")  # reqOpenOrders
    tws.connectivity(1102)
    for _ in range(50):
        if sum(1 for f in tws.received if f[0] == "5") > asked:
            break
        await asyncio.sleep(0.02)
    assert sum(1 for f in tws.received if f[0] == "5") == asked + 1
    assert state(broker) is ConnectionState.CONNECTED
    await broker.close()


async def test_account_and_position_snapshots(tws: FakeTws) -> None:
    broker = broker_for(tws)
    await broker.connect()
    reports = Reports(broker)
    await broker.submit(order(1, limit=None))
    await tws.trade("AAPL", Decimal("101.25"), Decimal(10))
    await reports.until("ord-1", ExecType.FILL)
    (pos,) = await broker.positions(ACCOUNT)
    assert (pos.symbol, pos.quantity, pos.avg_cost) == ("AAPL", Decimal(10), Decimal("101.25"))
    snap = await broker.account(ACCOUNT)
    assert snap.cash == Decimal(1_000_000) - Decimal("1012.5")
    assert snap.equity == Decimal(1_000_000) and snap.positions == {"AAPL": Decimal(10)}
    with pytest.raises(BrokerRejected, match="ACCOUNT_NOT_FOUND"):
        await broker.account("DU0000000")
    reports.close()
    await broker.close()


async def test_contracts_for_options_futures_and_fx(tws: FakeTws) -> None:
    opt = to_contract(OptionInstrument(symbol="AAPL240119C00190000", underlying="AAPL",
                                       expiry=dt.date(2024, 1, 19), strike=Decimal(190),
                                       right="call"))
    assert isinstance(opt, Option)
    assert (opt.symbol, opt.lastTradeDateOrContractMonth, opt.strike, opt.right,
            opt.multiplier) == ("AAPL", "20240119", 190.0, "C", "100")
    fut = to_contract(FutureInstrument(symbol="ESH4", root="ES", expiry=dt.date(2024, 3, 15),
                                       multiplier=Decimal(50), venue="CME"))
    assert isinstance(fut, Future)
    assert (fut.symbol, fut.exchange, fut.multiplier) == ("ES", "CME", "50")
    fx = to_contract(FxPair(symbol="EURUSD", base="EUR", quote="USD"))
    assert isinstance(fx, Forex) and (fx.symbol, fx.currency, fx.exchange) == (
        "EUR", "USD", "IDEALPRO")
    assert isinstance(to_contract(Equity(symbol="AAPL")), Stock)
    crypto = CryptoPair(symbol="BTC-USD", base="BTC", quote="USD")
    with pytest.raises(UnsupportedOrder, match="asset_class 'crypto'"):
        to_contract(crypto)
    broker = broker_for(tws)
    await broker.connect()
    with pytest.raises(BrokerRejected, match="UNSUPPORTED"):
        await broker.submit(order("c", instrument=crypto, limit=None))
    fx_ack = await broker.submit(order("fx", limit="1.09", instrument=FxPair(
        symbol="EURUSD", base="EUR", quote="USD", tick_size=Decimal("0.01"))))
    assert fx_ack.exec_type is ExecType.ACK
    (venue_order,) = tws.placed("ord-fx")
    assert (venue_order.contract.sec_type, venue_order.contract.symbol,
            venue_order.contract.currency) == ("CASH", "EUR", "USD")
    await broker.close()


async def test_registered_as_ibkr_entry_point(tws: FakeTws) -> None:
    broker = get_broker("ibkr", port=tws.port, client_id=9, store=MemoryOrderStore())
    assert isinstance(broker, IbkrBroker) and broker.name == "ibkr"
    async with broker:
        assert state(broker) is ConnectionState.CONNECTED
    assert state(broker) is ConnectionState.DISCONNECTED


async def test_a_silent_gateway_is_found_by_the_heartbeat(tws: FakeTws) -> None:
    alerts: list[str] = []
    broker = broker_for(tws, heartbeat_interval=0.1, heartbeat_timeout=0.2,
                        connect_timeout=0.3, on_alert=alerts.append)
    await broker.connect()
    tws.faults.unresponsive = True  # the socket stays open, nothing answers
    for _ in range(100):
        if any("heartbeat" in a for a in alerts):
            break
        await asyncio.sleep(0.02)
    assert any("did not answer a heartbeat" in a for a in alerts)
    assert state(broker) is ConnectionState.RECONNECTING
    tws.faults.unresponsive = False
    for _ in range(150):
        if state(broker) is ConnectionState.CONNECTED:
            break
        await asyncio.sleep(0.02)
    assert state(broker) is ConnectionState.CONNECTED
    assert (await broker.submit(order(1))).exec_type is ExecType.ACK
    await broker.close()


async def test_never_reuses_an_ib_id_it_recorded(tws: FakeTws, tmp_path: Path) -> None:
    path = tmp_path / "orders.json"
    store = JsonFileOrderStore(path)
    store.put(OrderRecord(order_id="old", ib_order_id=41, account=ACCOUNT,
                          order_json=order("old").model_dump_json(), state="done"))
    broker = IbkrBroker(port=tws.port, client_id=7, store=str(path))
    await broker.connect()  # this gateway says nextValidId 1
    ack = await broker.submit(order(1))
    assert int(ack.broker_order_id or 0) > 41
    await broker.close()


async def test_options_futures_and_fx_trade_beside_the_stock(tws: FakeTws) -> None:
    """Submit, replace, fill and cancel for an option, a future and an FX pair next to a
    position in the option's underlying: each position under our symbol."""
    broker = broker_for(tws)
    await broker.connect()
    reports = Reports(broker)
    call = OptionInstrument(symbol="AAPL240119C00190000", underlying="AAPL",
                            expiry=dt.date(2024, 1, 19), strike=Decimal(190), right="call")
    es = FutureInstrument(symbol="ESH4", root="ES", expiry=dt.date(2024, 3, 15),
                          multiplier=Decimal(50), venue="CME")
    eur = FxPair(symbol="EURUSD", base="EUR", quote="USD", tick_size=Decimal("0.0001"))
    await broker.submit(order("stk", limit=None))
    await tws.trade("AAPL", Decimal("100.00"), Decimal(10))
    await reports.until("ord-stk", ExecType.FILL)
    for name, inst, limit in (("opt", call, "2.50"), ("fut", es, "4700.25"),
                              ("fx", eur, "1.0950")):
        ack = await broker.submit(order(name, qty=4, limit=limit, instrument=inst))
        assert ack.exec_type is ExecType.ACK
        replaced = await broker.replace(f"ord-{name}", quantity=Decimal(3))
        assert replaced.exec_type is ExecType.REPLACED and replaced.leaves_quantity == 3
    keys = {n: tws.placed(f"ord-{n}")[0].contract.key for n in ("opt", "fut", "fx")}
    assert keys == {"opt": "AAPL OPT 20240119 190C", "fut": "ES FUT 20240315",
                    "fx": "EUR.USD"}
    await tws.trade(keys["opt"], Decimal("2.50"), Decimal(3))
    await tws.trade(keys["fx"], Decimal("1.0950"), Decimal(1))
    await reports.until("ord-opt", ExecType.FILL)
    await reports.until("ord-fx", ExecType.PARTIAL_FILL)
    held = {p.symbol: p.quantity for p in await broker.positions(ACCOUNT)}
    assert held == {"AAPL": Decimal(10), "AAPL240119C00190000": Decimal(3),
                    "EURUSD": Decimal(1)}
    for name in ("fut", "fx"):
        assert (await broker.cancel(f"ord-{name}")).exec_type is ExecType.CANCELED
    reports.close()
    await broker.close()


async def test_orders_ib_holds_that_the_store_lost_are_not_placed_again(tws: FakeTws) -> None:
    first = broker_for(tws)  # an in-memory store, lost with the "process"
    await first.connect()
    reports = Reports(first)
    await first.submit(order(1))
    await first.submit(order(2))
    await tws.trade("AAPL", Decimal("99.50"), Decimal(4))
    await reports.until("ord-1", ExecType.PARTIAL_FILL)
    await first.cancel("ord-2")
    reports.close()
    await first.close()

    second = broker_for(tws)  # a new process with an empty store
    await second.connect()
    working = await second.order_status("ord-1")
    assert working is not None
    assert (working.exec_type, working.cumulative_quantity, working.leaves_quantity) == (
        ExecType.ACK, Decimal(4), Decimal(6))
    ended = await second.order_status("ord-2")
    assert ended is not None and ended.exec_type is ExecType.CANCELED
    assert await second.order_status("ord-3") is None
    again = await second.submit(order(1))
    assert again.exec_type is ExecType.ACK and len(tws.placed("ord-1")) == 1
    await second.close()


async def test_ready_only_after_next_valid_id_and_managed_accounts(tws: FakeTws) -> None:
    tws.faults.withhold_managed_accounts = True
    waiting = broker_for(tws, connect_timeout=0.3)
    with pytest.raises(BrokerTransportError, match="cannot connect"):
        await waiting.connect()
    assert state(waiting) is ConnectionState.DISCONNECTED
    tws.faults.withhold_managed_accounts = False
    tws.faults.accounts_first = True  # either order will do
    broker = broker_for(tws)
    await broker.connect()
    assert (await broker.submit(order(1))).exec_type is ExecType.ACK
    await broker.close()


def in_session(o: Order, session: TradingSession) -> Order:
    return o.model_copy(update={"session": session})


async def test_the_orders_session_sets_outside_rth_and_the_overnight_venue(
        tws: FakeTws) -> None:
    """What reaches TWS (the placeOrder's exchange and outsideRth fields, as FakeTws decodes
    them) for each session IB can keep; a replace sends them again unchanged."""
    broker = broker_for(tws)
    await broker.connect()
    for n, session in (("rth", TradingSession.RTH), ("pre", TradingSession.PRE),
                       ("post", TradingSession.POST), ("night", TradingSession.IBEOS)):
        ack = await broker.submit(in_session(order(n), session))
        assert ack.exec_type is ExecType.ACK
    seen = {n: (o.contract.exchange, o.outside_rth) for n in ("rth", "pre", "post", "night")
            for o in tws.placed(f"ord-{n}")}
    assert seen == {"rth": ("SMART", False), "pre": ("SMART", True),
                    "post": ("SMART", True), "night": ("OVERNIGHT", True)}
    replaced = await broker.replace("ord-night", limit_price=Decimal("99.40"))
    assert replaced.exec_type is ExecType.REPLACED
    (night,) = tws.placed("ord-night")
    assert (night.limit_price, night.contract.exchange, night.outside_rth) == (
        Decimal("99.4"), "OVERNIGHT", True)
    await broker.close()


async def test_a_session_ib_cannot_keep_is_refused_before_it_is_sent(tws: FakeTws) -> None:
    broker = broker_for(tws)
    await broker.connect()
    eurusd = FxPair(symbol="EURUSD", base="EUR", quote="USD")
    cases = [
        (in_session(order("pre-mkt", limit=None), TradingSession.PRE),
         "a market order cannot trade in the PRE session at IB"),
        (in_session(order("night-mkt", limit=None), TradingSession.IBEOS),
         "IB's overnight venue takes limit orders only"),
        (in_session(order("night-fx", limit="1.09", instrument=eurusd), TradingSession.IBEOS),
         "trades stocks and ETFs, not fx"),
        (in_session(order("h24"), TradingSession.H24), "session '24H' is not a session IB"),
        (in_session(order("h24x5"), TradingSession.H24X5),
         "session '24X5' is not a session IB trades equity"),
    ]
    for o, why in cases:
        with pytest.raises(BrokerRejected, match=why) as caught:
            await broker.submit(o)
        assert caught.value.context["reason_code"] == "UNSUPPORTED"
        assert o.order_id is not None and tws.placed(o.order_id) == []
        status = await broker.order_status(o.order_id)
        assert status is not None and status.exec_type is ExecType.REJECT
    assert [f for f in tws.received if f[0] == "3"] == []  # not one placeOrder left
    await broker.close()


def test_session_routes_without_a_gateway() -> None:
    eurusd = FxPair(symbol="EURUSD", base="EUR", quote="USD")
    stop_limit = order("sl").model_copy(update={
        "order_type": OrderType.STOP_LIMIT, "stop_price": Decimal("99")})
    assert session_route(in_session(stop_limit, TradingSession.POST)) == (True, None)
    assert session_route(in_session(order("fx", instrument=eurusd),
                                    TradingSession.H24X5)) == (True, None)
    assert session_route(order("plain")) == (False, None)
    with pytest.raises(UnsupportedOrder, match="limit and stop-limit orders only"):
        session_route(in_session(stop_limit.model_copy(update={
            "order_type": OrderType.STOP, "limit_price": None}), TradingSession.POST))
    night = order_contract(in_session(order("n"), TradingSession.IBEOS))
    assert isinstance(night, Stock) and night.exchange == "OVERNIGHT"
    assert ib_order(in_session(order("p"), TradingSession.PRE), ACCOUNT, 5).outsideRth is True
