"""A kill switch pulled while the paper stack trades: the halt reaches every book the same way.

Crosses: mts1b-oms (the service, its kill switch and its ``halt`` command), mts1b-brokers (the
paper venue behind its NATS broker service), mts1b-treasury (the service booking the OMS's
order events into its ledger, and the fund the OMS loads from it), mts1b-operations (the audit
recorder and the chain's verification) and mts1b-platform (the bus, signed commands).

Why it exists beside the per-library tests: mts1b-oms tests its sweep against broker doubles in
one process, the brokers test the venue's cancels alone, the treasury books fills it is handed
and the audit tests record events an OMS with a stand-in broker publishes. None of them shows
the one thing an operator relies on when pulling the switch mid-session: that the cancels
really leave the venue's book, that no fill arrives after the halt, and that the treasury, the
venue and the audit chain then agree on exactly what happened before it. Here every service is
the real one, each with its own NATS connection, over real NATS JetStream and PostgreSQL at
``MTS_NATS_URL`` / ``MTS_DATABASE_URL`` (the defaults of ``mts dev up`` when unset), each run in a
namespace and schemas of its own. The orders come straight to the OMS over NATS (the signal and
composer legs of the paper loop are not needed to have orders working at the venue).

The session: a daily bar prices AAPL and MSFT; three orders go in (100 AAPL at market, 800 MSFT
at market GTC, 50 AAPL limit 90 GTC); the next bar fills the first (100 at the open, 101), half
of the second (500 of 800 at 51: the venue takes at most half a bar's volume) and leaves the
limit working. Then ``mts mts1b-oms halt --fund ks --wait`` - and a bar that would have filled
both working orders.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from mts1b_foundation import (
    Bar,
    CommandReply,
    Equity,
    ExecType,
    Order,
    OrderStatus,
    OrderType,
    ReplyCode,
    Side,
    SubmitOrder,
    TimeInForce,
    TradingState,
    TradingStateChange,
    parse_message,
)
from mts1b_platform.bus import Bus

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FUND = "ks"
CASH = Decimal(1_000_000)
T0 = dt.datetime(2026, 11, 2, 21, 0, tzinfo=dt.UTC)  # daily bars, as a datalake replay sends
D = Decimal


def _bar(symbol: str, day: int, o: str, h: str, low: str, c: str) -> Bar:
    return Bar(symbol=symbol, ts=T0 + dt.timedelta(days=day), interval="1d", open=D(o),
               high=D(h), low=D(low), close=D(c), volume=D(1000))


async def _wait_for(check: Callable[[], Awaitable[bool]], what: str,
                    seconds: float = 30) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` (a liveness guard, not a timing)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Stack:
    """The running services of one test, and what the test reads them through."""

    bus: Bus
    venue: Any  # mts1b_brokers.PaperClient, served over NATS
    oms_store: Any  # mts1b_oms.store.Store (read only here)
    ledger: Any  # mts1b_treasury.ledger.Ledger
    audit: Any  # mts1b_operations.audit.chain.AuditChain
    oms_schema: str
    key_file: Path
    treasury_durable: str
    dsn: str
    nats_url: str

    async def publish_bars(self, *bars: Bar) -> None:
        """Bars on the datalake subjects, as the replay publishes them (core NATS); returns
        once the venue has taken the last one (its market time is that bar's)."""
        for b in bars:
            await self.bus.nc.publish(self.bus.wire_subject(f"mts.v1.datalake.bars.{b.symbol}"),
                                      b.to_json())
        await self.bus.nc.flush()
        last = bars[-1].ts

        async def taken() -> bool:
            return bool(self.venue.now() == last)

        await _wait_for(taken, f"the venue to take the bars of {last:%Y-%m-%d}")

    async def submit(self, key: str, symbol: str, qty: str, *, limit: str | None = None,
                     gtc: bool = False) -> CommandReply:
        order = Order(idempotency_key=key, fund_id=FUND, strategy_id="s1",
                      instrument=Equity(symbol=symbol), side=Side.BUY, quantity=D(qty),
                      order_type=OrderType.LIMIT if limit else OrderType.MARKET,
                      limit_price=D(limit) if limit else None,
                      time_in_force=TimeInForce.GTC if gtc else TimeInForce.DAY)
        reply = await self.bus.request("mts.v1.oms.commands.submit", SubmitOrder(order=order),
                                       timeout=10, reply_model=CommandReply)
        assert isinstance(reply, CommandReply)
        return reply

    async def status(self, order_id: str) -> OrderStatus | None:
        st = await self.oms_store.load_order(order_id)
        return None if st is None else st.status

    def venue_reports(self, *types: ExecType) -> list[tuple[str, ExecType, Decimal | None,
                                                          Decimal | None]]:
        """The venue's own history: (order id, type, last quantity, last price)."""
        return [(r.order_id, r.exec_type, r.last_quantity, r.last_price)
                for r in self.venue.history if r.exec_type in types]

    async def treasury_caught_up(self) -> bool:
        """The treasury's durable consumer of the OMS's order events holds nothing back."""
        info = await self.bus.js.consumer_info(self.bus.stream_for("oms"),
                                               self.treasury_durable)
        return bool(info.num_pending == 0 and info.num_ack_pending == 0)


async def _create_fund(dsn: str, schema: str, fund: Any) -> None:
    """The fund in the treasury, its opening cash paid in (``mts mts1b-treasury fund create``
    does the same): the OMS loads it from there."""
    from mts1b_treasury.db import TreasuryDb
    from mts1b_treasury.funds import FundRegistry
    from mts1b_treasury.ledger import Ledger

    db = await TreasuryDb.open(dsn, schema=schema)
    try:
        record = await FundRegistry(db).create(fund, actor="kill-switch-test")
        ledger = Ledger(db)
        await ledger.open_fund_accounts(FUND, fund.tax_lot_method)
        await ledger.contribute(FUND, CASH, key=f"opening:{FUND}", when=record.updated_at)
    finally:
        await db.close()


@pytest.fixture
async def stack(servers: Any, tmp_path: Path) -> AsyncIterator[Stack]:
    """The treasury, the paper venue's broker service, the OMS (funds from the treasury, the
    paper broker over NATS) and the audit recorder, each started as its ``serve`` command
    starts it, in a fresh namespace; stopped and their streams and schemas dropped after.
    ``servers`` (conftest.py): the addresses, or a skip naming the server that is down."""
    dsn, nats_url = servers.dsn, servers.nats_url
    from mts1b_brokers import PaperClient
    from mts1b_brokers.models import BpsCommission
    from mts1b_brokers.service import BrokerService
    from mts1b_oms import service as oms_service
    from mts1b_oms.signing import KeyRegistry
    from mts1b_oms.store import Store
    from mts1b_oms.testing import make_fund, make_registry, write_signing_keys
    from mts1b_operations.audit.chain import AuditChain
    from mts1b_operations.audit.recorder import RecorderOptions, open_audit_db, run_recorder
    from mts1b_treasury import service as treasury_service
    from mts1b_treasury.db import TreasuryDb
    from mts1b_treasury.ledger import Ledger

    ns = servers.unique("ks")
    schemas = {"oms": f"{ns}_oms", "treasury": f"{ns}_treasury", "audit": f"{ns}_audit"}
    registry, key_files = write_signing_keys(tmp_path)
    fund = make_fund(FUND, name="Kill switch", nav=CASH, broker_account_id=FUND).model_copy(
        update={"strategies": ["s1"]})
    await _create_fund(dsn, schemas["treasury"], fund)

    bus = await Bus.connect(url=nats_url, namespace=ns, connect_timeout=5)
    venue_bus = await Bus.connect(url=nats_url, namespace=ns, connect_timeout=5, name="venue")
    # one basis point, billed to the cent: every fill's commission is an exact amount
    venue = PaperClient(accounts={FUND: str(CASH)}, participation_rate="0.5",
                        commission=BpsCommission(D(1)))
    broker_service = BrokerService(venue, venue_bus)
    tasks: list[tuple[asyncio.Event, asyncio.Task[Any]]] = []

    async def serve(run: Callable[..., Coroutine[Any, Any, Any]], opts: Any) -> None:
        ready, stop = asyncio.Event(), asyncio.Event()
        task = asyncio.get_running_loop().create_task(run(opts, ready=ready, stop=stop))
        tasks.append((stop, task))
        waiter = asyncio.ensure_future(ready.wait())
        await asyncio.wait([waiter, task], timeout=60, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done():
            task.result()  # a service that stopped at start: its error fails the test
        assert ready.is_set(), f"{run.__module__} did not start within 60 s"

    oms_store = ledger_db = audit_db = None
    venue_started = False
    try:
        await serve(run_recorder, RecorderOptions(dsn=dsn, schema=schemas["audit"],
                                                  namespace=ns, nats_url=nats_url,
                                                  skew_threshold=0))
        treasury_opts = treasury_service.ServeOptions(dsn=dsn, schema=schemas["treasury"],
                                                      namespace=ns, nats_url=nats_url,
                                                      strike_grace=None)
        await serve(treasury_service.run_service, treasury_opts)
        await broker_service.start()
        venue_started = True
        await serve(oms_service.run_service, oms_service.ServeOptions(
            dsn=dsn, funds=[], funds_from_treasury=True, instruments=make_registry("AAPL", "MSFT"),
            broker="paper", broker_wait=10, schema=schemas["oms"], namespace=ns,
            nats_url=nats_url, keys=KeyRegistry.load(registry)))
        oms_store = await Store.open(dsn, schema=schemas["oms"], min_size=1, max_size=2)
        ledger_db = await TreasuryDb.open(dsn, schema=schemas["treasury"])
        audit_db = await open_audit_db(dsn, schemas["audit"])
        yield Stack(bus=bus, venue=venue, oms_store=oms_store, ledger=Ledger(ledger_db),
                    audit=AuditChain(audit_db), oms_schema=schemas["oms"],
                    key_file=key_files["ops-test"],
                    treasury_durable=treasury_opts.orders_durable, dsn=dsn,
                    nats_url=nats_url)
    finally:
        # the OMS, the treasury, the venue; the recorder last (it takes their last events)
        for stop, task in reversed(tasks[1:]):
            stop.set()
            await asyncio.wait_for(task, 30)
        if venue_started:
            await broker_service.stop()
        for stop, task in tasks[:1]:
            stop.set()
            await asyncio.wait_for(task, 30)
        for db in (oms_store, ledger_db, audit_db):
            if db is not None:
                await db.close()
        await venue_bus.drain()
        await bus.delete_streams()
        await bus.drain()
        await servers.drop_schemas(*schemas.values())


def _halt(stack: Stack) -> Any:
    """``mts mts1b-oms halt --fund ks --wait`` as an operator types it, signed with a key of
    the operations role (the CLI runs its own event loop: call it in a thread)."""
    from mts1b_oms.cli import app
    from typer.testing import CliRunner

    return CliRunner().invoke(app, [
        "halt", "--fund", FUND, "--reason", "desk incident", "--key-file", str(stack.key_file),
        "--wait", "--wait-timeout", "30", "--timeout", "10", "--dsn", stack.dsn,
        "--schema", stack.oms_schema, "--namespace", stack.bus.namespace or ""],
        env={"MTS_NATS_URL": stack.nats_url})


async def test_a_halt_mid_session_cancels_at_the_venue_and_every_book_agrees(
        stack: Stack) -> None:
    """OMS + paper venue + treasury + audit recorder: after a halt with orders working, the
    venue holds none, a new order is refused before it reaches the venue, and the treasury,
    the venue and the chain hold exactly the two fills made before the halt."""
    # -- the session before the halt ---------------------------------------------------------
    await stack.publish_bars(_bar("AAPL", 0, "100", "100", "100", "100"),
                             _bar("MSFT", 0, "50", "50", "50", "50"))
    filled = await stack.submit("aapl-mkt", "AAPL", "100")
    partial = await stack.submit("msft-mkt", "MSFT", "800", gtc=True)
    resting = await stack.submit("aapl-lmt", "AAPL", "50", limit="90", gtc=True)
    for reply in (filled, partial, resting):
        assert reply.ok and reply.status is OrderStatus.ACCEPTED, reply
    a, b, c = (r.order_id or "" for r in (filled, partial, resting))
    await stack.publish_bars(_bar("AAPL", 1, "101", "102", "100", "101"),
                             _bar("MSFT", 1, "51", "52", "50", "51"))

    async def traded() -> bool:
        return (await stack.status(a), await stack.status(b)) == (
            OrderStatus.FILLED, OrderStatus.PARTIALLY_FILLED)

    await _wait_for(traded, "the OMS to take the venue's fills")
    assert stack.venue_reports(ExecType.FILL, ExecType.PARTIAL_FILL) == [
        (a, ExecType.FILL, D(100), D(101)), (b, ExecType.PARTIAL_FILL, D(500), D(51))]
    assert sorted(o.order_id for o in await stack.venue.open_orders(FUND)) == sorted([b, c])

    # -- the kill switch ---------------------------------------------------------------------
    halted = await asyncio.to_thread(_halt, stack)
    assert halted.exit_code == 0, halted.output
    head, *swept, last = halted.stdout.splitlines()
    sweep_id = head.rsplit("sweep ", 1)[-1].rstrip(")")
    assert head == f"fund {FUND}: HALTED (2 cancels outstanding, sweep {sweep_id})"
    assert sorted(swept) == sorted(f"  {x} {FUND} canceled" for x in (b, c))
    assert last == f"sweep {sweep_id} finished: 2 canceled"

    # the venue's book: both working orders cancelled there, nothing left working
    assert await stack.venue.open_orders(FUND) == []
    assert sorted(o for o, *_ in stack.venue_reports(ExecType.CANCELED)) == sorted([b, c])
    assert [await stack.status(x) for x in (a, b, c)] == [
        OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.CANCELED]

    # a new order is refused by the OMS and never reaches the venue
    acks = stack.venue_reports(ExecType.ACK)
    refused = await stack.submit("after-halt", "AAPL", "10")
    assert (refused.ok, refused.code) == (False, ReplyCode.TRADING_HALTED), refused
    assert stack.venue_reports(ExecType.ACK) == acks and len(acks) == 3

    # a bar that would fill both cancelled orders (AAPL opens under the limit) trades nothing
    await stack.publish_bars(_bar("AAPL", 2, "89", "89", "88", "89"),
                             _bar("MSFT", 2, "50", "50", "50", "50"))
    assert len(stack.venue_reports(ExecType.FILL, ExecType.PARTIAL_FILL)) == 2

    # -- the books: exactly the two fills before the halt ------------------------------------
    await _wait_for(stack.treasury_caught_up, "the treasury to book the OMS's events")
    commission_a, commission_b = D("1.01"), D("2.55")  # 1 bp of 10,100 and of 25,500
    fills = [(f.posting.fill.order_id, f.posting.fill.symbol, f.posting.fill.quantity,
              f.posting.fill.price, f.posting.fill.commission, dict(f.posting.sleeves))
             for f in await stack.ledger.fills(FUND)]
    assert fills == [(a, "AAPL", D(100), D(101), commission_a, {"s1": D(100)}),
                     (b, "MSFT", D(500), D(51), commission_b, {"s1": D(500)})]
    assert await stack.ledger.positions(FUND) == {"AAPL": (D(100), D(10100)),
                                                  "MSFT": (D(500), D(25500))}
    books = await stack.ledger.balances(FUND)
    cash = CASH - D(10100) - D(25500) - commission_a - commission_b
    assert (books["cash"], books["commissions"]) == (cash, commission_a + commission_b)
    assert cash == D("964396.44") == (await stack.venue.account(FUND)).cash
    # nothing still held back for the cancelled orders
    assert await stack.ledger.available_cash(FUND) == cash
    assert {p.symbol: p.quantity for p in await stack.venue.positions(FUND)} == {
        "AAPL": D(100), "MSFT": D(500)}

    # -- the audit chain: the halt and both cancels recorded, and the chain verifies ---------
    from mts1b_operations.audit.verify import verify_chain

    async def recorded() -> bool:
        found = [e.subject for x in (b, c) for e in await stack.audit.mentioning(x)]
        return found.count("mts.v1.oms.orders.canceled") == 2

    await _wait_for(recorded, "the recorder to take the cancels")
    entries = [e async for e in stack.audit.entries()]
    halts = [parse_message(TradingStateChange, e.event) for e in entries
             if e.subject == "mts.v1.oms.state.changed"]
    assert [(h.scope, h.scope_id, h.state, h.actor, h.reason) for h in halts] == [
        ("fund", FUND, TradingState.HALTED, "ops-test", "desk incident")]
    halt_seq = next(e.seq for e in entries if e.subject == "mts.v1.oms.state.changed")
    cancels = [e for e in entries if e.subject == "mts.v1.oms.orders.canceled"]
    assert sorted(json.loads(e.event)["order_id"] for e in cancels) == sorted([b, c])
    assert all(e.seq > halt_seq for e in cancels)  # the cancels follow the halt
    fill_subjects = {"mts.v1.oms.orders.filled", "mts.v1.oms.orders.partially_filled"}
    before = [json.loads(e.event)["order_id"] for e in entries
              if e.seq < halt_seq and e.subject in fill_subjects]
    assert sorted(before) == sorted([a, b])  # both fills before the halt, none after it
    assert not [e for e in entries if e.seq > halt_seq and e.subject in fill_subjects]
    report = await verify_chain(stack.audit)
    assert report.ok, report.as_dict()
    assert report.checked == len(entries)
