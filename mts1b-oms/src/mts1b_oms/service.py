"""``mts mts1b-oms serve``: the OMS as a NATS service.

- Commands by request/reply on ``mts.v1.oms.commands.submit|cancel|replace``; each gets a
  :class:`~mts1b_foundation.CommandReply`. ``mts.v1.oms.commands.rebalance`` takes a
  :class:`~mts1b_foundation.TargetPortfolio` (a composed one carries a sleeve allocation) and
  answers with a ``RebalanceReport`` in the reply's ``payload`` (:mod:`mts1b_oms.composed`),
  one target at a time. A payload that does not decode is answered with an
  error and dead-lettered to ``mts.v1.dlq.oms`` with the reason (the platform Bus does this); the
  service keeps running.
- Trading-state commands are signed, one subject each: ``mts.v1.oms.commands.halt|reduce|
  resume`` (:func:`serve_state_commands`). Each is verified against the key registry
  (``ServeOptions.keys``, :mod:`mts1b_oms.signing`) and applied with the key's name as the
  actor; the unsigned ``mts.v1.oms.commands.state`` is answered ``UNAUTHORIZED``. They are
  served in the queue group ``mts1b-oms``, one at a time: one instance takes each, writes the
  change and its sweep, and the others follow the fan-out.
- Events leave through the PostgreSQL outbox and the :class:`~mts1b_oms.outbox.OutboxRelay`.
- The kill switch fans out through the KV bucket ``mts_oms_trading_state``: every instance
  watches it, applies changes at once and sweeps its part of a halted scope
  (:mod:`mts1b_oms.killswitch`); the sweeps themselves are durable in PostgreSQL.
- A heartbeat every ``heartbeat_interval`` seconds (10 by default) on
  ``mts.v1.operations.heartbeats.mts1b-oms`` while it serves.
- Reference prices come from ``mts.v1.datalake.bars.*`` / ``quotes.*`` (core NATS) and from an
  optional prices file.
- What each symbol is (tick and lot size, minimum and maximum quantity) comes from the
  instrument registry (:mod:`mts1b_oms.instruments`), required: an order for a symbol it
  lacks is denied. At start the service logs, at INFO, each fund's effective limits (the
  ``RiskEnvelope`` as the gates apply it: numbers, ``unlimited``, the notional default worked
  out from the fund's target NAV) and how many instruments it knows.
- The broker: ``--broker paper`` (the default) is the paper broker *service*
  (:func:`connect_broker`): the OMS talks to ``mts mts1b-brokers serve paper`` over NATS
  (``RemoteBroker("paper")``) and, when none answers within ``broker_wait`` seconds, starts one
  itself as a child process that follows the bar stream ``mts.v1.datalake.bars.*``, so orders
  fill as bars arrive (``mts mts1b-datalake replay``). Any other name or ``module:attr`` is
  loaded and used in this process, as before.
- ``--replay-clock`` (:attr:`ServeOptions.replay_clock`): on a lockstep replay (``mts
  mts1b-datalake replay --lockstep broker-paper,oms,...``) the OMS runs on the replay's clock
  (:class:`~mts1b_platform.replayclock.ReplayClock`, from the replay's current tick at start),
  so its duplicate, rate and idempotency windows run on replay time, and it is the participant
  ``oms``: it answers a session's tick once it has applied every execution report the broker
  had published when the tick came (the venue, before it, answered only after publishing the
  session's fills) and its outbox has put the resulting events (order events, fills,
  positions) on the bus, so the treasury after it books them (:func:`finish_session`). A
  paper broker service it starts runs on the replay's clock too. Signed trading-state commands
  keep the wall clock: people sign them now, not in the replay's past.
- Corporate actions come from ``mts.v1.datalake.actions.*`` (core NATS) and are applied to the
  positions as they arrive (:class:`ActionDesk`, :meth:`~mts1b_oms.oms.Oms.apply_action`); on a
  replay's clock a tick first makes sure its session's ``ClockTick.actions`` are applied (the
  missing ones read back from the datalake stream, else the tick is refused), then finishes
  the session.
- SIGTERM / SIGINT drain: stop taking commands, finish the ones in hand, give the kill
  switch's sweeps up to ``sweep_drain_seconds`` to finish (what is left stays outstanding in
  PostgreSQL for the next instance), flush the outbox, close.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from mts1b_foundation import (
    TREASURY_FUNDS_BUCKET,
    Bar,
    BrokerError,
    BrokerProtocol,
    CancelOrder,
    ClockTick,
    CommandReply,
    CorporateAction,
    FundConfig,
    MtsError,
    Quote,
    ReplaceOrder,
    SetTradingState,
    SignedStateCommand,
    SubmitOrder,
    SystemClock,
    TargetPortfolio,
    TradingState,
    TradingStateChange,
    parse_message,
)
from mts1b_foundation.plugins import BROKERS, entry_points_of, load_entry_point
from mts1b_platform.bus import Bus, BusError
from mts1b_platform.heartbeat import DEFAULT_HEARTBEAT_INTERVAL, Heartbeater
from mts1b_platform.logging import get_logger
from mts1b_platform.replayclock import (
    ACTIONS_SUBJECT,
    ReplayClock,
    serve_ticks,
    start_clock,
    stored_actions,
)
from mts1b_platform.shutdown import stop_on_signals
from nats.aio.subscription import Subscription

from mts1b_oms.gcpolicy import ScheduledFullCollections
from mts1b_oms.instruments import InstrumentRegistry
from mts1b_oms.killswitch import KillSwitch
from mts1b_oms.oms import Oms
from mts1b_oms.outbox import OutboxRelay
from mts1b_oms.signing import DEFAULT_COMMAND_WINDOW, CommandVerifier, KeyRegistry
from mts1b_oms.store import Store
from mts1b_oms.tasks import cancel_and_wait
from mts1b_oms.tradingstate import parse_change, scope_key
from mts1b_oms.treasuryfunds import follow_treasury_funds, load_treasury_funds

__all__ = ["ACTIONS_SUBJECT", "HEARTBEAT_SERVICE", "KV_BUCKET", "PAPER", "PAPER_ARGS",
           "REPLAY_PARTICIPANT",
           "STATE_COMMAND_SUBJECTS", "STATE_QUEUE", "ActionDesk", "BrokerLink", "KvFanout",
           "ReportCursor", "ServeOptions",
           "connect_broker", "finish_session", "load_broker", "load_funds", "paper_command",
           "run_service", "serve_state_commands"]

REPLAY_PARTICIPANT = "oms"
"""Where the corporate actions come from (core NATS; stored in the ``datalake`` stream)."""
"""The participant name the OMS takes a lockstep replay's ticks as (``--lockstep ...,oms,...``)."""

KV_BUCKET = "mts_oms_trading_state"
HEARTBEAT_SERVICE = "mts1b-oms"
"""The name the OMS beats as: ``mts.v1.operations.heartbeats.mts1b-oms``
(:class:`~mts1b_platform.heartbeat.Heartbeater`, every ``ServeOptions.heartbeat_interval``)."""
STATE_QUEUE = "mts1b-oms"
"""The queue group state commands are served in: one instance takes each."""
STATE_COMMAND_SUBJECTS = ("mts.v1.oms.commands.halt", "mts.v1.oms.commands.reduce",
                          "mts.v1.oms.commands.resume", "mts.v1.oms.commands.state")
"""The trading-state command subjects: the three signed ones and the refused unsigned one."""
_log = get_logger("mts1b_oms.service")


class ServiceError(MtsError):
    code = "OMS.SERVICE"


PAPER = "paper"
"""``--broker paper``: the paper broker service, found or started (:func:`connect_broker`)."""
PAPER_ARGS: dict[str, str] = {
    "account": "--account", "cash": "--default-cash", "default_cash": "--default-cash",
    "participation_rate": "--participation-rate", "commission_bps": "--commission-bps",
    "slippage_bps": "--slippage-bps", "seed": "--seed", "calendar": "--calendar",
}
"""``--broker-arg`` keys for ``--broker paper`` that configure a paper venue the OMS starts,
and the ``mts mts1b-brokers serve paper`` option each becomes. ``timeout`` (seconds per request
to the service) is also taken."""
PAPER_START_SECONDS = 60.0
"""How long a paper broker service the OMS started has to answer (a cold Python start)."""


@dataclass
class BrokerLink:
    """The broker the service trades through, and how it got it: ``started_pid`` is the paper
    broker service this OMS started (``None``: it found one running, or the broker is in this
    process)."""

    broker: BrokerProtocol
    started_pid: int | None = None
    found_running: bool = False


def paper_command(args: Mapping[str, Any], funds: list[FundConfig], *,
                  namespace: str | None, nats_url: str | None,
                  replay_clock: bool = False) -> list[str]:
    """The command line of the paper broker service the OMS starts: ``python -m
    mts1b_brokers.cli serve paper`` with the venue's ``--broker-arg`` options
    (:data:`PAPER_ARGS`; ``account`` takes ``ID=CASH`` pairs separated by commas), in the OMS's
    NATS namespace, with ``--replay-clock`` when the OMS runs on a replay's clock (the venue
    must finish each session before the OMS). Without ``account`` or ``cash``, each served
    fund's account opens with the fund's target NAV, so a new user's first orders are not
    ``ACCOUNT_NOT_FOUND``.

    Bad input is a ``ServiceError`` naming the ``--broker-arg`` and its value: an unknown key,
    cash or a rate that is not a number, a seed that is not an integer."""
    cmd = [sys.executable, "-m", "mts1b_brokers.cli", "serve", PAPER]
    for key, value in args.items():
        if key == "timeout":
            continue
        flag = PAPER_ARGS.get(key)
        if flag is None:
            raise ServiceError(f"--broker-arg {key}={value!r}: not an option of the paper "
                               f"broker; known: {', '.join(sorted([*PAPER_ARGS, 'timeout']))}",
                               field=f"broker_arg.{key}", value=str(value))
        text = str(value)
        if key == "account":
            for pair in (p.strip() for p in text.split(",") if p.strip()):
                account_id, sep, cash = pair.partition("=")
                if not sep or not account_id:
                    raise ServiceError(f"--broker-arg account={text!r}: expected ID=CASH "
                                       "(several separated by commas)",
                                       field="broker_arg.account", value=text)
                _paper_decimal("account", cash, positive=True, shown=pair)
                cmd += [flag, pair]
            continue
        if key in {"cash", "default_cash", "participation_rate"}:
            _paper_decimal(key, text, positive=True)
        elif key in {"commission_bps", "slippage_bps"}:
            _paper_decimal(key, text, positive=False)
        elif key == "seed" and not text.lstrip("-").isdigit():
            raise ServiceError(f"--broker-arg seed={text!r}: not an integer",
                               field="broker_arg.seed", value=text)
        cmd += [flag, text]
    if not {"account", "cash", "default_cash"} & set(args):
        for fund in funds:
            cmd += ["--account", f"{fund.broker_account_id}={fund.target_nav_usd}"]
    if namespace:
        cmd += ["--namespace", namespace]
    if nats_url:
        cmd += ["--nats-url", nats_url]
    if replay_clock:
        cmd.append("--replay-clock")
    return cmd


def _paper_decimal(key: str, text: str, *, positive: bool, shown: str | None = None) -> None:
    try:
        number = Decimal(text)
    except ArithmeticError:
        number = Decimal("NaN")
    if not number.is_finite() or number < 0 or (positive and number == 0):
        need = "a positive number" if positive else "a number >= 0"
        raise ServiceError(f"--broker-arg {key}={shown or text!r}: {text!r} is not {need}",
                           field=f"broker_arg.{key}", value=shown or text)


async def _answers(broker: BrokerProtocol, seconds: float) -> bool:
    """Whether a broker service answers a read (``open_orders``) within ``seconds``: "no
    responders" comes back at once, so it is asked again until the time is up."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while True:
        try:
            await asyncio.wait_for(broker.open_orders(None), max(0.1, end - loop.time()))
            return True
        except (BrokerError, TimeoutError):
            pass
        if loop.time() >= end:
            return False
        await asyncio.sleep(0.2)


PAPER_UNAVAILABLE_GRACE = 20.0
"""Seconds a command to the paper broker service is sent again while none listens, before the
order is rejected (``RemoteBroker(unavailable_grace=...)``): the paper loop's supervisor
restarts a killed venue within seconds, and an order refused meanwhile made the loop trade that
session differently from an undisturbed one. Below the composer's 30 s wait for the OMS's
answer to a rebalance."""


async def connect_broker(opts: ServeOptions, store: Store | None = None) -> BrokerLink:
    """The broker the service trades through, connected.

    ``--broker paper``: the paper broker *service* over NATS (``RemoteBroker("paper")``, in the
    OMS's namespace). When none answers within ``opts.broker_wait`` seconds the OMS starts one
    as a child process (:func:`paper_command`) and waits for it to answer. Why a child process
    and not a venue in this process: the paper venue keeps its working orders in memory, so a
    venue inside the OMS would die with it - a SIGKILL of the OMS would lose every working
    order while PostgreSQL still lists them as working. The child runs in its own session: it
    survives a SIGKILL (and a Ctrl-C) of the OMS with its orders, keeps trading them on the bar
    stream, and the OMS's next start finds it and uses it. It is therefore left running when
    the OMS stops; stop it yourself (its pid is printed). Only one instance starts it: the
    check and the start hold a PostgreSQL advisory lock of the namespace, so two OMS instances
    starting at once cannot start two venues (they would split the orders between them).

    Any other ``opts.broker`` is loaded with its ``broker_args`` (:func:`load_broker`) and used
    in this process, as before (``mts1b_brokers:PaperClient`` is a paper venue in-process)."""
    if opts.broker != PAPER:
        broker = load_broker(opts.broker, **opts.broker_args)
        await broker.connect()
        return BrokerLink(broker)
    remote: dict[str, Any] = {"name": PAPER, "unavailable_grace": PAPER_UNAVAILABLE_GRACE}
    if opts.namespace:
        remote["namespace"] = opts.namespace
    if opts.nats_url:
        remote["url"] = opts.nats_url
    if "timeout" in opts.broker_args:
        remote["timeout"] = _paper_timeout(opts.broker_args["timeout"])
    command = paper_command(opts.broker_args, opts.funds, namespace=opts.namespace,
                            nats_url=opts.nats_url, replay_clock=opts.replay_clock)
    # (bad arguments fail before anything runs)
    try:
        broker = load_broker("mts1b_brokers:RemoteBroker", **remote)
    except ImportError:
        raise ServiceError("--broker paper needs mts1b-brokers installed (pip install "
                           "mts1b-brokers): the paper broker runs as its service",
                           broker=PAPER) from None
    await broker.connect()
    try:
        async with _paper_lock(store, opts.namespace):
            if await _answers(broker, opts.broker_wait):
                if set(opts.broker_args) - {"timeout"}:
                    _log.warning("a paper broker service is running already: the venue's "
                                 "--broker-arg options are not applied to it",
                                 options=",".join(sorted(opts.broker_args)))
                _log.info("paper broker service found", namespace=opts.namespace or "")
                return BrokerLink(broker, found_running=True)
            pid = await _start_paper(broker, command)
    except BaseException:
        await broker.close()
        raise
    return BrokerLink(broker, started_pid=pid)


def _paper_timeout(value: object) -> float:
    try:
        seconds = float(str(value))
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < 3600:
        raise ServiceError(f"--broker-arg timeout: {value!r} is not a number of seconds "
                           "between 0 and 3600", field="broker_arg.timeout", value=str(value))
    return seconds


async def _start_paper(broker: BrokerProtocol, command: list[str]) -> int:
    """Start the paper broker service (stdout to /dev/null - a pipe to a dead OMS would break
    it; stderr, its log, shared with the OMS) and wait until it answers."""
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL,  # noqa: S603 - our own CLI
                             stdout=subprocess.DEVNULL, start_new_session=True)
    _log.warning("no paper broker service answered: started one; it keeps running when the "
                 "OMS stops (it holds the paper orders)", pid=child.pid)
    loop = asyncio.get_running_loop()
    end = loop.time() + PAPER_START_SECONDS
    while loop.time() < end:
        if await _answers(broker, 1.0):
            return child.pid
        if child.poll() is not None:
            raise ServiceError(f"the paper broker service the OMS started exited with code "
                               f"{child.returncode} (its log is above): {' '.join(command)}",
                               broker=PAPER, exit_code=child.returncode)
    child.terminate()
    raise ServiceError(f"the paper broker service the OMS started did not answer within "
                       f"{PAPER_START_SECONDS:g}s; stopped it", broker=PAPER)


@contextlib.asynccontextmanager
async def _paper_lock(store: Store | None, namespace: str | None) -> AsyncIterator[None]:
    """A PostgreSQL advisory lock per NATS namespace around finding or starting the paper
    broker service (see :func:`connect_broker`); none without a store."""
    if store is None:
        yield
        return
    key = f"mts1b-oms:paper-broker:{namespace or ''}"
    async with store.pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock(hashtext($1))", key)
        try:
            yield
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", key)


def load_broker(spec: str, **kwargs: Any) -> BrokerProtocol:
    """A broker by entry-point name (group ``mts1b.brokers``, e.g. ``paper``) or by
    ``module:attribute``; called with ``kwargs``. The OMS never imports a broker library."""
    if ":" in spec:
        module, _, attr = spec.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    else:
        found = entry_points_of(BROKERS)
        if spec not in found:
            raise ServiceError(f"no broker {spec!r} in entry-point group mts1b.brokers; "
                               f"installed: {sorted(found)}", broker=spec)
        factory = load_entry_point(found[spec])  # PluginLoadError: name, group, error type
    broker = factory(**kwargs)
    if not isinstance(broker, BrokerProtocol):
        raise ServiceError(f"{spec} does not satisfy BrokerProtocol", broker=spec)
    return broker


def load_funds(path: str | os.PathLike[str]) -> list[FundConfig]:
    """Fund configs from a JSON file holding a list of FundConfig objects."""
    data = json.loads(Path(path).read_text())
    if isinstance(data, dict):
        data = [data]
    return [parse_message(FundConfig, item) for item in data]


class KvFanout:
    """Kill-switch fan-out through a NATS KV bucket (one key per scope)."""

    def __init__(self, kv: Any) -> None:
        self.kv = kv

    async def put(self, change: TradingStateChange) -> None:
        await self.kv.put(scope_key(change.scope, change.scope_id), change.to_json())


@dataclass
class ServeOptions:
    dsn: str
    funds: list[FundConfig]
    """The funds to serve; empty with ``funds_from_treasury``: loaded from the treasury."""
    instruments: InstrumentRegistry
    """The symbols the OMS trades and their terms (``InstrumentRegistry.load(path)``)."""
    broker: str = "paper"
    broker_args: dict[str, Any] = field(default_factory=dict)
    schema: str = "mts_oms"
    namespace: str | None = None
    nats_url: str | None = None
    prices: Mapping[str, Decimal] = field(default_factory=dict)
    concurrency: int = 64
    """Commands (submit, cancel, replace) handled at once. Each spends most of its time
    waiting on PostgreSQL and the broker, so taking the next one meanwhile is what lets
    commits of several orders share a WAL flush. Kill-switch commands are taken one at a time.
    """
    full_gc_interval: float = 60.0
    """Seconds between the full garbage collections the service runs itself (see
    :mod:`mts1b_oms.gcpolicy`); the collector runs none on its own while serving."""
    cancel_rate: float | None = None
    """Cancels per second a kill-switch sweep sends to the broker (the broker's setting:
    ``None`` takes the broker's own ``cancel_rate``, else 10)."""
    sweep_drain_seconds: float = 30.0
    """At SIGTERM, how long the kill switch's sweeps may still run before the service
    stops; what they have not settled is resumed by the next instance."""
    keys: KeyRegistry | None = None
    """The public keys that may sign trading-state commands (``KeyRegistry.load(path)``).
    ``None``: every state command from the bus is refused (``mts mts1b-oms serve`` requires
    ``--keys``)."""
    command_window: dt.timedelta = DEFAULT_COMMAND_WINDOW
    """How far a signed command's timestamp may lie from this instance's clock."""
    funds_from_treasury: bool = False
    """Serve the open funds of the treasury's KV bucket (:mod:`mts1b_oms.treasuryfunds`)
    instead of ``funds``, and follow their changes while serving."""
    broker_wait: float = 3.0
    """``--broker paper``: seconds a running paper broker service has to answer before the
    OMS starts one (:func:`connect_broker`)."""
    replay_clock: bool = False
    """Run on a lockstep replay's clock and answer its ticks as ``oms`` (see the module's
    docs and :func:`finish_session`); a paper broker service the OMS starts gets
    ``--replay-clock`` too. A paper service found running must have been started with it."""
    session_timeout: float = 25.0
    """``replay_clock``: seconds a tick may take (the broker's reports delivered, applied and
    their events published) before it is refused; below the replay's 30 s per attempt."""
    actions_wait: float = 2.0
    """``replay_clock``: seconds a tick waits for its session's corporate actions on the bus
    before reading the missing ones back from the datalake stream."""
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    """Seconds between two heartbeats on ``mts.v1.operations.heartbeats.mts1b-oms`` (the
    alert router raises ``HeartbeatMissing`` when they stop)."""
    heartbeat_instance: str = "default"
    """Which copy of the OMS the heartbeats come from."""


class ActionDesk:
    """The corporate actions the service takes (:data:`ACTIONS_SUBJECT`) and applies to the
    OMS's positions (:meth:`Oms.apply_action`).

    Each action is applied when it arrives - a live feed, and the lockstep replay, publish a
    session's actions before its bars, so normally before any fill of the ex-date. On a
    replay's clock the tick makes sure (:meth:`finish`): it waits for the session's
    ``ClockTick.actions`` actions, reads the missing ones back from the datalake stream (an
    OMS restarted after they were sent, or a core message lost) and applies them before the
    session is finished. A split applied after a fill of its ex-date still lands before it
    (:meth:`Oms.apply_split` rebuilds from the fills), so the order in which the venue's fills
    and the actions reach the OMS does not change the result. Applying is once per action id
    in the store; this desk only saves the repeats' work."""

    def __init__(self, bus: Bus, oms: Oms) -> None:
        self.bus = bus
        self.oms = oms
        self.seen: dict[str, dict[str, CorporateAction]] = {}  # ex-date -> id -> action
        self.applied: set[str] = set()
        self._arrived = asyncio.Event()

    async def on_message(self, msg: Any) -> None:
        """A corporate action from the bus (a malformed one is logged and ignored; one that
        fails to apply is an alert, and the tick of its session tries again)."""
        try:
            action = parse_message(CorporateAction, msg.data)
        except Exception as exc:
            _log.warning("corporate action ignored", error=type(exc).__name__)
            return
        await self.take(action)

    async def take(self, action: CorporateAction) -> None:
        """Keep ``action`` for its session's tick and apply it now."""
        self.seen.setdefault(action.ex_date, {}).setdefault(action.action_id, action)
        self._arrived.set()
        try:
            await self._apply(action)
        except Exception as exc:  # the tick of its ex-date applies it again, or refuses
            await self.oms.alert(f"corporate action {action.action_id} ({action.kind} "
                                 f"{action.symbol} {action.ex_date}) not applied: "
                                 f"{type(exc).__name__}", action_id=action.action_id)

    async def _apply(self, action: CorporateAction) -> None:
        if action.action_id not in self.applied:
            await self.oms.apply_action(action)
            self.applied.add(action.action_id)

    async def finish(self, session: str, expected: int, *, wait: float,
                     timeout: float = 25.0) -> int:
        """Make sure the ``expected`` corporate actions of ``session`` (ex-date) are applied:
        wait up to ``wait`` seconds for them on the bus, read the missing ones back from the
        datalake stream, apply every one not applied yet. Returns how many the session has.
        Raises :class:`ServiceError` naming the session and the counts when they are not all
        found (the tick is refused: positions without a split would trade the wrong
        quantities and disagree with the venue's)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while len(self.seen.get(session, {})) < expected and loop.time() < deadline:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), max(0.0, deadline - loop.time()))
        if len(self.seen.get(session, {})) < expected:
            await self._from_stream(session, timeout)
        found = self.seen.get(session, {})
        if len(found) < expected:
            raise ServiceError(f"session {session}: {len(found)} of its {expected} corporate "
                               "action(s) reached the OMS or the datalake stream",
                               session=session, actions=expected)
        for _action_id, action in sorted(found.items()):
            await self._apply(action)
        for day in [d for d in self.seen if d < session]:  # done with: a few per session
            for action_id in self.seen.pop(day):
                self.applied.discard(action_id)
        return len(found)

    async def _from_stream(self, session: str, timeout: float) -> None:
        """Take the actions of ``session`` the datalake stream holds (missed on core NATS)."""
        for action in await stored_actions(self.bus, session, timeout=timeout):
            self.seen.setdefault(session, {}).setdefault(action.action_id, action)


@runtime_checkable
class ReportCursor(Protocol):
    """A broker that can tell when every report it published so far has been delivered to its
    report streams (``mts1b_brokers.RemoteBroker.caught_up``); duck typed, as the OMS never
    imports a broker library."""

    async def caught_up(self, timeout: float = ...) -> int: ...


async def finish_session(oms: Oms, store: Store, relay: OutboxRelay, *,
                         timeout: float = 25.0) -> None:
    """What the OMS does with a replay's tick (:data:`REPLAY_PARTICIPANT`): return once every
    execution report its broker had published when the tick came is applied, and every
    outbox row is published (so the order events, fills and positions are on the bus for the
    treasury after it). Why in that order: the venue answered the tick before it only after
    publishing the session's reports; the broker's stream is the only place that says how
    many there are. A broker that cannot tell (not a :class:`ReportCursor`: one in this
    process hands its reports over at once) is only drained. Raises :class:`ServiceError`
    naming what is still missing after ``timeout`` seconds (the tick is refused and the
    replay stops)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    if isinstance(oms.broker, ReportCursor):
        try:
            await oms.broker.caught_up(timeout)
        except BrokerError as exc:
            raise ServiceError(f"the broker's reports of the session did not arrive: "
                               f"{exc.message}", broker=oms.broker.name) from None
    while oms.reports_in_hand():
        if loop.time() >= end:
            raise ServiceError(f"the broker's reports of the session were not all applied "
                               f"within {timeout:g}s")
        await asyncio.sleep(0.005)
    while left := await store.unpublished_count():
        if loop.time() >= end:
            raise ServiceError(f"{left} outbox event(s) not published within {timeout:g}s",
                               outbox=left)
        relay.notify()
        await asyncio.sleep(0.01)


async def _seed_prices(bus: Bus, oms: Oms, live: set[str]) -> None:
    """Each symbol's last stored bar close as its reference price, unless a live price came
    first: a restarted OMS knows the prices the datalake published before it started (without
    them every order of its first rebalance would be refused for want of a reference price)."""
    from mts1b_platform.follow import follow

    seeded = 0

    async def on_bar(_subject: str, data: bytes) -> None:
        nonlocal seeded
        bar = parse_message(Bar, data)
        if bar.symbol not in live:
            oms.set_price(bar.symbol, bar.close, at=bar.ts)
            seeded += 1

    try:
        follower = await follow(bus, "datalake", "mts.v1.datalake.bars.*", on_bar,
                                last_per_subject=True)
    except BusError as exc:  # no datalake stream here: nothing was published to seed from
        _log.debug("no stored bars to seed prices from", error=type(exc).__name__)
        return
    try:
        await follower.caught_up(30)
    finally:
        await follower.stop()
    _log.info("reference prices from stored bars", symbols=seeded)


def _log_limits(opts: ServeOptions) -> None:
    """Log (INFO) each fund's effective limits and the registry's size: what an operator
    checks first when an order is refused."""
    for fund in opts.funds:
        _log.info("fund limits", fund_id=fund.fund_id, target_nav_usd=str(fund.target_nav_usd),
                  **fund.effective_limits())
    _log.info("instrument registry", instruments=len(opts.instruments))


async def _watch_states(oms: Oms, kv: Any) -> None:
    async for _key, value in kv.watch():
        if value is None:
            continue
        try:
            change = parse_change(value)
        except Exception as exc:
            _log.error("bad kill-switch value in KV", error=repr(exc))
            continue
        current = oms.states.get(change.scope, change.scope_id)
        try:
            await oms.enforce_state(change)
        except Exception as exc:  # the poll takes it in from PostgreSQL instead
            _log.error("kill-switch change seen on KV not applied", error=repr(exc))
            continue
        if change.state is not TradingState.ACTIVE and current is not change.state:
            _log.warning("trading state seen on KV", state=change.state.value,
                         scope=change.scope, scope_id=change.scope_id)


async def serve_state_commands(bus: Bus, killswitch: KillSwitch) -> list[Subscription]:
    """Answer the trading-state command subjects (:data:`STATE_COMMAND_SUBJECTS`) with
    ``killswitch.handle_command``: signed commands are verified and applied, the unsigned one
    refused. In the queue group :data:`STATE_QUEUE` and one command at a time across the four
    subjects, as the kill switch's changes are made one at a time."""
    one_at_a_time = asyncio.Lock()

    async def handle(command: SignedStateCommand | SetTradingState) -> CommandReply:
        async with one_at_a_time:
            return await killswitch.handle_command(command)

    return [await bus.serve(subject, handle, queue=STATE_QUEUE, record_as=REPLAY_PARTICIPANT)
            for subject in STATE_COMMAND_SUBJECTS]


async def run_service(opts: ServeOptions, *, ready: asyncio.Event | None = None,
                      stop: asyncio.Event | None = None,
                      started: list[int] | None = None) -> None:
    """Run until SIGTERM/SIGINT (or ``stop``), then drain. ``started``: the pid of a paper
    broker service this OMS started is appended to it (it outlives the OMS: see
    :func:`connect_broker`)."""
    if opts.broker == PAPER:  # bad --broker-arg options stop us before anything is created
        paper_command(opts.broker_args, opts.funds, namespace=None, nats_url=None)
        if "timeout" in opts.broker_args:
            _paper_timeout(opts.broker_args["timeout"])
    overrides: dict[str, Any] = {"name": "mts1b-oms"}
    if opts.namespace:
        overrides["namespace"] = opts.namespace
    if opts.nats_url:
        overrides["url"] = opts.nats_url
    bus = await Bus.connect(**overrides)
    await bus.declare_streams(["oms", "operations"])
    if opts.funds_from_treasury:
        opts.funds = await load_treasury_funds(bus)
    store = await Store.open(opts.dsn, schema=opts.schema)
    link = await connect_broker(opts, store)
    broker = link.broker
    if link.started_pid is not None and started is not None:
        started.append(link.started_pid)
    relay = OutboxRelay(store, bus)
    kv = await bus.kv(KV_BUCKET)
    _log_limits(opts)
    clock, verify = SystemClock(), None
    replay: ReplayClock | None = None
    if opts.replay_clock:  # a restarted OMS takes up the replay's time where it is
        replay = await start_clock(bus)
    if opts.keys is None:
        _log.warning("no key registry: every trading-state command from the bus is refused")
    else:  # people sign commands on the wall clock, also during a replay
        verify = CommandVerifier(opts.keys, store, clock=clock,
                                 window=opts.command_window).verify
        _log.info("key registry", keys=len(opts.keys),
                  window_seconds=opts.command_window.total_seconds())
    oms = Oms(store, broker, opts.funds, instruments=opts.instruments, relay=relay,
              fanout=KvFanout(kv), clock=replay or clock, verify=verify,
              cancel_rate=opts.cancel_rate)
    for sym, px in opts.prices.items():
        oms.set_price(sym, px)
    await oms.start()
    relay.start()
    watcher = asyncio.get_running_loop().create_task(_watch_states(oms, kv))
    fund_watcher = (asyncio.get_running_loop().create_task(follow_treasury_funds(
        oms, await bus.kv(TREASURY_FUNDS_BUCKET, history=5))) if opts.funds_from_treasury
        else None)

    async def on_submit(cmd: SubmitOrder) -> CommandReply:
        return await oms.submit(cmd.order)

    async def on_cancel(cmd: CancelOrder) -> CommandReply:
        return await oms.cancel(cmd.order_id, cmd.reason)

    async def on_replace(cmd: ReplaceOrder) -> CommandReply:
        return await oms.replace(cmd.replace)

    async def on_rebalance(target: TargetPortfolio) -> CommandReply:
        return await oms.rebalance(target)

    # SIGTERM is handled from before the first command is taken: a service that answers
    # orders is always stopped by draining, never by the signal's default action.
    done = stop or asyncio.Event()
    stop_on_signals(done)
    subs = [
        await bus.serve("mts.v1.oms.commands.submit", on_submit, concurrency=opts.concurrency),
        # every answer to a cancel, replace, rebalance or state command is recorded for the
        # audit chain (mts.v1.oms.answers.recorded); a submit's outcome is already an order
        # event (accepted, denied, rejected) and a submit that does not decode a dead letter
        await bus.serve("mts.v1.oms.commands.cancel", on_cancel, concurrency=opts.concurrency,
                        record_as=REPLAY_PARTICIPANT),
        await bus.serve("mts.v1.oms.commands.replace", on_replace,
                        concurrency=opts.concurrency, record_as=REPLAY_PARTICIPANT),
        # one target at a time: two targets of one fund at once would both trade the same
        # deltas (each target's orders are idempotent, different targets' are not)
        await bus.serve("mts.v1.oms.commands.rebalance", on_rebalance,
                        record_as=REPLAY_PARTICIPANT),
    ]

    subs += await serve_state_commands(bus, oms.killswitch)
    actions = ActionDesk(bus, oms)
    subs.append(await bus.nc.subscribe(bus.wire_subject(ACTIONS_SUBJECT),
                                       cb=actions.on_message))
    if replay is not None:
        async def on_tick(tick: ClockTick) -> None:
            # the session's actions take effect at its open: in before the session is done
            await actions.finish(tick.session, tick.actions, wait=opts.actions_wait,
                                 timeout=opts.session_timeout)
            await finish_session(oms, store, relay, timeout=opts.session_timeout)

        subs.append(await serve_ticks(bus, REPLAY_PARTICIPANT, on_tick, replay))

    live: set[str] = set()

    async def on_price(msg: Any) -> None:
        try:
            if ".bars." in msg.subject:
                bar = parse_message(Bar, msg.data)
                oms.set_price(bar.symbol, bar.close, at=bar.ts)
                live.add(bar.symbol)
            else:
                q = parse_message(Quote, msg.data)
                oms.set_price(q.symbol, (q.bid + q.ask) / 2, at=q.ts)
                live.add(q.symbol)
        except Exception as exc:
            _log.debug("ignored market data", error=repr(exc))

    for pattern in ("mts.v1.datalake.bars.*", "mts.v1.datalake.quotes.*"):
        subs.append(await bus.nc.subscribe(bus.wire_subject(pattern), cb=on_price))
    await _seed_prices(bus, oms, live)

    _log.info("oms serving", funds=",".join(oms.funds), schema=opts.schema,
              namespace=opts.namespace or "", replay_clock=opts.replay_clock)
    await bus.nc.flush()  # every subscription is known to the server before we say ready
    # Full GC passes stall every order in hand; run them on our schedule (see gcpolicy).
    collections = ScheduledFullCollections(opts.full_gc_interval)
    collections.start()
    heartbeat = Heartbeater(bus, HEARTBEAT_SERVICE, instance=opts.heartbeat_instance,
                            interval_s=opts.heartbeat_interval)
    heartbeat.start()
    try:
        if ready is not None:
            ready.set()
        await done.wait()
    finally:  # the collector's own schedule again, also if this task is cancelled
        await heartbeat.stop()
        await collections.stop()
    _log.info("oms draining")
    for sub in subs:  # stop taking commands; handlers in hand finish
        with contextlib.suppress(Exception):
            await sub.drain()  # type: ignore[no-untyped-call]
    await bus.wait_requests()
    if not await oms.killswitch.finish(opts.sweep_drain_seconds):
        _log.warning("kill-switch sweeps not finished at shutdown; the next instance resumes "
                     "them", outstanding=len(oms.killswitch.outstanding_order_ids()))
        # The drain time is over: the sweeps stop now, not after the rest of the shutdown
        # (the outbox flush, the bus drain), which on a loaded machine can take seconds more.
        await oms.killswitch.stop()
    await cancel_and_wait([watcher, fund_watcher])  # a cancel lost on the way is sent again
    await relay.stop()  # flushes the outbox while NATS is still up
    await oms.stop()
    await bus.drain()
    await broker.close()
    await store.close()
    _log.info("oms stopped")
