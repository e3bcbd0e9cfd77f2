"""``RemoteBroker``: ``BrokerProtocol`` over NATS, talking to a :class:`BrokerService`.

Error mapping (the point of the coded errors):

=========================================  ==================================================
what happened                              raised
=========================================  ==================================================
not connected, or nobody serves the        ``BrokerTransportError`` (the command certainly did
subject (NATS "no responders")             not reach a broker)
no reply within ``timeout`` to submit,     ``BrokerUnknownOutcome`` (it may have been
cancel or replace                          executed: reconcile with ``open_orders``)
no reply to a query (``order_status``      ``BrokerTransportError`` (reads have no effect)
included)
reply ``code=ORDER_NOT_FOUND`` to          ``order_status`` returns ``None``: the broker
``order_status``                           proves it never received the order
reply ``code=BROKER_REJECTED`` or a        ``BrokerRejected`` (``context["report"]`` holds the
malformed-command reply                    REJECT report when there is one)
=========================================  ==================================================

Execution reports are read from the stream ``MTS_BROKERS`` with an ordered consumer started at
``connect``; after a reconnect it resumes after the last stream sequence it saw, so reports
published while the client was away are still delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import nats.errors
import nats.js.errors
from mts1b_foundation import (
    AccountSnapshot,
    BrokerQuery,
    BrokerRejected,
    BrokerTransportError,
    BrokerUnknownOutcome,
    CancelOrder,
    CommandReply,
    ConnectionState,
    ExecutionReport,
    Order,
    OrderStatusQuery,
    Position,
    ReplaceOrder,
    ReplaceRequest,
    ReplyCode,
    SubmitOrder,
    ValidationFailed,
    WireModel,
    parse_message,
)
from mts1b_platform.bus import Bus, BusError, BusSettings
from nats.aio.msg import Msg
from nats.js import api
from nats.js.client import JetStreamContext

from mts1b_brokers.paper import ReportStream
from mts1b_brokers.service import command_subject, execution_subject

__all__ = ["RemoteBroker"]


class RemoteBroker:
    """A broker served elsewhere (``mts mts1b-brokers serve <name>``), used like a local one.

    ``settings`` / ``overrides`` go to :meth:`mts1b_platform.bus.Bus.connect` (``url``,
    ``namespace``, credentials...). ``timeout`` bounds each request in seconds.

    ``unavailable_grace``: how many seconds a command keeps being sent again while no broker
    service listens (NATS "no responders"), before it fails with ``BrokerTransportError``.
    Safe for every command, submits included: "no responders" proves the command reached no
    service, so a second send cannot execute it twice. Why: a supervised service that was
    killed is back within seconds; without the grace every order sent meanwhile was rejected
    (the paper loop's kill test traded a session differently). 0, the default, fails at once.
    """

    def __init__(self, name: str = "paper", *, settings: BusSettings | None = None,
                 timeout: float = 5.0, unavailable_grace: float = 0.0,
                 **overrides: Any) -> None:
        if not (0 <= unavailable_grace < float("inf")):
            raise ValueError(f"unavailable_grace must be a number of seconds >= 0, got "
                             f"{unavailable_grace!r}")
        self._name = name
        self._settings = settings
        self._overrides = overrides
        self._timeout = timeout
        self._grace = unavailable_grace
        self._bus: Bus | None = None
        self._state = ConnectionState.DISCONNECTED
        self._subscribers: set[ReportStream] = set()
        self._sub: JetStreamContext.PushSubscription | None = None
        self._last_seq: int | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def connection_state(self) -> ConnectionState:
        if self._bus is not None and self._state is ConnectionState.CONNECTED and (
            not self._bus.nc.is_connected
        ):
            return ConnectionState.RECONNECTING
        return self._state

    async def connect(self) -> None:
        if self._state is ConnectionState.CONNECTED:
            return
        self._state = ConnectionState.CONNECTING
        try:
            self._bus = await Bus.connect(self._settings, **self._overrides)
            await self._bus.declare_streams(["brokers"])
            await self._follow_reports(self._bus)
        except (BusError, nats.errors.Error, OSError) as exc:
            self._state = ConnectionState.DISCONNECTED
            raise BrokerTransportError(f"cannot connect to broker {self._name!r}: {exc}",
                                       broker=self._name) from None
        self._state = ConnectionState.CONNECTED

    async def close(self) -> None:
        bus, self._bus = self._bus, None
        self._state = ConnectionState.DISCONNECTED
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        if bus is not None:
            with contextlib.suppress(Exception):
                await bus.drain(timeout=5.0)

    async def __aenter__(self) -> RemoteBroker:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _follow_reports(self, bus: Bus) -> None:
        if self._last_seq is None:
            policy, start = api.DeliverPolicy.NEW, None
        else:
            policy, start = api.DeliverPolicy.BY_START_SEQUENCE, self._last_seq + 1
        self._sub = await bus.js.subscribe(
            bus.wire_subject(execution_subject(self._name)), stream=bus.stream_for("brokers"),
            ordered_consumer=True, cb=self._on_report,
            config=api.ConsumerConfig(deliver_policy=policy, opt_start_seq=start),
        )
        if self._last_seq is None:
            # Anchor the sequence so a later reconnect resumes from here, not from "new".
            info = await bus.js.stream_info(bus.stream_for("brokers"))
            self._last_seq = info.state.last_seq

    async def _on_report(self, msg: Msg) -> None:
        self._last_seq = msg.metadata.sequence.stream
        try:
            report = parse_message(ExecutionReport, msg.data)
        except ValidationFailed:
            return
        for sub in list(self._subscribers):
            sub.put(report)

    def execution_reports(self) -> AsyncIterator[ExecutionReport]:
        return ReportStream(self._subscribers)

    async def caught_up(self, timeout: float = 30.0) -> int:
        """Return once every execution report this broker has published so far (up to the
        stream's last sequence on its execution subject, read now) has been delivered to the
        report streams (:meth:`execution_reports`, each :class:`~collections.abc.Sized`: what
        is delivered and not yet taken); the sequence waited for. Why: a service on a lockstep
        replay's clock (the OMS) finishes a session only after applying every report the
        venue made in it, and the venue answered its tick only after publishing them. A broker
        not connected, or reports not delivered within ``timeout`` seconds, is a
        ``BrokerTransportError``."""
        bus = self._bus
        if bus is None or self._state is not ConnectionState.CONNECTED:
            raise BrokerTransportError(f"{self._name} is {self.connection_state.value}: "
                                       "cannot tell which reports it published",
                                       broker=self._name, call="caught_up")
        stream = bus.stream_for("brokers")
        try:
            last = await bus.js.get_last_msg(stream,
                                             bus.wire_subject(execution_subject(self._name)))
            target = int(last.seq or 0)
        except nats.js.errors.NotFoundError:
            return 0  # nothing published on the subject yet
        except (nats.errors.Error, nats.js.errors.Error) as exc:
            raise BrokerTransportError(f"cannot read the last report of {self._name}: "
                                       f"{type(exc).__name__}", broker=self._name,
                                       call="caught_up") from None
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while (self._last_seq or 0) < target:
            if loop.time() >= end:
                raise BrokerTransportError(
                    f"{self._name}: reports up to stream sequence {target} not delivered "
                    f"within {timeout:g}s (delivered up to {self._last_seq or 0})",
                    broker=self._name, call="caught_up", sequence=target)
            await asyncio.sleep(0.005)
        return target

    # -------------------------------------------------------------------------- requests
    async def _request(self, command: str, message: WireModel, *, mutates: bool,
                       absent: bool = False) -> CommandReply:
        bus = self._bus
        if bus is None or self._state is not ConnectionState.CONNECTED:
            raise BrokerTransportError(f"{self._name} is {self.connection_state.value}: "
                                       f"{command} not sent", broker=self._name, call=command)
        subject = bus.wire_subject(command_subject(self._name, command))
        try:
            msg = await self._send(bus, subject, message.to_json(), command)
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError,
                nats.errors.ConnectionReconnectingError) as exc:
            raise BrokerTransportError(f"{command} not sent: {type(exc).__name__}",
                                       broker=self._name, call=command) from None
        except (TimeoutError, nats.errors.TimeoutError):
            if mutates:
                raise BrokerUnknownOutcome(
                    f"no reply to {command} within {self._timeout}s: it may have been executed",
                    broker=self._name, call=command) from None
            raise BrokerTransportError(f"no reply to {command} within {self._timeout}s",
                                       broker=self._name, call=command) from None
        try:
            reply = parse_message(CommandReply, msg.data)
        except ValidationFailed as exc:
            raise BrokerUnknownOutcome(f"unreadable reply to {command}: {exc.message}",
                                       broker=self._name, call=command) from None
        if not reply.ok and not (absent and reply.code is ReplyCode.ORDER_NOT_FOUND):
            self._raise_for(reply, command)
        return reply

    async def _send(self, bus: Bus, subject: str, payload: bytes, command: str) -> Msg:
        """The request, sent again while nobody listens, for up to ``unavailable_grace``
        seconds (waits of 0.05 s doubling to 0.5 s); then ``BrokerTransportError``."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._grace
        wait = 0.05
        while True:
            try:
                return await bus.nc.request(subject, payload, timeout=self._timeout)
            except nats.errors.NoRespondersError:
                if loop.time() + wait > give_up:
                    waited = f" (waited {self._grace:g}s)" if self._grace else ""
                    raise BrokerTransportError(
                        f"no {self._name!r} broker service is listening{waited}",
                        broker=self._name, call=command) from None
            await asyncio.sleep(wait)
            wait = min(wait * 2, 0.5)

    def _raise_for(self, reply: CommandReply, command: str) -> None:
        report = (parse_message(ExecutionReport, reply.payload) if reply.payload else None)
        context: dict[str, Any] = {**reply.context, "broker": self._name, "call": command,
                                   "remote_code": reply.code}
        if report is not None:
            context["report"] = report
        message = reply.message or f"{command} failed with {reply.code}"
        if reply.code is BrokerTransportError.reply_code:
            raise BrokerTransportError(message, **context)
        if reply.code is BrokerUnknownOutcome.reply_code:
            raise BrokerUnknownOutcome(message, **context)
        # The service answered: rejected by the venue, or refused as malformed before reaching
        # it. Either way the order certainly does not exist there.
        raise BrokerRejected(message, **context)

    async def _report(self, command: str, message: WireModel) -> ExecutionReport:
        reply = await self._request(command, message, mutates=True)
        if reply.payload is None:
            raise BrokerUnknownOutcome(f"{command} reply carries no report", broker=self._name)
        return parse_message(ExecutionReport, reply.payload)

    async def submit(self, order: Order) -> ExecutionReport:
        return await self._report("submit", SubmitOrder(order=order))

    async def cancel(self, order_id: str) -> ExecutionReport:
        return await self._report("cancel", CancelOrder(order_id=order_id))

    async def replace(self, order_id: str, *, quantity: Decimal | None = None,
                      limit_price: Decimal | None = None,
                      stop_price: Decimal | None = None) -> ExecutionReport:
        request = ReplaceRequest(order_id=order_id, quantity=quantity, limit_price=limit_price,
                                 stop_price=stop_price)
        return await self._report("replace", ReplaceOrder(replace=request))

    async def order_status(self, client_order_id: str) -> ExecutionReport | None:
        """The remote broker's latest report of the order, or ``None`` when it answers
        ``ORDER_NOT_FOUND`` (it proves it never received the order). No answer is a
        ``BrokerTransportError``: silence proves nothing."""
        reply = await self._request("order_status", OrderStatusQuery(order_id=client_order_id),
                                    mutates=False, absent=True)
        if not reply.ok:
            return None
        if reply.payload is None:
            raise BrokerTransportError("order_status reply carries no report",
                                       broker=self._name, call="order_status")
        return parse_message(ExecutionReport, reply.payload)

    async def _query(self, kind: str, account_id: str | None) -> Any:
        reply = await self._request("query", BrokerQuery(kind=kind, account_id=account_id),
                                    mutates=False)
        return json.loads(reply.payload or "null")

    async def open_orders(self, account_id: str | None = None) -> list[Order]:
        return [parse_message(Order, o) for o in await self._query("open_orders", account_id)]

    async def positions(self, account_id: str) -> list[Position]:
        return [parse_message(Position, p) for p in await self._query("positions", account_id)]

    async def account(self, account_id: str) -> AccountSnapshot:
        return parse_message(AccountSnapshot, await self._query("account", account_id))
