"""``FakeTws``: a local TCP server that stands in for TWS / IB Gateway in tests.

It speaks the TWS API socket protocol with the classic framing (``API\\0`` handshake with a
client version range, length-prefixed NUL-separated fields; see :mod:`.tws_wire`) as
``ib_async`` 2.1.0 uses it, claiming server version 176 or 178 (``server_version``; both lie
in ib_async's 157..178 range and before the protobuf framing of server versions 201+). It is
not a mock of ib_async: any client of that protocol can connect to it.

What it serves: the handshake reply (server version, connection time), nextValidId and
managedAccounts after startApi, placeOrder (new and modify; the contract's exchange and the
order's ``outsideRth`` kept as sent, :attr:`TwsOrder.outside_rth`) -> openOrder + orderStatus,
fills as execDetails + commissionReport (+ position to position subscribers), cancelOrder
(orderStatus Cancelled + error 202, or 10147/10148), reqOpenOrders / reqAllOpenOrders,
reqCompletedOrders, reqExecutions (replays every execution with its commission report),
reqPositions, reqAccountSummary, reqAccountUpdatesMulti, reqIds, reqCurrentTime,
reqGlobalCancel, reqRealTimeBars (5-second bars pushed with :meth:`FakeTws.push_bar`), and
errors with IB's codes and words (110 off-tick price, 201 reject, 104 modify of a filled
order, 10147/10148 cancels, 10349 TIF preset warning).

A test makes the venue trade with :meth:`FakeTws.trade` and scripts the field's known faults
through :attr:`FakeTws.faults` (:class:`TwsFaults`) and :meth:`FakeTws.correct_execution` /
:meth:`FakeTws.drop_connections`: partial fills, a fill racing a cancel, a reject with an error
code, a disconnect mid-fill, a duplicate and a corrected execution (execId differing after
its last period), missing orderStatus updates, error 10349 on an order that later fills, a
submit whose connection drops before any answer (delivered or lost), a submit never answered
(a stuck gateway), a gateway that goes silent with its sockets open (the daily reset), the
gateway gone and back on its port (:meth:`FakeTws.stop` / :meth:`FakeTws.start`), TWS's own
link to IB lost and restored (:meth:`FakeTws.connectivity`: 1100/1101/1102), managedAccounts
before nextValidId or withheld. Like IB it takes at most 50 messages a second from a client
(error 100 for the rest, counted in ``pacing_violations``).

Every message in and out is recorded in :attr:`FakeTws.transcript` as framed bytes, so a
golden transcript can be compared byte for byte.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from mts1b_brokers.testing import tws_wire as w
from mts1b_brokers.testing.tws_wire import IN, ContractFields, OrderFields

__all__ = ["SUPPORTED_SERVER_VERSIONS", "FakeTws", "TwsExecution", "TwsFaultDriver",
           "TwsFaults", "TwsOrder"]

SUPPORTED_SERVER_VERSIONS = (176, 178)
"""Server versions FakeTws claims (and the tests decode every message with ib_async for)."""

DONE = frozenset({"Filled", "Cancelled", "ApiCancelled", "Inactive"})
_OUTSIDE_RTH = 33
"""Index of ``outsideRth`` in a placeOrder message (after the contract, the order's terms,
orderRef .. triggerMethod); the contract's ``exchange`` is field 9."""


@dataclass
class TwsFaults:
    """Faults the next matching event suffers; each ``*_next`` flag is used up once."""

    accounts_first: bool = False
    """After startApi send managedAccounts before nextValidId (TWS uses either order)."""
    withhold_managed_accounts: bool = False
    """After startApi send nextValidId only: an ib_async client never becomes ready."""
    drop_order_status: bool = False
    """Send no orderStatus at all (TWS does not guarantee them); fills still come as
    execDetails + commissionReport, cancels as error 202."""
    reject_next: tuple[int, str] | None = None
    """The next new order is refused with this error code and text."""
    warn_10349_next: bool = False
    """The next new order is accepted and then gets error 10349 (TIF set to DAY by a preset),
    which ib_async logs as if canceled though the order lives and fills."""
    lose_next_place: Literal["delivered", "lost"] | None = None
    """The connection drops right after the next placeOrder arrives, before any answer:
    ``delivered`` - the venue took the order; ``lost`` - it never got it."""
    disconnect_mid_fill_next: bool = False
    """The next fill sends execDetails and then the connection drops (no commission report,
    no status): the client must find the rest by reqExecutions after reconnecting."""
    duplicate_next_execution: bool = False
    """The next fill's execDetails and commissionReport are sent twice."""
    silence_next_place: bool = False
    """The venue takes the next new order but answers nothing (a stuck gateway): the client
    times out and must reconcile (the order shows in reqOpenOrders)."""
    unresponsive: bool = False
    """While set, the gateway keeps its sockets open but answers nothing and closes new
    connections at once: the silent drop of IB's daily reset, which only a heartbeat sees."""
    fill_before_cancel_next: bool = False
    """The next cancelOrder loses a race: the order fills completely just before it arrives,
    and the cancel is answered with error 10148."""


@dataclass
class TwsOrder:
    """One order as the venue holds it."""

    order_id: int
    client_id: int
    perm_id: int
    account: str
    contract: ContractFields
    action: str
    quantity: Decimal
    order_type: str
    limit_price: Decimal | None
    aux_price: Decimal | None
    tif: str
    order_ref: str
    status: str = "Submitted"
    filled: Decimal = Decimal(0)
    notional: Decimal = Decimal(0)
    last_price: Decimal = Decimal(0)
    completed_time: str = ""
    outside_rth: bool = False
    """The placeOrder's ``outsideRth`` field as it arrived (a modify sends it again)."""

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled

    @property
    def avg_price(self) -> Decimal:
        if not self.filled:
            return Decimal(0)
        return (self.notional / self.filled).quantize(Decimal("0.000001"))

    def fields(self) -> OrderFields:
        return OrderFields(self.order_id, self.client_id, self.perm_id, self.action,
                           self.quantity, self.order_type, self.limit_price, self.aux_price,
                           self.tif, self.account, self.order_ref, self.filled)


@dataclass
class TwsExecution:
    """One execution; a correction replaces it in :attr:`FakeTws.executions`."""

    exec_id: str
    order: TwsOrder
    shares: Decimal
    price: Decimal
    time: str
    cum_qty: Decimal
    avg_price: Decimal
    commission: Decimal


@dataclass
class _Conn:
    writer: asyncio.StreamWriter
    client_id: int = -1
    positions: bool = False
    ready: bool = False
    bars: dict[int, str] = field(default_factory=dict)
    """reqRealTimeBars subscriptions: request id -> symbol."""
    recent: collections.deque[float] = field(default_factory=collections.deque)
    """Arrival times of this client's messages in the last second (IB's 50/s cap)."""


@dataclass
class _Account:
    cash: Decimal
    positions: dict[str, tuple[ContractFields, Decimal, Decimal]] = field(
        default_factory=dict)
    """market key (``ContractFields.key``) -> (contract, quantity, average cost)."""


def _commission(shares: Decimal) -> Decimal:
    """IB's fixed US stock rate: USD 0.005 a share, at least USD 1.00."""
    return max(Decimal("0.005") * shares, Decimal("1.00")).quantize(Decimal("0.01"))


class FakeTws:
    """A TWS / IB Gateway stand-in on ``127.0.0.1`` (see the module docstring).

    ``accounts`` maps account codes to starting cash. ``prices`` gives a reference price per
    symbol (a market order's buying-power check); :meth:`trade` updates it. ``min_tick`` is
    the price increment every contract must respect (error 110 otherwise), but currency
    pairs (IDEALPRO's half pip, 0.00005). Option and future multipliers are not applied to
    cash: the stand-in books ``quantity x price``.
    """

    def __init__(self, *, server_version: int = 178,
                 accounts: dict[str, Decimal] | None = None, next_order_id: int = 1,
                 min_tick: Decimal = Decimal("0.01"),
                 prices: dict[str, Decimal] | None = None,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        if server_version not in SUPPORTED_SERVER_VERSIONS:
            raise ValueError(f"server_version must be one of {SUPPORTED_SERVER_VERSIONS}, "
                             f"got {server_version!r}")
        self.server_version = server_version
        self.accounts = {code: _Account(Decimal(cash)) for code, cash in
                         (accounts or {"DU1234567": Decimal(1_000_000)}).items()}
        self.next_order_id = next_order_id
        self.min_tick = min_tick
        self.prices: dict[str, Decimal] = dict(prices or {})
        self.faults = TwsFaults()
        self.max_messages_per_second = 50
        self.pacing_violations = 0
        self.orders: dict[int, TwsOrder] = {}
        self.executions: list[TwsExecution] = []
        self.transcript: list[tuple[str, bytes]] = []
        """("in" | "out", framed bytes) for every message after the handshake's API prefix."""
        self.received: list[list[str]] = []
        self.received_at: list[float] = []
        """Loop time at which each message of :attr:`received` arrived (pacing checks)."""
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._conns: list[_Conn] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._perm = itertools.count(1_000_001)
        self._exec_seq = itertools.count(1)
        self._con_ids: dict[str, int] = {}
        self.port = 0

    # ------------------------------------------------------------------ lifecycle
    async def start(self, port: int = 0) -> int:
        """Listen on 127.0.0.1 (an ephemeral port unless given; give the old one to come back
        after :meth:`stop`, as a gateway does after its daily restart) and return the port."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.drop_connections()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FakeTws:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def drop_connections(self) -> None:
        """Drop every client connection at once, without goodbye (a gateway reset)."""
        for conn in list(self._conns):
            conn.writer.transport.abort()
        self._conns.clear()

    @property
    def connected_clients(self) -> int:
        return sum(1 for c in self._conns if c.ready)

    def placed(self, order_ref: str) -> list[TwsOrder]:
        """The orders the venue holds with this ``orderRef`` (a resend would make two)."""
        return [o for o in self.orders.values() if o.order_ref == order_ref]

    # ------------------------------------------------------------------- sending
    def _send(self, conn: _Conn, fields: list[object]) -> None:
        data = w.frame(fields)
        self.transcript.append(("out", data))
        if not conn.writer.is_closing():
            conn.writer.write(data)

    def _to_client(self, client_id: int, fields: list[object]) -> None:
        for conn in self._conns:
            if conn.ready and conn.client_id == client_id:
                self._send(conn, fields)

    def _error(self, conn: _Conn | None, client_id: int, req_id: int, code: int,
               text: str) -> None:
        msg = w.error(self.server_version, req_id, code, text)
        if conn is not None:
            self._send(conn, msg)
        else:
            self._to_client(client_id, msg)

    # ------------------------------------------------------------------ connection
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            self._conns.append(conn)
            prefix = await reader.readexactly(4)
            if prefix != b"API\0":
                return
            size = int.from_bytes(await reader.readexactly(4), "big")
            hello = (await reader.readexactly(size)).decode("ascii")
            self.transcript.append(("in", prefix + size.to_bytes(4, "big") + hello.encode()))
            low, high = _version_range(hello)
            if self.faults.unresponsive or not low <= self.server_version <= high:
                return  # TWS closes the socket on an unsupported range
            when = self._clock().strftime("%Y%m%d %H:%M:%S UTC")
            self._send(conn, [self.server_version, when])
            decoder = w.FrameDecoder()
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                for fields in decoder.feed(data):
                    if self.faults.unresponsive:
                        continue
                    self.transcript.append(("in", w.frame(fields)))
                    self.received.append(fields)
                    now = asyncio.get_running_loop().time()
                    self.received_at.append(now)
                    if self._over_pace(conn, now):
                        continue
                    if not self._handle(conn, fields):
                        return
                if writer.is_closing():
                    return
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            return
        finally:
            if conn in self._conns:
                self._conns.remove(conn)
            writer.transport.abort()

    def _over_pace(self, conn: _Conn, now: float) -> bool:
        """IB takes at most 50 messages a second from a client; the rest get error 100."""
        conn.recent.append(now)
        while conn.recent and now - conn.recent[0] > 1.0:
            conn.recent.popleft()
        if len(conn.recent) <= self.max_messages_per_second:
            return False
        self.pacing_violations += 1
        self._error(conn, 0, -1, 100, "Max rate of messages per second has been exceeded:"
                    f"max={self.max_messages_per_second} rec={len(conn.recent)}")
        return True

    def connectivity(self, code: int) -> None:
        """Tell every client what TWS says about its own link to IB: 1100 lost, 1101
        restored with data lost (subscriptions must be renewed), 1102 restored, data kept."""
        texts = {1100: "Connectivity between IB and Trader Workstation has been lost.",
                 1101: "Connectivity between IB and TWS has been restored- data lost.",
                 1102: "Connectivity between IB and TWS has been restored- data maintained."}
        for conn in self._conns:
            if conn.ready:
                self._send(conn, w.error(self.server_version, -1, code, texts[code]))

    def _handle(self, conn: _Conn, f: list[str]) -> bool:
        """Answer one request; ``False`` ends the connection."""
        msg = int(f[0])
        if msg == IN.START_API:
            conn.client_id = int(f[2])
            conn.ready = True
            hello = [w.next_valid_id(self._next_free_id()),
                     w.managed_accounts(sorted(self.accounts))]
            if self.faults.withhold_managed_accounts:
                hello.pop()
            elif self.faults.accounts_first:
                hello.reverse()
            for message in hello:
                self._send(conn, message)
        elif msg == IN.PLACE_ORDER:
            return self._place(conn, f)
        elif msg == IN.CANCEL_ORDER:
            self._cancel(conn, int(f[2]))
        elif msg in (IN.REQ_OPEN_ORDERS, IN.REQ_ALL_OPEN_ORDERS):
            self._open_orders(conn, everyone=msg == IN.REQ_ALL_OPEN_ORDERS)
        elif msg == IN.REQ_COMPLETED_ORDERS:
            self._completed_orders(conn)
        elif msg == IN.REQ_EXECUTIONS:
            self._executions(conn, int(f[2]), int(f[3] or 0))
        elif msg == IN.REQ_POSITIONS:
            conn.positions = True
            for code, account in sorted(self.accounts.items()):
                for _, (contract, qty, avg) in sorted(account.positions.items()):
                    self._send(conn, w.position(code, contract, qty, avg))
            self._send(conn, w.position_end())
        elif msg == IN.REQ_REAL_TIME_BARS:
            conn.bars[int(f[2])] = f[4]
        elif msg == IN.CANCEL_REAL_TIME_BARS:
            conn.bars.pop(int(f[2]), None)
        elif msg == IN.CANCEL_POSITIONS:
            conn.positions = False
        elif msg == IN.REQ_ACCOUNT_SUMMARY:
            self._account_summary(conn, int(f[2]))
        elif msg == IN.REQ_ACCOUNT_UPDATES_MULTI:
            self._account_multi(conn, int(f[2]), f[3])
        elif msg == IN.REQ_IDS:
            self._send(conn, w.next_valid_id(self._next_free_id()))
        elif msg == IN.REQ_CURRENT_TIME:
            self._send(conn, w.current_time(int(self._clock().timestamp())))
        elif msg == IN.REQ_GLOBAL_CANCEL:
            for order in list(self.orders.values()):
                if order.status not in DONE:
                    self._finish_cancel(conn, order)
        elif msg == IN.REQ_ACCOUNT_UPDATES:
            if f[2] == "1":
                self._account_updates(conn, f[3] or sorted(self.accounts)[0])
        elif msg == IN.REQ_MANAGED_ACCTS:
            self._send(conn, w.managed_accounts(sorted(self.accounts)))
        elif msg in (IN.REQ_AUTO_OPEN_ORDERS, IN.CANCEL_ACCOUNT_SUMMARY,
                     IN.CANCEL_ACCOUNT_UPDATES_MULTI):
            pass  # nothing to answer
        else:
            self._error(conn, 0, -1, 503, f"The TWS is out of date and must be upgraded. "
                        f"(message {msg} is not served by this stand-in)")
        return True

    def _next_free_id(self) -> int:
        return max([self.next_order_id - 1, *self.orders]) + 1

    def _contract(self, symbol: str) -> ContractFields:
        con_id = self._con_ids.setdefault(symbol, 265_598 + len(self._con_ids))
        return ContractFields(con_id=con_id, symbol=symbol, primary_exchange="NASDAQ")

    # ------------------------------------------------------------------- orders
    def _place(self, conn: _Conn, f: list[str]) -> bool:
        order_id = int(f[1])
        symbol, sec_type = f[3], f[4]
        contract = dataclasses.replace(self._contract(symbol), exchange=f[9] or "SMART")
        if sec_type != "STK":
            strike = Decimal(f[6]) if f[6] and Decimal(f[6]) else None
            contract = ContractFields(
                con_id=0, symbol=symbol, sec_type=sec_type, last_trade=f[5], strike=strike,
                right=f[7], multiplier=f[8], exchange=f[9] or "SMART", currency=f[11] or "USD",
                local_symbol=f[12], trading_class=f[13])
            con_id = self._con_ids.setdefault(contract.key, 265_598 + len(self._con_ids))
            contract = dataclasses.replace(contract, con_id=con_id)
        action, qty, otype = f[16], Decimal(f[17]), f[18]
        lmt = Decimal(f[19]) if f[19] else None
        aux = Decimal(f[20]) if f[20] else None
        tif, account, ref = f[21], f[23], f[26]
        outside_rth = len(f) > _OUTSIDE_RTH and f[_OUTSIDE_RTH] == "1"  # absent: IB default
        existing = self.orders.get(order_id)
        lose = self.faults.lose_next_place
        if lose is not None:
            self.faults.lose_next_place = None
            if lose == "delivered" and existing is None:
                self.orders[order_id] = TwsOrder(
                    order_id, conn.client_id, next(self._perm), account, contract, action, qty,
                    otype, lmt, aux, tif, ref, outside_rth=outside_rth)
            return False
        if existing is not None:
            return self._modify(conn, existing, qty, lmt, aux, outside_rth)
        if order_id < self.next_order_id or order_id in self.orders:
            self._error(conn, 0, order_id, 103, "Duplicate order id")
            return True
        refusal = self._refusal(account, contract, action, qty, otype, lmt)
        if refusal is None and self.faults.reject_next is not None:
            refusal, self.faults.reject_next = self.faults.reject_next, None
        if refusal is not None:
            self._error(conn, 0, order_id, *refusal)
            return True
        order = TwsOrder(order_id, conn.client_id, next(self._perm), account, contract, action,
                         qty, otype, lmt, aux, tif, ref, outside_rth=outside_rth)
        self.orders[order_id] = order
        if self.faults.silence_next_place:
            self.faults.silence_next_place = False
            return True
        self._report(order, open_order=True)
        if self.faults.warn_10349_next:
            self.faults.warn_10349_next = False
            self._error(conn, 0, order_id, 10349,
                        "Order TIF was set to DAY based on order preset.")
        return True

    def _tick(self, contract: ContractFields) -> Decimal:
        return Decimal("0.00005") if contract.sec_type == "CASH" else self.min_tick

    def _refusal(self, account: str, contract: ContractFields, action: str, qty: Decimal,
                 otype: str, lmt: Decimal | None) -> tuple[int, str] | None:
        if account not in self.accounts:
            return 321, (f"Error validating request.-'bN' : cause - The account code "
                         f"{account!r} is not among the managed accounts")
        if action not in ("BUY", "SELL") or qty <= 0:
            return 321, "Error validating request.-'bO' : cause - invalid action or quantity"
        if otype not in ("MKT", "LMT"):
            return 387, "Unsupported order type for this exchange and security type."
        if lmt is not None and lmt % self._tick(contract) != 0:
            return 110, ("The price does not conform to the minimum price variation for "
                         "this contract.")
        price = lmt if lmt is not None else self.prices.get(contract.key, Decimal(0))
        if action == "BUY" and qty * price > self.accounts[account].cash:
            return 201, ("Order rejected - reason:YOUR ORDER IS NOT ACCEPTED. IN ORDER TO "
                         "OBTAIN THE DESIRED POSITION YOUR EQUITY WITH LOAN VALUE MUST EXCEED "
                         "THE INITIAL MARGIN")
        return None

    def _modify(self, conn: _Conn, order: TwsOrder, qty: Decimal, lmt: Decimal | None,
                aux: Decimal | None, outside_rth: bool) -> bool:
        if order.status in DONE:
            self._error(conn, 0, order.order_id, 104,
                        f"Can't modify a filled order. (state: {order.status})"
                        if order.status == "Filled" else
                        f"Order {order.order_id} cannot be modified, state: {order.status}")
            return True
        if lmt is not None and lmt % self._tick(order.contract) != 0:
            self._error(conn, 0, order.order_id, 110, "The price does not conform to the "
                        "minimum price variation for this contract.")
            return True
        if qty < order.filled:
            self._error(conn, 0, order.order_id, 201, "Order rejected - reason:the new "
                        "quantity is below the filled quantity")
            return True
        order.quantity, order.limit_price, order.aux_price = qty, lmt, aux
        order.outside_rth = outside_rth
        self._report(order, open_order=True)
        return True

    def _report(self, order: TwsOrder, *, open_order: bool) -> None:
        if open_order:
            self._to_client(order.client_id, w.open_order(
                self.server_version, order.contract, order.fields(), order.status))
        if not self.faults.drop_order_status:
            self._to_client(order.client_id, w.order_status(
                order.order_id, order.status, order.filled, order.remaining, order.avg_price,
                order.perm_id, order.last_price, order.client_id))

    def _cancel(self, conn: _Conn, order_id: int) -> None:
        order = self.orders.get(order_id)
        if order is None:
            self._error(conn, 0, order_id, 10147,
                        f"OrderId {order_id} that needs to be cancelled is not found.")
            return
        if self.faults.fill_before_cancel_next and order.status not in DONE:
            self.faults.fill_before_cancel_next = False
            self._fill(order, order.remaining, order.limit_price or order.last_price
                       or self.prices.get(order.contract.key, Decimal(1)))
        if order.status in DONE:
            self._error(conn, 0, order_id, 10148, f"OrderId {order_id} that needs to be "
                        f"cancelled cannot be cancelled, state: {order.status}.")
            return
        self._finish_cancel(conn, order)

    def _finish_cancel(self, conn: _Conn | None, order: TwsOrder) -> None:
        order.status = "Cancelled"
        order.completed_time = self._clock().strftime("%Y%m%d %H:%M:%S UTC")
        self._report(order, open_order=False)
        self._error(None, order.client_id, order.order_id, 202, "Order Canceled - reason:")

    # ------------------------------------------------------------------- trading
    async def trade(self, symbol: str, price: Decimal, liquidity: Decimal) -> None:
        """The market ``symbol`` (a stock's symbol, or a contract's ``ContractFields.key``:
        ``EUR.USD``, ``AAPL OPT 20240119 190C``) trades at ``price`` with ``liquidity`` units
        for our orders: working orders that accept the price fill in order id order."""
        self.prices[symbol] = price
        left = liquidity
        for order in sorted(self.orders.values(), key=lambda o: o.order_id):
            if left <= 0:
                break
            if order.contract.key != symbol or order.status in DONE:
                continue
            if order.limit_price is not None and (
                    (order.action == "BUY" and price > order.limit_price)
                    or (order.action == "SELL" and price < order.limit_price)):
                continue
            qty = min(order.remaining, left)
            left -= qty
            self._fill(order, qty, price)
        await self._flush()

    async def _flush(self) -> None:
        for conn in list(self._conns):
            with contextlib.suppress(ConnectionError):
                await conn.writer.drain()

    def _exec_time(self) -> str:
        return self._clock().strftime("%Y%m%d %H:%M:%S UTC")

    def _fill(self, order: TwsOrder, qty: Decimal, price: Decimal) -> None:
        order.filled += qty
        order.notional += qty * price
        order.last_price = price
        if order.remaining == 0:
            order.status = "Filled"
            order.completed_time = self._exec_time()
        exec_id = f"0000e0d5.{next(self._exec_seq):08x}.01.01"
        ex = TwsExecution(exec_id, order, qty, price, self._exec_time(), order.filled,
                          order.avg_price, _commission(qty))
        self.executions.append(ex)
        self._book(order, qty if order.action == "BUY" else -qty, price)
        times = 2 if self.faults.duplicate_next_execution else 1
        self.faults.duplicate_next_execution = False
        if self.faults.disconnect_mid_fill_next:
            self.faults.disconnect_mid_fill_next = False
            self._to_client(order.client_id, self._exec_msg(-1, ex))
            for conn in list(self._conns):
                if conn.client_id == order.client_id:
                    conn.writer.transport.abort()
                    self._conns.remove(conn)
            return
        for _ in range(times):
            self._to_client(order.client_id, self._exec_msg(-1, ex))
        self._report(order, open_order=order.status == "Filled")
        for _ in range(times):
            self._to_client(order.client_id, w.commission_report(ex.exec_id, ex.commission))
        self._publish_position(order)

    def _book(self, order: TwsOrder, signed: Decimal, price: Decimal) -> None:
        account = self.accounts[order.account]
        account.cash -= signed * price
        key = order.contract.key
        _, qty, avg = account.positions.get(key, (order.contract, Decimal(0), Decimal(0)))
        new = qty + signed
        if new == 0:
            account.positions.pop(key, None)
            return
        six = Decimal("0.000001")
        if qty == 0 or (qty > 0) == (signed > 0):
            avg = ((qty * avg + signed * price) / new).quantize(six)
        elif (new > 0) != (qty > 0):
            avg = price
        account.positions[key] = (order.contract, new, avg)

    def _publish_position(self, order: TwsOrder) -> None:
        _, qty, avg = self.accounts[order.account].positions.get(
            order.contract.key, (order.contract, Decimal(0), Decimal(0)))
        for conn in self._conns:
            if conn.ready and conn.positions:
                self._send(conn, w.position(order.account, order.contract, qty, avg))

    def _exec_msg(self, req_id: int, ex: TwsExecution) -> list[object]:
        o = ex.order
        return w.exec_details(self.server_version, req_id, o.order_id, o.contract, ex.exec_id,
                              ex.time, o.account, "BOT" if o.action == "BUY" else "SLD",
                              ex.shares, ex.price, o.perm_id, o.client_id, ex.cum_qty,
                              ex.avg_price, o.order_ref)

    async def push_bar(self, symbol: str, start: dt.datetime, open_: Decimal, high: Decimal,
                       low: Decimal, close: Decimal, volume: Decimal) -> int:
        """Send a 5-second real-time bar starting at ``start`` to every subscriber of
        ``symbol``; returns how many subscriptions got it."""
        sent = 0
        wap = ((high + low + close) / 3).quantize(Decimal("0.0001"))
        for conn in self._conns:
            for req_id, sym in conn.bars.items():
                if sym == symbol and conn.ready:
                    self._send(conn, w.realtime_bar(req_id, int(start.timestamp()), open_, high,
                                                    low, close, volume, wap, 1))
                    sent += 1
        await self._flush()
        return sent

    def bar_subscribers(self, symbol: str) -> int:
        return sum(1 for c in self._conns for s in c.bars.values() if s == symbol)

    async def correct_execution(self, exec_id: str | None = None, *,
                                shares: Decimal | None = None,
                                price: Decimal | None = None) -> TwsExecution:
        """Correct an execution (default: the last): a new execDetails whose execId differs
        after its last period (``.01`` -> ``.02``) with the new shares and/or price, and its
        commission report. It replaces the old one in :attr:`executions`, the order's filled
        quantity and the account's position."""
        old = next((e for e in reversed(self.executions)
                    if exec_id is None or e.exec_id == exec_id), None)
        if old is None:
            raise KeyError(f"no execution {exec_id!r} to correct")
        base, _, rev = old.exec_id.rpartition(".")
        new_shares = shares if shares is not None else old.shares
        new_price = price if price is not None else old.price
        order = old.order
        order.filled += new_shares - old.shares
        order.notional += new_shares * new_price - old.shares * old.price
        order.last_price = new_price
        if order.remaining == 0 and order.status not in DONE:
            order.status = "Filled"
        sign = 1 if order.action == "BUY" else -1
        self._book(order, sign * -old.shares, old.price)
        self._book(order, sign * new_shares, new_price)
        new = TwsExecution(f"{base}.{int(rev) + 1:02d}", order, new_shares, new_price,
                           old.time, order.filled, order.avg_price, _commission(new_shares))
        self.executions[self.executions.index(old)] = new
        self._to_client(order.client_id, self._exec_msg(-1, new))
        self._to_client(order.client_id, w.commission_report(new.exec_id, new.commission))
        self._publish_position(order)
        await self._flush()
        return new

    # ------------------------------------------------------------------ queries
    def _open_orders(self, conn: _Conn, *, everyone: bool) -> None:
        for order in sorted(self.orders.values(), key=lambda o: o.order_id):
            if order.status in DONE:
                continue
            if not everyone and conn.client_id != 0 and order.client_id != conn.client_id:
                continue
            self._send(conn, w.open_order(self.server_version, order.contract, order.fields(),
                                          order.status))
            if not self.faults.drop_order_status:
                self._send(conn, w.order_status(
                    order.order_id, order.status, order.filled, order.remaining,
                    order.avg_price, order.perm_id, order.last_price, order.client_id))
        self._send(conn, w.open_order_end())

    def _completed_orders(self, conn: _Conn) -> None:
        for order in sorted(self.orders.values(), key=lambda o: o.order_id):
            if order.status in DONE:
                self._send(conn, w.completed_order(
                    self.server_version, order.contract, order.fields(), order.status,
                    order.completed_time, order.status))
        self._send(conn, w.completed_orders_end())

    def _executions(self, conn: _Conn, req_id: int, client_id: int) -> None:
        chosen = [e for e in self.executions
                  if client_id in (0, e.order.client_id)]
        for ex in chosen:
            self._send(conn, self._exec_msg(req_id, ex))
        for ex in chosen:
            self._send(conn, w.commission_report(ex.exec_id, ex.commission))
        self._send(conn, w.exec_details_end(req_id))

    def _account_values(self, code: str) -> dict[str, Decimal]:
        account = self.accounts[code]
        value = sum((q * self.prices.get(k, avg) for k, (_, q, avg) in account.positions.items()),
                    Decimal(0))
        net = account.cash + value
        return {"NetLiquidation": net, "TotalCashValue": account.cash,
                "BuyingPower": max(account.cash, Decimal(0)) * 4,
                "GrossPositionValue": value}

    def _account_summary(self, conn: _Conn, req_id: int) -> None:
        for code in sorted(self.accounts):
            for tag, value in self._account_values(code).items():
                self._send(conn, w.account_summary(req_id, code, tag, value))
        self._send(conn, w.account_summary_end(req_id))

    def _account_updates(self, conn: _Conn, account: str) -> None:
        if account in self.accounts:
            for tag, value in self._account_values(account).items():
                self._send(conn, w.account_value(tag, value, account))
            self._send(conn, w.account_update_time(self._clock().strftime("%H:%M")))
        self._send(conn, w.account_download_end(account))

    def _account_multi(self, conn: _Conn, req_id: int, account: str) -> None:
        for code in sorted(self.accounts):
            if account in ("", "All", code):
                for tag, value in self._account_values(code).items():
                    self._send(conn, w.account_update_multi(req_id, code, tag, value))
        self._send(conn, w.account_update_multi_end(req_id))


def _version_range(hello: str) -> tuple[int, int]:
    """``"v157..178 +PACEAPI"`` -> (157, 178); a single ``"v176"`` -> (176, 176)."""
    spec = hello.split(" ", 1)[0]
    if not spec.startswith("v"):
        raise ValueError(f"bad API version string {hello!r}")
    low, _, high = spec[1:].partition("..")
    return int(low), int(high or low)


class TwsFaultDriver:
    """The conformance kit's venue and fault driver for a :class:`FakeTws`
    (``mts1b_brokers.conformance.VenueDriver`` and ``FaultDriver``)."""

    def __init__(self, tws: FakeTws) -> None:
        self.tws = tws

    async def trade(self, symbol: str, price: Decimal, liquidity: Decimal) -> None:
        await self.tws.trade(symbol, price, liquidity)

    async def lose_next_submit(self, *, delivered: bool) -> None:
        self.tws.faults.lose_next_place = "delivered" if delivered else "lost"

    async def duplicate_next_execution(self) -> None:
        self.tws.faults.duplicate_next_execution = True

    async def correct_last_execution(self, quantity: Decimal) -> None:
        await self.tws.correct_execution(shares=quantity)

    async def drop_connection(self) -> None:
        self.tws.drop_connections()

    async def disconnect_mid_next_fill(self) -> None:
        self.tws.faults.disconnect_mid_fill_next = True

    def orders_at_venue(self, order_id: str) -> int:
        return len(self.tws.placed(order_id))
