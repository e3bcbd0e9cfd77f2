"""The conformance kit: the behaviour every ``BrokerProtocol`` implementation must show.

A broker adapter (paper, IBKR, Coinbase, a broker reached over NATS) passes when every check
here passes against it. The kit needs three things, bundled in a :class:`BrokerHarness` that a
factory builds fresh for each check:

- the broker (not yet connected; the kit connects it),
- an account with ample cash and an instrument it may trade,
- a :class:`VenueDriver`: a way to make the venue trade at a price with a given liquidity
  available to our orders (a simulator's market data feed, a test exchange, ...).

Use it from pytest::

    from mts1b_brokers.conformance import CHECKS, paper_harness, run_check

    @pytest.mark.parametrize("check", sorted(CHECKS))
    async def test_paper_conforms(check: str) -> None:
        await run_check(check, paper_harness())

or collect a report with :func:`run_conformance`. Each check raises
:class:`ConformanceFailure` (an ``AssertionError``) naming what was expected and what came back.

**Fault checks** (``ambiguous_submit``, ``duplicate_and_corrected_execution``,
``reconnect_resync``) need a venue that can script faults: the harness's ``faults`` is a
:class:`FaultDriver` (lose the answer to a submit, send an execution twice, correct an
execution, drop the connection, drop it in the middle of a fill). A harness without one (the
paper broker) declares so by leaving ``faults`` at ``None``, and those checks raise
:class:`ConformanceSkip` (a ``unittest.SkipTest``: pytest reports it as skipped with the
reason; :func:`run_conformance` maps the check to ``"skipped: <reason>"``). A driver that can
script only some faults raises ``NotImplementedError`` from the others: the checks needing
them are skipped the same way.

**Capabilities.** A broker that declares a
:class:`~mts1b_foundation.plugins.Capabilities` manifest is not held to what it rules out:
:data:`CHECK_NEEDS` says, per check, the order types and times in force it sends and whether it
replaces an order, and a check needing something the broker does not declare (or the
harness instrument's asset class) raises :class:`ConformanceSkip` naming what is missing,
before the broker is connected. A broker without a manifest runs every check.

Public API (stable): ``CHECKS``, ``CHECK_NEEDS``, ``CheckNeeds``, ``FAULT_CHECKS``,
``BrokerHarness``, ``HarnessFactory``,
``VenueDriver``, ``FaultDriver``, ``ConformanceFailure``, ``ConformanceSkip``,
``PaperDriver``, ``paper_harness``, ``ibkr_harness`` (needs the ``ibkr`` extra),
``missing_capabilities``, ``run_check``, ``run_conformance``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import unittest
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from mts1b_foundation import (
    Bar,
    BrokerProtocol,
    BrokerRejected,
    BrokerTransportError,
    BrokerUnknownOutcome,
    ConnectionState,
    Equity,
    ExecType,
    ExecutionReport,
    Instrument,
    Order,
    OrderType,
    Side,
    TimeInForce,
)
from mts1b_foundation.plugins import capabilities_of

from mts1b_brokers.paper import PaperClient

__all__ = [
    "CHECKS",
    "CHECK_NEEDS",
    "FAULT_CHECKS",
    "BrokerHarness",
    "CheckNeeds",
    "ConformanceFailure",
    "ConformanceSkip",
    "FaultDriver",
    "HarnessFactory",
    "PaperDriver",
    "VenueDriver",
    "ibkr_harness",
    "missing_capabilities",
    "paper_harness",
    "run_check",
    "run_conformance",
]


class ConformanceFailure(AssertionError):
    """A broker did not behave as ``BrokerProtocol`` requires."""


class ConformanceSkip(unittest.SkipTest):
    """A check does not run against this harness: it cannot script the fault the check needs,
    or the broker's capabilities rule out what the check sends."""


@runtime_checkable
class FaultDriver(Protocol):
    """Scripts the venue faults the fault checks need. A method the venue cannot script
    raises ``NotImplementedError`` (the checks needing it are then skipped)."""

    async def lose_next_submit(self, *, delivered: bool) -> None:
        """The connection drops right after the next order is sent, before any answer;
        ``delivered``: the venue got it (else it never did)."""
        ...

    async def duplicate_next_execution(self) -> None:
        """The venue sends the next execution twice (same execution id)."""
        ...

    async def correct_last_execution(self, quantity: Decimal) -> None:
        """The venue corrects its last execution to ``quantity`` (a trade correction)."""
        ...

    async def drop_connection(self) -> None:
        """The venue drops every client connection without warning (a gateway reset)."""
        ...

    async def disconnect_mid_next_fill(self) -> None:
        """The next fill's execution is sent and then the connection drops, before the rest
        of that fill's messages (commission, status)."""
        ...

    def orders_at_venue(self, order_id: str) -> int:
        """How many orders the venue holds for our client order id (a re-send makes two)."""
        ...


@runtime_checkable
class VenueDriver(Protocol):
    """Makes the venue trade ``symbol`` at ``price`` with ``liquidity`` units for our orders."""

    async def trade(self, symbol: str, price: Decimal, liquidity: Decimal) -> None: ...


@dataclass
class BrokerHarness:
    """One broker under test with what the checks need around it."""

    broker: BrokerProtocol
    account_id: str
    driver: VenueDriver
    instrument: Instrument = field(default_factory=lambda: Equity(symbol="CONF"))
    price: Decimal = Decimal(100)
    timeout: float = 5.0
    settle: float = 0.0
    """Seconds to wait before asserting that something did *not* happen (0 in-process)."""
    cleanup: Callable[[], Awaitable[None]] | None = None
    faults: FaultDriver | None = None
    """``None``: the venue cannot script faults, and the fault checks are skipped."""
    reconnect_timeout: float = 10.0
    """Seconds a broker may take to reconnect by itself after the venue dropped it."""


HarnessFactory = Callable[[], Awaitable[BrokerHarness]]


class PaperDriver:
    """Drives a :class:`PaperClient` with one-minute bars at a flat price.

    ``liquidity`` becomes the bar volume divided by the broker's participation rate, so exactly
    ``liquidity`` units are available to our orders.
    """

    def __init__(self, broker: PaperClient, *, start: dt.datetime,
                 participation_rate: Decimal) -> None:
        self._broker = broker
        self._ts = start
        self._rate = participation_rate

    async def trade(self, symbol: str, price: Decimal, liquidity: Decimal) -> None:
        self._ts += dt.timedelta(minutes=1)
        await self._broker.on_bar(Bar(
            symbol=symbol, ts=self._ts, interval="1m", open=price, high=price, low=price,
            close=price, volume=liquidity / self._rate,
        ))


def paper_harness(**config: Any) -> HarnessFactory:
    """A factory of fresh paper brokers (account ``conf`` with 1,000,000 cash) for the kit.

    ``config`` is passed to :class:`PaperClient` (``name``, ``seed``, cost models, ...).
    """

    async def make() -> BrokerHarness:
        start = dt.datetime(2024, 1, 2, 15, tzinfo=dt.UTC)
        options = dict(config)
        rate = Decimal(str(options.pop("participation_rate", "0.5")))
        broker = PaperClient(accounts={"conf": Decimal(1_000_000)}, start=start,
                             participation_rate=rate, **options)
        return BrokerHarness(broker=broker, account_id="conf",
                             driver=PaperDriver(broker, start=start, participation_rate=rate))

    return make


def ibkr_harness(**config: Any) -> HarnessFactory:
    """A factory of fresh :class:`~mts1b_brokers.ibkr.IbkrBroker` s, each against its own
    :class:`~mts1b_brokers.testing.tws.FakeTws` (account ``DU1234567`` with 1,000,000 cash),
    with a :class:`FaultDriver`. Needs the ``ibkr`` extra. ``config`` goes to ``IbkrBroker``
    (``server_version`` to ``FakeTws``)."""

    async def make() -> BrokerHarness:
        from mts1b_brokers.ibkr import IbkrBroker
        from mts1b_brokers.testing.tws import FakeTws, TwsFaultDriver

        options = dict(config)
        tws = FakeTws(server_version=int(options.pop("server_version", 178)),
                      prices={"CONF": Decimal(100)})
        port = await tws.start()
        options.setdefault("request_timeout", 2.0)
        options.setdefault("commission_wait", 0.5)
        options.setdefault("reconnect_initial", 0.05)
        broker = IbkrBroker(port=port, client_id=int(options.pop("client_id", 7)), **options)
        driver = TwsFaultDriver(tws)
        return BrokerHarness(broker=broker, account_id="DU1234567", driver=driver,
                             faults=driver, settle=0.15, cleanup=tws.stop)

    return make


# ------------------------------------------------------------------------------- machinery
def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise ConformanceFailure(message)


def _expect_quantities(what: str, report: ExecutionReport, last: int, cum: int,
                       leaves: int) -> None:
    got = (report.last_quantity, report.cumulative_quantity, report.leaves_quantity)
    _expect(got == (Decimal(last), Decimal(cum), Decimal(leaves)),
            f"{what} last/cum/leaves {got[0]}/{got[1]}/{got[2]}, "
            f"expected {last}/{cum}/{leaves}")


class _Collector:
    """Collects the broker's execution reports in the background."""

    def __init__(self, stream: AsyncIterator[ExecutionReport]) -> None:
        self.reports: list[ExecutionReport] = []
        self._changed = asyncio.Event()
        self._stream = stream
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for report in self._stream:
            self.reports.append(report)
            self._changed.set()

    def of(self, order_id: str, *types: ExecType) -> list[ExecutionReport]:
        return [r for r in self.reports
                if r.order_id == order_id and (not types or r.exec_type in types)]

    async def wait(self, order_id: str, *types: ExecType, count: int = 1,
                   timeout: float = 5.0) -> list[ExecutionReport]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.of(order_id, *types)) < count:
            remaining = deadline - loop.time()
            if remaining <= 0:
                seen = [(r.exec_type.value, str(r.cumulative_quantity))
                        for r in self.of(order_id)]
                raise ConformanceFailure(
                    f"waited {timeout}s for {count} {'/'.join(t.value for t in types)} "
                    f"report(s) of {order_id}; saw {seen}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return self.of(order_id, *types)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            await aclose()


@dataclass
class _Ctx:
    h: BrokerHarness
    reports: _Collector
    tag: str

    @property
    def broker(self) -> BrokerProtocol:
        return self.h.broker

    async def submit_refused(self, order: Order, what: str) -> None:
        """Submit ``order`` and require ``BrokerRejected``; ``what`` names it if accepted."""
        try:
            await self.broker.submit(order)
        except BrokerRejected:
            return
        raise ConformanceFailure(f"{what} was accepted")

    def order(self, n: int, *, side: Side = Side.BUY, quantity: int = 10,
              order_type: OrderType = OrderType.MARKET, limit: Decimal | None = None,
              tif: TimeInForce = TimeInForce.GTC) -> Order:
        return Order(
            order_id=f"{self.tag}-{n}", idempotency_key=f"{self.tag}-{n}",
            fund_id=self.h.account_id, account_id=self.h.account_id, strategy_id="conformance",
            instrument=self.h.instrument, side=side, quantity=Decimal(quantity),
            order_type=order_type, limit_price=limit, time_in_force=tif,
        )

    async def trade(self, price: Decimal, liquidity: int) -> None:
        await self.h.driver.trade(self.h.instrument.symbol, price, Decimal(liquidity))

    async def position(self) -> Decimal:
        for p in await self.broker.positions(self.h.account_id):
            if p.symbol == self.h.instrument.symbol:
                return p.quantity
        return Decimal(0)

    async def open_ids(self) -> list[str]:
        return [o.order_id or "" for o in await self.broker.open_orders(self.h.account_id)]

    async def settle(self) -> None:
        await asyncio.sleep(self.h.settle)


Check = Callable[[_Ctx], Awaitable[None]]


# ----------------------------------------------------------------------------------- checks
async def _submit_ack(c: _Ctx) -> None:
    order = c.order(1, order_type=OrderType.LIMIT, limit=c.h.price - 10)
    ack = await c.broker.submit(order)
    _expect(ack.exec_type is ExecType.ACK, f"submit returned {ack.exec_type}, expected ack")
    _expect(ack.order_id == order.order_id, f"ack names {ack.order_id}, not {order.order_id}")
    _expect(ack.cumulative_quantity == 0 and ack.leaves_quantity == order.quantity,
            f"ack cum/leaves {ack.cumulative_quantity}/{ack.leaves_quantity}, expected 0/10")
    await c.reports.wait(ack.order_id, ExecType.ACK, timeout=c.h.timeout)
    _expect(order.order_id in await c.open_ids(), "accepted order missing from open_orders")
    await c.broker.cancel(ack.order_id)


async def _reject(c: _Ctx) -> None:
    tick = c.h.instrument.tick_size
    off_tick = c.order(1, order_type=OrderType.LIMIT, limit=c.h.price - tick / 2)
    await c.submit_refused(off_tick, "an off-tick limit price")
    rejects = await c.reports.wait(off_tick.order_id or "", ExecType.REJECT, timeout=c.h.timeout)
    _expect(bool(rejects[0].reason), "a reject report must carry a reason")
    huge = c.order(2, quantity=10**12)
    await c.submit_refused(huge, "an order far beyond buying power")
    open_ids = await c.open_ids()
    _expect(off_tick.order_id not in open_ids and huge.order_id not in open_ids,
            "a rejected order shows in open_orders")


async def _partial_fill(c: _Ctx) -> None:
    await c.trade(c.h.price, 0)
    before = await c.position()
    order = c.order(1)
    await c.broker.submit(order)
    oid = order.order_id or ""
    await c.trade(c.h.price, 4)
    part = (await c.reports.wait(oid, ExecType.PARTIAL_FILL, timeout=c.h.timeout))[0]
    _expect_quantities("partial fill", part, 4, 4, 6)
    await c.trade(c.h.price, 100)
    full = (await c.reports.wait(oid, ExecType.FILL, timeout=c.h.timeout))[0]
    _expect_quantities("fill", full, 6, 10, 0)
    _expect(part.trade_id != full.trade_id, "two fills share a trade_id")
    _expect(await c.position() - before == 10, "position did not grow by the filled 10")
    _expect(oid not in await c.open_ids(), "a filled order is still open")


async def _cancel_race(c: _Ctx) -> None:
    limit = c.h.price
    # (a) cancel after a partial fill: the remainder is canceled, the fill stands
    a = c.order(1, order_type=OrderType.LIMIT, limit=limit)
    await c.broker.submit(a)
    aid = a.order_id or ""
    await c.trade(limit, 4)
    await c.reports.wait(aid, ExecType.PARTIAL_FILL, timeout=c.h.timeout)
    canceled = await c.broker.cancel(aid)
    _expect(canceled.exec_type is ExecType.CANCELED and canceled.cumulative_quantity == 4
            and canceled.leaves_quantity == 0,
            f"cancel after a partial fill gave {canceled.exec_type} "
            f"cum={canceled.cumulative_quantity} leaves={canceled.leaves_quantity}")
    await c.trade(limit, 100)
    await c.settle()
    _expect(not c.reports.of(aid, ExecType.FILL), "a canceled order kept filling")
    # (b) cancel after the full fill: cancel-reject, the fill stands
    b = c.order(2, order_type=OrderType.LIMIT, limit=limit)
    await c.broker.submit(b)
    bid = b.order_id or ""
    await c.trade(limit, 100)
    await c.reports.wait(bid, ExecType.FILL, timeout=c.h.timeout)
    late = await c.broker.cancel(bid)
    _expect(late.exec_type is ExecType.CANCEL_REJECT and late.cumulative_quantity == 10,
            f"cancel of a filled order gave {late.exec_type} cum={late.cumulative_quantity}")
    # (c) cancel and fill sent concurrently: either outcome, always consistent
    r = c.order(3, order_type=OrderType.LIMIT, limit=limit)
    await c.broker.submit(r)
    rid = r.order_id or ""
    answer, _ = await asyncio.gather(c.broker.cancel(rid), c.trade(limit, 100))
    final_types = (ExecType.FILL, ExecType.CANCELED)
    final = (await c.reports.wait(rid, *final_types, timeout=c.h.timeout))[-1]
    await c.settle()
    filled = sum((x.last_quantity or Decimal(0))
                 for x in c.reports.of(rid, ExecType.PARTIAL_FILL, ExecType.FILL))
    if answer.exec_type is ExecType.CANCEL_REJECT:
        _expect(final.exec_type is ExecType.FILL and filled == 10,
                f"cancel-reject but the order ended {final.exec_type} with {filled} filled")
    else:
        _expect(answer.exec_type is ExecType.CANCELED,
                f"cancel answered {answer.exec_type}, expected canceled or cancel_reject")
        _expect(filled == answer.cumulative_quantity and not c.reports.of(rid, ExecType.FILL),
                f"canceled with cum {answer.cumulative_quantity} but fills sum to {filled}")
    _expect(len(c.reports.of(rid, *final_types)) == 1, "more than one final report")


async def _replace(c: _Ctx) -> None:
    order = c.order(1, order_type=OrderType.LIMIT, limit=c.h.price - 10)
    await c.broker.submit(order)
    oid = order.order_id or ""
    new_limit = c.h.price - 5
    rep = await c.broker.replace(oid, quantity=Decimal(12), limit_price=new_limit)
    _expect(rep.exec_type is ExecType.REPLACED and rep.leaves_quantity == 12,
            f"replace gave {rep.exec_type} leaves={rep.leaves_quantity}, expected replaced/12")
    working = [o for o in await c.broker.open_orders(c.h.account_id) if o.order_id == oid]
    _expect(len(working) == 1 and working[0].quantity == 12
            and working[0].limit_price == new_limit,
            f"open_orders does not show the new terms: {working}")
    await c.trade(c.h.price, 100)
    await c.settle()
    _expect(not c.reports.of(oid, ExecType.PARTIAL_FILL, ExecType.FILL),
            "filled above the replaced limit")
    await c.trade(new_limit, 100)
    fill = (await c.reports.wait(oid, ExecType.FILL, timeout=c.h.timeout))[0]
    _expect(fill.cumulative_quantity == 12 and (fill.last_price or 0) <= new_limit,
            f"fill after replace cum={fill.cumulative_quantity} price={fill.last_price}")
    late = await c.broker.replace(oid, quantity=Decimal(20))
    _expect(late.exec_type is ExecType.REPLACE_REJECT and bool(late.reason),
            f"replace of a filled order gave {late.exec_type}")


async def _reconnect(c: _Ctx) -> None:
    order = c.order(1, order_type=OrderType.LIMIT, limit=c.h.price - 10)
    await c.broker.submit(order)
    oid = order.order_id or ""
    await c.broker.close()
    _expect(c.broker.connection_state is ConnectionState.DISCONNECTED,
            f"after close the state is {c.broker.connection_state}")
    try:
        await c.broker.submit(c.order(2))
    except BrokerTransportError:
        pass
    except BrokerRejected as exc:
        raise ConformanceFailure(
            f"a submit while disconnected was called a rejection: {exc}") from exc
    else:
        raise ConformanceFailure("a submit while disconnected succeeded")
    await c.broker.connect()
    _expect(c.broker.connection_state is ConnectionState.CONNECTED,
            f"after connect the state is {c.broker.connection_state}")
    _expect(oid in await c.open_ids(), "the working order was lost across the reconnect")
    await c.trade(c.h.price - 10, 100)
    await c.reports.wait(oid, ExecType.FILL, timeout=c.h.timeout)


async def _duplicate_submission(c: _Ctx) -> None:
    await c.trade(c.h.price, 0)
    before = await c.position()
    order = c.order(1, quantity=5)
    first = await c.broker.submit(order)
    again = await c.broker.submit(order)
    _expect(again.exec_type is ExecType.ACK and again.order_id == first.order_id
            and again.broker_order_id == first.broker_order_id,
            f"a repeated submit answered {again.exec_type} {again.broker_order_id}, "
            f"expected the original ack {first.broker_order_id}")
    _expect((await c.open_ids()).count(order.order_id or "") == 1,
            "a repeated submit created a second working order")
    await c.trade(c.h.price, 100)
    await c.reports.wait(first.order_id, ExecType.FILL, timeout=c.h.timeout)
    await c.broker.submit(order)
    await c.trade(c.h.price, 100)
    await c.settle()
    fills = c.reports.of(first.order_id, ExecType.PARTIAL_FILL, ExecType.FILL)
    _expect(sum((f.last_quantity or Decimal(0)) for f in fills) == 5,
            "a repeated submit was filled twice")
    _expect(await c.position() - before == 5, "position grew by more than one order")


async def _order_status(c: _Ctx) -> None:
    """``order_status`` answers by client order id what the broker has - the ACK of a working
    order, its fills, how it ended, a refusal - and ``None`` only for an id it never got: the
    OMS re-sends an order whose submit had an unknown outcome only on that ``None``."""
    never = f"{c.tag}-never-sent"
    _expect(await c.broker.order_status(never) is None,
            "order_status of an id never submitted is not None")
    await c.trade(c.h.price, 0)
    order = c.order(1, order_type=OrderType.LIMIT, limit=c.h.price)
    oid = order.order_id or ""
    await c.broker.submit(order)
    working = await c.broker.order_status(oid)
    _expect(working is not None and working.order_id == oid
            and working.exec_type is ExecType.ACK and working.leaves_quantity == 10,
            f"order_status of a working order gave {working}")
    await c.trade(c.h.price, 4)
    await c.reports.wait(oid, ExecType.PARTIAL_FILL, timeout=c.h.timeout)
    part = await c.broker.order_status(oid)
    _expect(part is not None and part.cumulative_quantity == 4 and part.leaves_quantity == 6,
            f"order_status after a fill of 4 gave cum/leaves "
            f"{part and part.cumulative_quantity}/{part and part.leaves_quantity}")
    await c.broker.cancel(oid)
    ended = await c.broker.order_status(oid)
    _expect(ended is not None and ended.exec_type is ExecType.CANCELED
            and ended.cumulative_quantity == 4,
            f"order_status of a canceled order gave {ended and ended.exec_type}")
    refused = c.order(2, order_type=OrderType.LIMIT,
                      limit=c.h.price - c.h.instrument.tick_size / 2)
    await c.submit_refused(refused, "an off-tick limit price")
    known = await c.broker.order_status(refused.order_id or "")
    _expect(known is not None and known.exec_type is ExecType.REJECT,
            "order_status of a refused order must say it was refused, not that it is absent "
            f"(got {known and known.exec_type})")
    _expect(await c.open_ids() == [], "order_status changed the open orders")
    _expect(await c.broker.order_status(never) is None, "asking created the order")


# ------------------------------------------------------------------------- fault checks
def _faults(c: _Ctx, what: str) -> FaultDriver:
    if c.h.faults is None:
        raise ConformanceSkip(f"{c.broker.name} cannot script venue faults "
                              f"(its harness has no FaultDriver), so {what} is not checked")
    return c.h.faults


async def _fault(c: _Ctx, what: str, action: Awaitable[None]) -> None:
    try:
        await action
    except NotImplementedError:
        raise ConformanceSkip(f"the venue of {c.broker.name} cannot script {what}") from None


async def _connected_again(c: _Ctx) -> None:
    """Wait until the broker has reconnected by itself (after the venue dropped it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + c.h.reconnect_timeout
    await asyncio.sleep(0.05)
    while c.broker.connection_state is not ConnectionState.CONNECTED:
        if loop.time() > deadline:
            raise ConformanceFailure(f"not reconnected {c.h.reconnect_timeout}s after the "
                                     f"venue dropped it (state {c.broker.connection_state})")
        await asyncio.sleep(0.05)


async def _ambiguous_submit(c: _Ctx) -> None:
    """A submit whose answer is lost is an unknown outcome - never a rejection - and is
    never sent twice: ``order_status`` tells whether the venue got it (``None`` only when it
    provably did not), and the OMS's repeat of the same order makes one order either way."""
    faults = _faults(c, "an ambiguous submit")
    for n, delivered in ((1, True), (2, False)):
        order = c.order(n, order_type=OrderType.LIMIT, limit=c.h.price - 10)
        oid = order.order_id or ""
        await _fault(c, "a lost submit answer", faults.lose_next_submit(delivered=delivered))
        try:
            first = await c.broker.submit(order)
        except BrokerUnknownOutcome:
            first = None
        except BrokerRejected as exc:
            raise ConformanceFailure(f"a submit whose answer was lost was called a "
                                     f"rejection: {exc}") from exc
        except BrokerTransportError as exc:
            raise ConformanceFailure(f"a submit that was sent was called not sent "
                                     f"(BrokerTransportError): {exc}") from exc
        _expect(first is None or first.exec_type is ExecType.ACK,
                f"a submit whose answer was lost returned {first}")
        await _connected_again(c)
        status = await c.broker.order_status(oid)
        if delivered:
            _expect(status is not None and status.exec_type is ExecType.ACK,
                    f"the venue has {oid} but order_status says {status}")
        else:
            _expect(status is None, f"the venue never got {oid} but order_status says "
                    f"{status and status.exec_type}")
        again = await c.broker.submit(order)
        _expect(again.exec_type is ExecType.ACK, f"the repeated submit gave {again.exec_type}")
        _expect(faults.orders_at_venue(oid) == 1,
                f"the venue holds {faults.orders_at_venue(oid)} orders for {oid} "
                f"(delivered={delivered}); a lost answer must never make two")
    await c.trade(c.h.price - 10, 100)
    for n in (1, 2):
        oid = f"{c.tag}-{n}"
        await c.reports.wait(oid, ExecType.FILL, timeout=c.h.timeout)
        await c.settle()
        _expect(len(c.reports.of(oid, ExecType.PARTIAL_FILL, ExecType.FILL)) == 1,
                f"{oid} was filled more than once")


async def _duplicate_and_corrected_execution(c: _Ctx) -> None:
    """An execution sent twice counts once; a corrected execution replaces the fill it
    corrects (same trade id, no new fill report), and the order's filled quantity and the
    position follow the correction."""
    faults = _faults(c, "duplicate and corrected executions")
    await c.trade(c.h.price, 0)
    before = await c.position()
    order = c.order(1)
    oid = order.order_id or ""
    await c.broker.submit(order)
    await _fault(c, "a duplicate execution", faults.duplicate_next_execution())
    await c.trade(c.h.price, 4)
    await c.reports.wait(oid, ExecType.PARTIAL_FILL, timeout=c.h.timeout)
    await c.trade(c.h.price, 100)
    full = (await c.reports.wait(oid, ExecType.FILL, timeout=c.h.timeout))[0]
    await c.settle()
    fills = c.reports.of(oid, ExecType.PARTIAL_FILL, ExecType.FILL)
    _expect([f.last_quantity for f in fills] == [4, 6] and full.cumulative_quantity == 10,
            f"a duplicated execution was counted again: fills "
            f"{[str(f.last_quantity) for f in fills]}, cum {full.cumulative_quantity}")
    _expect(await c.position() - before == 10, "the position counted a duplicate")
    await _fault(c, "a corrected execution", faults.correct_last_execution(Decimal(5)))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + c.h.timeout
    status = await c.broker.order_status(oid)
    while (status is None or status.cumulative_quantity != 9) and loop.time() < deadline:
        await asyncio.sleep(0.05)
        status = await c.broker.order_status(oid)
    _expect(status is not None and status.cumulative_quantity == 9,
            f"after correcting the 6-share execution to 5 the order's filled quantity is "
            f"{status and status.cumulative_quantity}, expected 9")
    await c.settle()
    again = c.reports.of(oid, ExecType.PARTIAL_FILL, ExecType.FILL)
    _expect(len(again) == 2, f"a correction was reported as a new fill ({len(again)} fills)")
    _expect(await c.position() - before == 9,
            f"the position after the correction grew by {await c.position() - before}, "
            "expected 9")


async def _reconnect_resync(c: _Ctx) -> None:
    """The venue drops the broker in the middle of a fill, and later again; fills made while
    it was away arrive after it reconnects by itself, each exactly once."""
    faults = _faults(c, "a dropped connection")
    await c.trade(c.h.price, 0)
    before = await c.position()
    order = c.order(1, order_type=OrderType.LIMIT, limit=c.h.price)
    oid = order.order_id or ""
    await c.broker.submit(order)
    await _fault(c, "a disconnect in the middle of a fill", faults.disconnect_mid_next_fill())
    await c.trade(c.h.price, 4)
    await _connected_again(c)
    part = (await c.reports.wait(oid, ExecType.PARTIAL_FILL, timeout=c.h.timeout))[0]
    _expect_quantities("partial fill across a reconnect", part, 4, 4, 6)
    await _fault(c, "a dropped connection", faults.drop_connection())
    await c.trade(c.h.price, 100)  # trades while the broker is away
    await _connected_again(c)
    full = (await c.reports.wait(oid, ExecType.FILL, timeout=c.h.timeout))[0]
    _expect_quantities("fill made while disconnected", full, 6, 10, 0)
    await c.settle()
    fills = c.reports.of(oid, ExecType.PARTIAL_FILL, ExecType.FILL)
    _expect(len(fills) == 2, f"{len(fills)} fill reports across the reconnects, expected 2")
    _expect(await c.position() - before == 10, "position wrong after the reconnects")
    _expect(oid not in await c.open_ids(), "a filled order is still open after resync")


CHECKS: dict[str, Check] = {
    "submit_ack": _submit_ack,
    "reject": _reject,
    "partial_fill": _partial_fill,
    "cancel_race_with_fill": _cancel_race,
    "replace": _replace,
    "reconnect": _reconnect,
    "duplicate_submission": _duplicate_submission,
    "order_status": _order_status,
    "ambiguous_submit": _ambiguous_submit,
    "duplicate_and_corrected_execution": _duplicate_and_corrected_execution,
    "reconnect_resync": _reconnect_resync,
}
"""Check name -> check. Each runs against a fresh harness."""

FAULT_CHECKS = frozenset({"ambiguous_submit", "duplicate_and_corrected_execution",
                          "reconnect_resync"})
"""The checks that need a :class:`FaultDriver` (skipped without one)."""


@dataclass(frozen=True)
class CheckNeeds:
    """What one check sends the broker: read against the broker's ``Capabilities``."""

    order_types: frozenset[OrderType]
    time_in_force: frozenset[TimeInForce] = frozenset({TimeInForce.GTC})
    replace: bool = False


def _needs(*order_types: OrderType, replace: bool = False) -> CheckNeeds:
    return CheckNeeds(order_types=frozenset(order_types), replace=replace)


_M, _L = OrderType.MARKET, OrderType.LIMIT

CHECK_NEEDS: dict[str, CheckNeeds] = {
    "submit_ack": _needs(_L),
    "reject": _needs(_L, _M),
    "partial_fill": _needs(_M),
    "cancel_race_with_fill": _needs(_L),
    "replace": _needs(_L, replace=True),
    "reconnect": _needs(_L, _M),
    "duplicate_submission": _needs(_M),
    "order_status": _needs(_L),
    "ambiguous_submit": _needs(_L),
    "duplicate_and_corrected_execution": _needs(_M),
    "reconnect_resync": _needs(_L),
}
"""Check name (every key of :data:`CHECKS`) -> the order types and times in force it sends
(every check sends GTC orders for the harness's instrument) and whether it replaces an order.
A test runs the checks against a recording broker and compares."""


def missing_capabilities(check: str, harness: BrokerHarness) -> str | None:
    """What ``harness.broker`` does not declare that ``check`` needs, in words; ``None`` to run
    the check (also when the broker declares no capabilities at all)."""
    caps = capabilities_of(harness.broker)
    if caps is None:
        return None
    needs = CHECK_NEEDS[check]
    lacking = [f"order type {t.value}" for t in sorted(needs.order_types)
               if t not in caps.order_types]
    lacking += [f"time in force {t.value}" for t in sorted(needs.time_in_force)
                if t not in caps.time_in_force]
    asset_class = harness.instrument.asset_class
    if asset_class not in caps.asset_classes:
        lacking.append(f"asset class {asset_class.value}")
    if needs.replace and not caps.supports_replace:
        lacking.append("replace")
    if not lacking:
        return None
    return (f"the capabilities of {harness.broker.name} lack {', '.join(lacking)}, "
            f"which {check} needs")


async def run_check(name: str, factory: HarnessFactory) -> None:
    """Run one check on a fresh harness; ``ConformanceFailure`` says what went wrong,
    ``ConformanceSkip`` why it does not apply (the broker's capabilities, a missing fault)."""
    if name not in CHECKS:
        raise KeyError(f"no conformance check {name!r}; known: {sorted(CHECKS)}")
    h = await factory()
    reason = missing_capabilities(name, h)
    if reason is not None:
        if h.cleanup is not None:
            await h.cleanup()
        raise ConformanceSkip(reason)
    await h.broker.connect()
    collector = _Collector(h.broker.execution_reports())
    try:
        await CHECKS[name](_Ctx(h, collector, f"conf-{name}-{uuid.uuid4().hex[:10]}"))
    finally:
        await collector.close()
        await h.broker.close()
        if h.cleanup is not None:
            await h.cleanup()


async def run_conformance(factory: HarnessFactory,
                          checks: list[str] | None = None) -> dict[str, str | None]:
    """Run checks (default: all); map each name to ``None`` (passed), ``"skipped: <why>"``
    or the failure text."""
    results: dict[str, str | None] = {}
    for name in checks or sorted(CHECKS):
        try:
            await run_check(name, factory)
            results[name] = None
        except ConformanceSkip as skip:
            results[name] = f"skipped: {skip}"
        except Exception as exc:  # report every failure, keep running the rest
            results[name] = f"{type(exc).__name__}: {exc}"
    return results
