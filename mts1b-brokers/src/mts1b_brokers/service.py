"""A broker as a NATS service: commands by request/reply, execution reports into JetStream.

``BrokerService(broker, bus)`` answers
``mts.v1.brokers.<name>.submit|cancel|replace|query|order_status`` with a
:class:`~mts1b_foundation.CommandReply` - also when the command is malformed, in which case
the reply is ``ok=False, code=VALIDATION_FAILED`` and ``context["field"]`` names the
first offending field (the message is dead-lettered as well, and the service keeps running).
Every execution report the broker emits is published on ``mts.v1.brokers.<name>.execution``
(stream ``MTS_BROKERS``; fills use their ``trade_id`` as ``Nats-Msg-Id``), followed after each
fill by the account's snapshot on ``mts.v1.brokers.<name>.account``.

For a paper venue the service can also follow market data: bars on
``mts.v1.datalake.bars.*`` and quotes on ``mts.v1.datalake.quotes.*`` (core NATS subscriptions)
are fed to ``on_bar`` / ``on_quote``.

On a lockstep replay's clock (``replay_clock``, the CLI's ``--replay-clock``) the paper service
is the participant ``broker-<name>`` (:func:`~mts1b_platform.replayclock.serve_ticks`): it
answers a session's :class:`~mts1b_foundation.ClockTick` only once it has applied the
session's corporate actions (``tick.actions`` of them, from ``mts.v1.datalake.actions.*``:
splits, cash dividends and delistings at the open, :meth:`PaperClient.delist` cancelling the
delisted symbol's working orders), then fed the venue every bar of the session
(``tick.bars`` bars whose ``ts`` is the tick's), and published every execution report and
account snapshot they caused, so the OMS after it finds the session's fills on the stream. Why
it counts: bars and actions travel on core NATS, and the tick request can overtake the last of
them; a venue that (re)started after they were sent reads the bars from the datalake stream
instead (each symbol's last stored bar). The bars are held until the tick (see
:meth:`BrokerService.on_tick`) and fed once per symbol and session, whichever way they came.
The venue's clock is the replay's, so an order accepted during session d's cycle (at d's
close) can trade only on a later bar: it fills at d+1's open. Run it only under a lockstep
replay: without ticks, the held bars never trade.

A durable service (``durable=True``; ``serve paper`` is) keeps its paper venue's state in the
KV bucket ``broker-state-<name>`` (:mod:`mts1b_brokers.venuestate`) and restores it at start:
each command, bar, quote and tick is stored before the reply and before its reports are
published (reports stored but not published when the process died are published at start),
so a SIGKILL at any point loses nothing and repeats nothing.

The reply's ``payload`` is JSON: the ``ExecutionReport`` for submit/cancel/replace (also for a
rejection), a list of ``Order`` / ``Position`` for ``open_orders`` / ``positions`` queries, an
``AccountSnapshot`` for ``account``, ``{"state": ...}`` for ``connection``. An
``order_status`` query (:class:`~mts1b_foundation.OrderStatusQuery`) is answered with the
order's latest ``ExecutionReport`` in ``payload``, or ``ok=False, code=ORDER_NOT_FOUND`` when
the broker proves it never received the order (``BrokerProtocol.order_status`` returned
``None``); a broker that cannot tell raises, and that is answered with its error's code.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator, Sized
from typing import Any

import nats.errors
import nats.js.errors
from mts1b_foundation import (
    Bar,
    BrokerProtocol,
    BrokerQuery,
    BrokerRejected,
    CancelOrder,
    ClockTick,
    CommandReply,
    CorporateAction,
    ExecType,
    ExecutionReport,
    MtsError,
    OrderStatusQuery,
    Quote,
    ReplaceOrder,
    ReplyCode,
    SubmitOrder,
    ValidationFailed,
    WireModel,
    parse_message,
)
from mts1b_foundation import subjects as registry
from mts1b_platform.bus import Bus
from mts1b_platform.heartbeat import Heartbeater
from mts1b_platform.logging import get_logger
from mts1b_platform.replayclock import ReplayClock, serve_ticks, stored_actions
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from mts1b_brokers.paper import PaperClient, status_of
from mts1b_brokers.venuestate import VenueStore

__all__ = ["BrokerService", "SessionNotFinished", "account_subject", "command_subject",
           "execution_subject", "heartbeat_service", "tick_participant"]

_log = get_logger(__name__)
_STREAM_AFTER_SECONDS = 0.25
"""On a tick, how long the bars of the session may take to arrive on core NATS before the
datalake stream is read for them (and again each second after)."""
_BAR_SUBJECTS = "mts.v1.datalake.bars.*"
_PUMP_STOP_SECONDS = 1.0
"""How long stop() waits for the report pump after cancelling it before cancelling again."""
_COMMANDS: dict[str, type[WireModel]] = {
    "submit": SubmitOrder, "cancel": CancelOrder, "replace": ReplaceOrder, "query": BrokerQuery,
    "order_status": OrderStatusQuery,
}


def command_subject(broker: str, command: str) -> str:
    """``mts.v1.brokers.<broker>.<command>`` (command: submit, cancel, replace, query,
    order_status).

    Built by the foundation's subject registry, so a broker name that cannot be a subject
    token, or a command nobody registered, is a ``SubjectError`` here and not a silent
    publish to nowhere.
    """
    return registry.subject("brokers", broker, command)


def execution_subject(broker: str) -> str:
    """``mts.v1.brokers.<broker>.execution``: every execution report (stream MTS_BROKERS)."""
    return registry.subject("brokers", broker, "execution")


def account_subject(broker: str) -> str:
    """``mts.v1.brokers.<broker>.account``: the account snapshot after each fill."""
    return registry.subject("brokers", broker, "account")


def heartbeat_service(broker: str) -> str:
    """The name a broker service beats as: ``mts1b-brokers-<broker>`` (its heartbeats go to
    ``mts.v1.operations.heartbeats.mts1b-brokers-<broker>``)."""
    return f"mts1b-brokers-{broker}"


def tick_participant(broker: str) -> str:
    """``broker-<name>``: the participant a broker service on a replay's clock is handed its
    ticks as (``mts mts1b-datalake replay --lockstep broker-paper,...``)."""
    return f"broker-{broker}"


class SessionNotFinished(MtsError):
    """A broker service on a replay's clock could not finish a session: the session's bars did
    not all arrive, or reports could not be published. The tick is refused with this message
    and the replay stops, naming the service."""

    code = "BROKERS.SESSION_NOT_FINISHED"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _venue_code(value: object) -> str | None:
    """A venue's reason code as ``CommandReply.venue_code`` takes it (printable ASCII without
    blanks, at most 64 characters); anything else stays in the context only."""
    if isinstance(value, str) and 0 < len(value) <= 64 and value.isascii() and (
            value.isprintable() and " " not in value):
        return value
    return None


def _error_reply(exc: MtsError, **extra: Any) -> CommandReply:
    """``code`` is the error's ReplyCode; the venue's own reason code, if any, goes in
    ``venue_code`` (the paper venue's are ReplyCode names such as ``TICK_SIZE``)."""
    context: dict[str, str | int | float | bool | None] = {}
    for key, value in exc.context.items():
        if isinstance(value, str | int | float | bool) or value is None:
            context[str(key)[:64]] = value
    report = exc.context.get("report")
    return CommandReply(ok=False, code=exc.reply_code, message=exc.message[:4000],
                        venue_code=_venue_code(exc.context.get("reason_code")), context=context,
                        payload=report.model_dump_json() if isinstance(report, WireModel)
                        else None, ts=_now(), **extra)


class BrokerService:
    """Serve ``broker`` on the bus under its name. ``await start()``, later ``await stop()``."""

    def __init__(self, broker: BrokerProtocol, bus: Bus, *, follow_market_data: bool = True,
                 queue: str | None = None, replay_clock: ReplayClock | None = None,
                 bar_wait: float = 20.0, durable: bool = False,
                 reset_state: bool = False, heartbeat_interval: float | None = None,
                 heartbeat_instance: str = "default") -> None:
        """``replay_clock``: serve the ticks of a lockstep replay as ``broker-<name>`` (see the
        module's docs); the paper venue must run on that clock itself
        (``PaperClient(clock=...)``), and it must follow market data. ``bar_wait``: seconds a
        tick waits for its session's bars before it is refused.

        ``durable`` (a paper venue only; the CLI's ``serve paper`` sets it): the venue's state
        is kept in its KV bucket (:mod:`mts1b_brokers.venuestate`) and restored by
        :meth:`start`, so a SIGKILL loses nothing - every state change the service makes (a
        command, a bar or quote, a session's tick) is stored before the command is answered
        and before any report it caused is published. ``reset_state``: forget the stored
        state at start (a new paper run in the same namespace).

        ``heartbeat_interval``: beat as :func:`heartbeat_service` every so many seconds
        between :meth:`start` and :meth:`stop` (``mts mts1b-brokers serve`` does, every 10 s by
        default); ``None``, a service embedded in another process (a test, a backtest),
        does not."""
        self.broker = broker
        self.bus = bus
        self.name = broker.name
        self._follow = follow_market_data and isinstance(broker, PaperClient)
        if replay_clock is not None and not self._follow:
            raise ValueError("replay_clock needs a paper venue that follows market data")
        self._queue = queue or f"brokers-{self.name}"
        self._subs: list[Subscription] = []
        self._pump: asyncio.Task[None] | None = None
        self._accepted: set[str] = set()
        self._stream: AsyncIterator[ExecutionReport] | None = None
        self.replay_clock = replay_clock
        self._bar_wait = bar_wait
        # on a replay's clock: a session's bars and actions held until its tick (on_tick)
        self._bars: dict[dt.datetime, dict[str, Bar]] = {}  # session close -> symbol -> bar
        self._fed_bars: dict[dt.datetime, set[str]] = {}  # session close -> symbols traded
        self._actions: dict[str, dict[str, CorporateAction]] = {}  # ex-date -> id -> action
        self._applied: dict[str, str] = {}  # action_id -> ex-date, applied to the venue
        self._arrived = asyncio.Event()
        self._publishing = False  # the pump holds a report it has not published yet
        self.publish_failures = 0
        if durable and not isinstance(broker, PaperClient):
            raise ValueError("durable needs a paper venue (its state is the PaperClient's)")
        self._durable = durable
        self._reset_state = reset_state
        self.store: VenueStore | None = None
        self._save_lock = asyncio.Lock()
        self._stored_upto = 0  # reports (PaperClient.emitted) covered by the stored state
        self._stored = asyncio.Event()  # set at each save: the pump may publish more
        self._unsaved_ended: list[dict[str, Any]] = []  # ended records a failed save held
        self._published = 0  # reports (numbered as PaperClient.emitted counts) handed to NATS
        self._outbox: dict[int, ExecutionReport] = {}  # stored, not yet published
        self.heartbeat = (None if heartbeat_interval is None else Heartbeater(
            bus, heartbeat_service(self.name), instance=heartbeat_instance,
            interval_s=heartbeat_interval))

    async def start(self) -> None:
        """Restore the stored state (``durable``), connect the venue, start publishing and
        subscribe. Raises :class:`~mts1b_brokers.venuestate.VenueStateUnreadable` (naming the
        bucket and key) when a stored state cannot be read: the venue is not reset."""
        await self.bus.declare_streams(
            ["brokers"] if self.heartbeat is None else ["brokers", "operations"])
        if self._durable:
            await self._restore()
            await self._publish_outbox()
        await self.broker.connect()
        self._stream = self.broker.execution_reports()
        first = self.broker.emitted if isinstance(self.broker, PaperClient) else 0
        self._pump = asyncio.create_task(self._publish_reports(self._stream, first))
        nc = self.bus.nc
        for command in _COMMANDS:
            wire = self.bus.wire_subject(command_subject(self.name, command))
            self._subs.append(await nc.subscribe(wire, queue=self._queue, cb=self._on_command))
        if self._follow:
            kinds = ("bars", "quotes", "actions") if self.replay_clock else ("bars", "quotes")
            for kind in kinds:
                wire = self.bus.wire_subject(f"mts.v1.datalake.{kind}.*")
                self._subs.append(await nc.subscribe(wire, cb=self._on_market_data))
        if self.replay_clock is not None:
            self._subs.append(await serve_ticks(self.bus, tick_participant(self.name),
                                                self.on_tick, self.replay_clock))
        await nc.flush()  # the server knows every subscription before start() returns
        if self.heartbeat is not None:
            self.heartbeat.start()
        _log.info("broker service started", broker=self.name, namespace=self.bus.namespace)

    async def stop(self) -> None:
        if self.heartbeat is not None:
            await self.heartbeat.stop()
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()
        if self._pump is not None:
            await asyncio.sleep(0)  # let reports already queued reach the pump
            while not self._pump.done():  # a cancel can be swallowed on the way: ask again
                self._pump.cancel()
                await asyncio.wait({self._pump}, timeout=_PUMP_STOP_SECONDS)
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            await aclose()
        await self.broker.close()
        _log.info("broker service stopped", broker=self.name)

    async def __aenter__(self) -> BrokerService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---------------------------------------------------------------------- durable state
    async def _restore(self) -> None:
        venue = self.broker
        if not isinstance(venue, PaperClient):  # pragma: no cover - checked at __init__
            return
        self.store = store = await VenueStore.open(self.bus, self.name)
        if self._reset_state:
            await store.clear()
            _log.warning("stored venue state reset", broker=self.name, bucket=store.bucket)
        state = await store.load()
        if state is not None:
            try:
                venue.restore(state["venue"])
                service = state["service"]
                self._fed_bars = {dt.datetime.fromisoformat(ts): set(symbols)
                                  for ts, symbols in service["fed_bars"].items()}
                self._applied = dict(service["applied"])
                self._outbox = {int(n): ExecutionReport.model_validate(r)
                                for n, r in service["outbox"]}
            except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
                raise store._unreadable("part.*", f"{type(exc).__name__}: {exc}") from None
            _log.info("venue state restored", broker=self.name, bucket=store.bucket,
                      generation=store.generation, reports=venue.emitted)
        self._stored_upto = self._published = venue.emitted

    async def _publish_outbox(self) -> None:
        """Publish the reports the stored state holds as not yet published: the process
        stored them and was killed before its pump published them (a copy that did reach
        the stream is the same message and JetStream drops it: fills by trade id, the rest
        by content)."""
        subject = execution_subject(self.name)
        for number in sorted(self._outbox):
            report = self._outbox[number]
            await self.bus.publish(subject, report, msg_id=report.trade_id)
        if self._outbox:
            _log.info("reports stored before the restart published", broker=self.name,
                      reports=len(self._outbox))

    async def _persist(self) -> None:
        """Store the venue's state now, if it changed (``durable`` only). Why before a reply
        or a publish: a command answered, or a report published, is then in the state any
        restart begins from; a change a SIGKILL loses was never told to anyone, and the
        OMS's retry (same client order id) or the replay's repeated tick does it again."""
        venue = self.broker
        if self.store is None or not isinstance(venue, PaperClient):
            return
        async with self._save_lock:  # taken here, so a later save holds a later state
            upto = venue.emitted
            history = venue.history  # report n is history[n - first - 1]
            first = upto - len(history)
            for number in range(max(self._published, first, max(self._outbox, default=0)) + 1,
                                upto + 1):
                self._outbox[number] = history[number - first - 1]
            for number in [n for n in self._outbox if n <= self._published]:
                del self._outbox[number]
            service = json.dumps({
                "fed_bars": {ts.isoformat(): sorted(symbols)
                             for ts, symbols in self._fed_bars.items()},
                "applied": dict(self._applied),
                "outbox": [[n, r.model_dump(mode="json")]
                           for n, r in sorted(self._outbox.items())]},
                separators=(",", ":")).encode()
            core = b'{"venue":' + venue.snapshot_json() + b',"service":' + service + b"}"
            ended = self._unsaved_ended + venue.pop_ended()
            self._unsaved_ended = ended
            await self.store.save(core, ended)
            self._unsaved_ended = []
            self._stored_upto = max(self._stored_upto, upto)
            self._stored.set()

    async def _take_back_ended(self, request: WireModel) -> None:
        """A command about an order the restarted venue does not hold: take the order back
        from the store if it ended before the restart (a repeated submit is then a repeat,
        a cancel a cancel_reject, order_status its last report)."""
        venue = self.broker
        if self.store is None or not isinstance(venue, PaperClient):
            return
        if isinstance(request, SubmitOrder):
            order_id = request.order.order_id
        elif isinstance(request, CancelOrder | OrderStatusQuery):
            order_id = request.order_id
        elif isinstance(request, ReplaceOrder):
            order_id = request.replace.order_id
        else:
            return
        if order_id is None or venue.knows(order_id):
            return
        record = await self.store.ended(order_id)
        if record is not None and not venue.knows(order_id):
            venue.restore_ended(record)

    # --------------------------------------------------------------------------- commands
    async def _on_command(self, msg: Msg) -> None:
        subject = self.bus.logical_subject(msg.subject)
        command = subject.rsplit(".", 1)[-1]
        reply = await self.handle(command, msg.data, subject=subject,
                                  headers=dict(msg.headers or {}))
        try:
            await self._persist()
        except Exception:
            # not answered: the client's outcome is unknown and it asks again (or asks
            # order_status); what the command did is not published either
            _log.exception("venue state not stored: command left unanswered",
                           broker=self.name, command=command)
            return
        if msg.reply:
            await msg.respond(reply.to_json())

    async def handle(self, command: str, data: bytes, *, subject: str | None = None,
                     headers: dict[str, str] | None = None) -> CommandReply:
        """Decode and execute one command; always returns a reply, never raises."""
        model = _COMMANDS.get(command)
        if model is None:
            return CommandReply(ok=False, code=ReplyCode.UNKNOWN_COMMAND,
                                message=f"unknown command {command!r}; expected one of "
                                        f"{sorted(_COMMANDS)}", ts=_now())
        try:
            request = parse_message(model, data)
        except ValidationFailed as exc:
            errors = exc.context.get("errors", [])
            first = errors[0]["field"] if errors else "<root>"
            _log.warning("malformed broker command", broker=self.name, command=command,
                         field=first, error=exc.message)
            await self._dead_letter(subject or command_subject(self.name, command), data,
                                    headers or {}, exc)
            return _error_reply(ValidationFailed(exc.message, field=first,
                                                 errors=len(errors)))
        try:
            await self._take_back_ended(request)
            return await self._execute(request)
        except MtsError as exc:  # BrokerError included: its code and context go back as they are
            return _error_reply(exc)
        except Exception as exc:  # the service keeps running whatever a broker raises
            _log.exception("broker command failed", broker=self.name, command=command)
            # The exception's text is for the service's log, never for the client (issue #15).
            return CommandReply(ok=False, code=ReplyCode.INTERNAL_ERROR,
                                message=f"the broker service failed ({type(exc).__name__}); "
                                        "its log has the details", ts=_now())

    async def _execute(self, request: WireModel) -> CommandReply:
        b = self.broker
        if isinstance(request, SubmitOrder):
            known = isinstance(b, PaperClient) and request.order.order_id is not None and (
                b.knows(request.order.order_id))  # also an order restored from the store
            report = await b.submit(request.order)
            duplicate = known or report.order_id in self._accepted
            self._accepted.add(report.order_id)
            return self._report_reply(report, duplicate=duplicate)
        if isinstance(request, CancelOrder):
            return self._report_reply(await b.cancel(request.order_id))
        if isinstance(request, ReplaceOrder):
            r = request.replace
            return self._report_reply(await b.replace(
                r.order_id, quantity=r.quantity, limit_price=r.limit_price,
                stop_price=r.stop_price))
        if isinstance(request, OrderStatusQuery):
            found = await b.order_status(request.order_id)
            if found is None:  # the broker proves it never received the order
                return CommandReply(ok=False, code=ReplyCode.ORDER_NOT_FOUND,
                                    order_id=request.order_id,
                                    message=f"{self.name} has no order {request.order_id}",
                                    ts=_now())
            return self._report_reply(found)
        if not isinstance(request, BrokerQuery):  # pragma: no cover - _COMMANDS is closed
            raise TypeError(f"unexpected command {type(request).__name__}")
        payload: str
        if request.kind == "connection":
            payload = json.dumps({"state": b.connection_state.value})
        elif request.kind == "open_orders":
            orders = await b.open_orders(request.account_id)
            payload = json.dumps([o.model_dump(mode="json") for o in orders])
        else:
            if request.account_id is None:
                raise BrokerRejected(f"a {request.kind!r} query needs account_id",
                                     field="account_id", reason_code="INVALID_ORDER")
            if request.kind == "positions":
                positions = await b.positions(request.account_id)
                payload = json.dumps([p.model_dump(mode="json") for p in positions])
            else:
                payload = (await b.account(request.account_id)).model_dump_json()
        return CommandReply(ok=True, payload=payload, ts=_now())

    @staticmethod
    def _report_reply(report: ExecutionReport, *, duplicate: bool = False) -> CommandReply:
        return CommandReply(ok=True, order_id=report.order_id, status=status_of(report),
                            duplicate=duplicate, payload=report.model_dump_json(), ts=_now())

    async def _dead_letter(self, subject: str, data: bytes, headers: dict[str, str],
                           exc: ValidationFailed) -> None:
        try:
            await self.bus.dead_letter(subject, data, headers, reason=f"invalid command: {exc}",
                                       errors=exc.context.get("errors", []))
        except Exception:  # dead-lettering is best effort; the reply already explains
            _log.exception("could not dead-letter a malformed command", subject=subject)

    # ------------------------------------------------------------------------ publishing
    async def _publish_reports(self, stream: AsyncIterator[ExecutionReport],
                               first: int = 0) -> None:
        """Publish each report the venue emits, in order; a durable service publishes report
        ``n`` (counted as ``PaperClient.emitted`` counts) only once a stored state covers it,
        so no report is ever published for a state a SIGKILL could lose."""
        subject = execution_subject(self.name)
        number = first
        async for report in stream:
            self._publishing = True  # set before any await: a tick must see it in hand
            number += 1
            while self.store is not None:
                self._stored.clear()  # before the check: a save in between sets it again
                if self._stored_upto >= number:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stored.wait(), 1.0)
            try:
                await self.bus.publish(subject, report, msg_id=report.trade_id)
                if report.exec_type in {ExecType.FILL, ExecType.PARTIAL_FILL}:
                    snapshot = await self.broker.account(report.account_id)
                    await self.bus.publish(account_subject(self.name), snapshot)
            except Exception:  # keep publishing the next ones; the failure is logged
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # stop()'s cancel arrived while publishing and a library on the way turned
                    # it into an error of its own: swallowing it here left the pump waiting
                    # for the next report for ever, and stop() waiting for the pump
                    raise asyncio.CancelledError from None
                self.publish_failures += 1
                _log.exception("could not publish an execution report", broker=self.name,
                               order_id=report.order_id, exec_type=report.exec_type.value)
            finally:
                self._published = max(self._published, number)
                self._publishing = False

    # ----------------------------------------------------------------------- market data
    async def _on_market_data(self, msg: Msg) -> None:
        if not isinstance(self.broker, PaperClient):  # pragma: no cover - only paper follows
            return
        subject = self.bus.logical_subject(msg.subject)
        try:
            if ".bars." in subject:
                bar = parse_message(Bar, msg.data)
                if self.replay_clock is None:
                    await self.broker.on_bar(bar)
                    await self._persist()
                else:
                    self._take_bar(bar)
            elif ".actions." in subject:
                self._take_action(parse_message(CorporateAction, msg.data))
            else:
                await self.broker.on_quote(parse_message(Quote, msg.data))
                await self._persist()
        except ValidationFailed as exc:
            _log.warning("ignored malformed market data", subject=subject, error=exc.message)
        except Exception:  # a state not stored: its reports wait for the next save
            _log.exception("venue state not stored after market data", broker=self.name,
                           subject=subject)

    def _take_bar(self, bar: Bar) -> None:
        """On a replay's clock: keep ``bar`` for its session's tick, once per symbol (it can
        come on core NATS and from the stream)."""
        if bar.symbol in self._fed_bars.get(bar.ts, ()):
            return  # that session's bar of the symbol traded the venue already
        self._bars.setdefault(bar.ts, {}).setdefault(bar.symbol, bar)
        self._arrived.set()

    def _take_action(self, action: CorporateAction) -> None:
        """On a replay's clock: keep ``action`` for its ex-date's tick, once per ``action_id``
        (an action of a session already finished is not taken)."""
        if action.action_id in self._applied or (
                self.replay_clock is not None and self.replay_clock.tick is not None
                and action.ex_date < self.replay_clock.tick.session):
            return
        self._actions.setdefault(action.ex_date, {}).setdefault(action.action_id, action)
        self._arrived.set()

    # ------------------------------------------------------------------------ replay clock
    async def on_tick(self, tick: ClockTick) -> None:
        """Finish ``tick``'s session: its corporate actions applied to the venue, then its bars
        traded (in symbol order), then every report that made published.

        Why the venue holds a session's bars until its tick: the actions take effect at the
        session's open, before any of its bars trades, and core NATS does not order the
        actions' subject against the bars' (and the tick can overtake both); holding them also
        makes the order bars trade in independent of arrival. Actions are waited for only
        while the venue holds a position or a working order: a venue that (re)started after
        they were sent holds nothing they could change. Raises :class:`SessionNotFinished`
        (the tick is refused, the replay stops) when the bars or actions are not all there
        within ``bar_wait`` seconds, or a report could not be published."""
        if not isinstance(self.broker, PaperClient):  # pragma: no cover - checked at __init__
            return
        venue = self.broker
        loop = asyncio.get_running_loop()
        started = loop.time()
        failures = self.publish_failures
        next_read = started + _STREAM_AFTER_SECONDS
        while True:
            bars = len(self._bars.get(tick.ts, {})) + len(self._fed_bars.get(tick.ts, ()))
            actions = len(self._actions.get(tick.session, {})) + sum(
                1 for a in self._applied.values() if a == tick.session)
            waited = loop.time() - started
            need_actions = actions < tick.actions and (
                venue.exposed() or waited < _STREAM_AFTER_SECONDS)
            if bars >= tick.bars and not need_actions:
                break
            if waited >= self._bar_wait:
                raise SessionNotFinished(
                    f"session {tick.session}: {bars} of its {tick.bars} bar(s) and {actions} "
                    f"of its {tick.actions} corporate action(s) reached the venue within "
                    f"{self._bar_wait:g}s", session=tick.session, bars=tick.bars,
                    actions=tick.actions)
            if (bars < tick.bars or need_actions) and loop.time() >= next_read:
                # (re)started after they were sent, or a core message lost
                if bars < tick.bars:
                    await self._bars_from_stream(tick.ts)
                if need_actions:
                    await self._actions_from_stream(tick.session)
                next_read = loop.time() + 1.0
                continue
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), 0.05)
        for action_id, action in sorted(self._actions.pop(tick.session, {}).items()):
            self._applied[action_id] = action.ex_date
            if action.kind == "split":
                venue.apply_split(action.symbol, action.value)
            elif action.kind == "delisting":
                venue.delist(action.symbol, action.value)
            else:
                venue.pay_dividend(action.symbol, action.value)
        fed = self._fed_bars.setdefault(tick.ts, set())
        for symbol, bar in sorted(self._bars.pop(tick.ts, {}).items()):
            fed.add(symbol)
            await venue.on_bar(bar)
        for ts in [t for t in (*self._bars, *self._fed_bars) if t < tick.ts]:  # done with
            self._bars.pop(ts, None)
            self._fed_bars.pop(ts, None)
        for day in [d for d in self._actions if d < tick.session]:
            self._actions.pop(day, None)
        for action_id in [a for a, day in self._applied.items() if day < tick.session]:
            del self._applied[action_id]  # an older session's action is not taken any more
        try:
            await self._persist()  # before its reports are published and the tick answered
        except Exception as exc:
            raise SessionNotFinished(f"session {tick.session}: the venue's state could not "
                                     f"be stored ({type(exc).__name__}: {exc})",
                                     session=tick.session) from None
        while self._reports_in_hand():
            if loop.time() - started >= self._bar_wait:
                raise SessionNotFinished(f"session {tick.session}: execution reports still "
                                         f"unpublished after {self._bar_wait:g}s",
                                         session=tick.session)
            await asyncio.sleep(0.005)
        try:  # the reports are out: the stored outbox need not hold them any more
            await self._persist()
        except Exception:  # kept: a restart publishes them again and JetStream drops them
            _log.warning("stored outbox not pruned", broker=self.name, session=tick.session)
        if self.publish_failures > failures:
            raise SessionNotFinished(
                f"session {tick.session}: {self.publish_failures - failures} execution "
                "report(s) could not be published (see the service's log)",
                session=tick.session)

    def _reports_in_hand(self) -> bool:
        """Whether a report the venue emitted is not yet published: queued for the pump
        (the venue's report stream is :class:`~collections.abc.Sized`) or being published."""
        queued = len(self._stream) if isinstance(self._stream, Sized) else 0
        return queued > 0 or self._publishing

    async def _bars_from_stream(self, ts: dt.datetime) -> int:
        """Take the bars of the session closing at ``ts`` that the datalake stream holds
        (each symbol's last stored bar) and core NATS did not bring; how many were new.
        Why the last per symbol: in lockstep the replay sends the next session only after
        this one is finished, so a symbol's last bar is this session's or an earlier one."""
        js = self.bus.js
        stream = self.bus.stream_for("datalake")
        try:
            info = await js.stream_info(stream,
                                        subjects_filter=self.bus.wire_subject(_BAR_SUBJECTS))
        except (nats.js.errors.Error, nats.errors.Error) as exc:  # no stream: nothing stored
            _log.warning("bars not readable from the datalake stream", stream=stream,
                         error=type(exc).__name__)
            return 0
        held = self._bars.setdefault(ts, {})
        before = len(held)
        for subject in sorted(info.state.subjects or {}):
            try:
                raw = await js.get_last_msg(stream, subject)
                bar = parse_message(Bar, raw.data or b"")
            except (nats.js.errors.Error, nats.errors.Error, ValidationFailed) as exc:
                _log.warning("stored bar not readable", subject=subject,
                             error=type(exc).__name__)
                continue
            if bar.ts == ts:
                self._take_bar(bar)
        new = len(held) - before
        if new:
            _log.info("bars of the session read from the datalake stream", bars=new,
                      session_close=ts.isoformat())
        return new

    async def _actions_from_stream(self, session: str) -> None:
        """Take the corporate actions of ``session`` the datalake stream holds. Why: a restored
        venue holds positions the actions change, but it may have (re)started after they went
        out on core NATS."""
        for action in await stored_actions(self.bus, session, timeout=self._bar_wait):
            self._take_action(action)
