"""The kill switch: trading states per scope, and the durable sweep that cancels what they forbid.

A HALTED (or REDUCING) change is one PostgreSQL transaction that writes the state, the sweep -
the intent to cancel - and one *outstanding* row per order to cancel. The reply goes out as
soon as that commits, saying how many cancels are outstanding; the cancels follow in the
background. Why: a kill switch has to be quick to answer and impossible to lose. The old sweep
canceled one order at a time before replying (168 cancels against a broker taking 0.2 s each
took 6.8 s to answer) and lived only in memory (a crash mid-sweep left the rest working at the
broker in a HALTED fund, and nothing finished the job).

How a sweep runs:

* **one sweeper per fund**: an instance sweeps only the funds whose advisory lock it holds
  (:meth:`~mts1b_oms.orderstore.OrderStore.fund_lock`). PostgreSQL releases the lock when the
  holder's connection goes, so when an instance dies the next one to start takes the lock and
  finishes every outstanding row, in the background, while it already answers commands;
* **at the broker's cancel rate**: cancels start evenly spaced at ``cancel_rate`` per second
  (default 10/s, a broker setting) and run concurrently, so a slow venue does not slow the
  sweep down to one round trip per order;
* **each order's status is recorded** as it settles (canceled, closed, refused, not working);
  an order whose cancel had no certain outcome (transport error, time-out) is tried again
  with back-off until it settles; one outstanding in an earlier sweep stays with that sweep;
* **no gaps**: an instance that starts, and every ``poll_seconds`` after, also sweeps orders of
  its funds found working in a halted scope without being in a sweep (an order committed just
  as the halt landed), and takes in state changes it did not hear on the bus;
* **submits wait for the sweep**: while this instance's part of a HALTED sweep is outstanding,
  submits in that scope are denied ``TRADING_HALTED`` even if the scope was resumed meanwhile.

Trading-state commands from outside enter through :meth:`KillSwitch.handle_command`, the one
place where a command's sender is checked (``verify``: its signature, key, role, freshness and
nonce, :mod:`mts1b_oms.signing`) before anything is applied; the actor recorded is the name of
the key that signed it. An unsigned ``SetTradingState`` from outside is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine
from typing import Any, Protocol

from mts1b_foundation import (
    Clock,
    CommandReply,
    Denial,
    DenialCode,
    Order,
    OrderStatus,
    ReplyCode,
    SetTradingState,
    SignedStateCommand,
    TradingState,
    TradingStateChange,
    new_event_id,
)
from mts1b_platform.logging import get_logger

from mts1b_oms.book import FundBook
from mts1b_oms.orderstore import CancelOutcome, OrderStore, OutboxItem, Sweep, in_scope
from mts1b_oms.signing import Verified, refuse_unsigned
from mts1b_oms.sleeves import state_strategies
from mts1b_oms.state import OrderState
from mts1b_oms.tasks import cancel_and_wait
from mts1b_oms.tradingstate import Scope, TradingStates, make_change, make_command, restrictiveness

__all__ = ["DEFAULT_CANCEL_RATE", "CancelAttempt", "KillSwitch", "Pacer", "StateFanout",
           "SweepHost", "Verifier"]

DEFAULT_CANCEL_RATE = 10.0
"""Cancels per second a sweep sends to one broker unless the broker says otherwise."""

_log = get_logger("mts1b_oms.killswitch")
S = OrderStatus


class StateFanout(Protocol):
    """Where kill-switch changes go so other OMS instances see them (the NATS KV bucket)."""

    async def put(self, change: TradingStateChange) -> None: ...


Verifier = Callable[[SignedStateCommand, TradingState], Awaitable[Verified | CommandReply]]
"""Checks a signed trading-state command whose scope's own state is the second argument:
:class:`~mts1b_oms.signing.Verified` (who signed it, what to set) to apply it, else the refusal
to answer with (:meth:`CommandVerifier.verify <mts1b_oms.signing.CommandVerifier.verify>`).
The default, with no key registry, refuses every command."""


class CancelAttempt(Protocol):
    """The result of one cancel the kill switch asked for: the order afterwards and, if the
    cancel did not take, whether the broker ``refused`` it or its outcome is unknown."""

    @property
    def state(self) -> OrderState | None: ...

    @property
    def refused(self) -> bool: ...


class SweepHost(Protocol):
    """What a sweep needs from the OMS that owns the broker (:class:`~mts1b_oms.oms.Oms`)."""

    async def load_order(self, order_id: str) -> OrderState | None: ...

    async def cancel_for_sweep(self, order_id: str, reason: str,
                               pace: Callable[[], Awaitable[None]], *,
                               refresh: bool) -> CancelAttempt: ...

    def sending(self, order_id: str) -> bool: ...

    async def broker_lists_open(self, state: OrderState) -> bool: ...

    async def alert(self, text: str, **context: str) -> None: ...

    def notify(self) -> None: ...


class Pacer:
    """Lets operations start at most ``rate`` per second, evenly spaced, across all callers.

    Each :meth:`wait` takes the next free slot (``1 / rate`` after the previous one) and sleeps
    until it; the operations themselves then run concurrently. A caller that comes less than
    one interval late starts at once and keeps the schedule (a busy event loop does not push
    every later cancel back); one that comes later than that - after an idle spell - starts a
    fresh schedule, so no burst builds up: any second holds at most ``rate + 1`` starts.
    ``clock`` and ``sleep`` are the loop's by default (tests pass their own).
    """

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        if not rate > 0:
            raise ValueError(f"cancel rate must be > 0 per second, got {rate!r}")
        self.interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._next = float("-inf")

    def prime(self) -> None:
        """Start the schedule now unless one is running: a sweep's first cancel is then on
        time when it comes a few milliseconds later (its order's write comes first), and the
        last of ``n`` goes out ``(n - 1) / rate`` after the sweep began, not after that."""
        now = self._clock()
        if now - self._next > self.interval:
            self._next = now

    async def wait(self) -> None:
        now = self._clock()
        late = now - self._next
        if late <= 0:
            slot, self._next = self._next, self._next + self.interval
        elif late <= self.interval:
            slot, self._next = now, self._next + self.interval
        else:
            slot, self._next = now, now + self.interval
        if slot > now:
            await self._sleep(slot - now)


async def _no_registry(command: SignedStateCommand, _current: TradingState
                       ) -> Verified | CommandReply:
    return CommandReply(ok=False, code=ReplyCode.UNAUTHORIZED,
                        message="this OMS has no key registry: it applies no trading-state "
                                "command from outside", context={"command": command.COMMAND})


class KillSwitch:
    """Trading states and their sweeps for the funds ``fund_ids`` (see the module docstring)."""

    def __init__(self, store: OrderStore, book: FundBook, host: SweepHost,
                 fund_ids: Collection[str], *, clock: Clock,
                 cancel_rate: float = DEFAULT_CANCEL_RATE, max_in_flight: int = 64,
                 retry_seconds: float = 1.0, poll_seconds: float | None = 2.0,
                 fanout: StateFanout | None = None, verify: Verifier = _no_registry,
                 pacer: Pacer | None = None,
                 on_strategy_halt: Callable[[str, str], Coroutine[Any, Any, object]] | None = None,
                 on_strategy_reduce: Callable[[str, str], Coroutine[Any, Any, object]] | None = None
                 ) -> None:
        self.store = store
        self.book = book
        self.host = host
        self.funds = frozenset(fund_ids)
        self.clock = clock
        self.fanout = fanout
        self.verify = verify
        self.retry_seconds = retry_seconds
        self.poll_seconds = poll_seconds
        self.states = TradingStates()
        self.pacer = pacer or Pacer(cancel_rate)
        self._stamps: dict[Scope, dt.datetime] = {}  # when each scope's state was set
        self._changes = asyncio.Lock()  # state changes: store then memory, one at a time
        self._slots = asyncio.Semaphore(max_in_flight)
        # Orders prepared ahead of their turn at the broker (the cancel_requested write done,
        # waiting for the pacer): a quarter second's worth, so the calls keep the rate without
        # a crowd of writes in front of the first one.
        self._lead = asyncio.Semaphore(
            max(1, min(max_in_flight, math.ceil(0.25 / self.pacer.interval))))
        self._lock = store.fund_lock(self.funds)
        self._runners: dict[str, asyncio.Task[None]] = {}
        self._sweeps: dict[str, Sweep] = {}  # unfinished sweeps with rows of our funds
        self._mine: dict[str, set[str]] = {}  # sweep_id -> our outstanding order ids
        self._cancels: dict[str, asyncio.Task[tuple[CancelOutcome | None, OrderState | None,
                                                    str | None]]] = {}
        self._poller: asyncio.Task[None] | None = None
        self._warned_unlocked: frozenset[str] = frozenset()
        self._given_up: set[str] = set()  # refused: top-ups leave them to a person (or a halt)
        self._fanning: asyncio.Task[None] | None = None  # the latest fan-out put
        # issue #17: a halted strategy's share also leaves the orders serving several sleeves
        # (their strategy_id is no single strategy, so no sweep picks them)
        self.on_strategy_halt = on_strategy_halt
        # and a REDUCING strategy's share that adds to its sleeve leaves them too
        self.on_strategy_reduce = on_strategy_reduce
        self._withdrawals: set[asyncio.Task[object]] = set()

    # --- start / stop -------------------------------------------------------------------------

    async def load(self) -> None:
        """Read every scope's state from the store (the system of record)."""
        for change in await self.store.state_changes():
            self._take(change)

    async def start(self) -> None:
        """Take the funds' sweeper lock, resume what earlier instances left outstanding and
        sweep orders found working in a forbidding scope. The sweeps run in the background:
        this returns once they are known (so ``recover`` leaves their orders alone)."""
        await self.kick(top_up=True)
        if self.poll_seconds is not None and self._poller is None:
            self._poller = asyncio.get_running_loop().create_task(
                self._poll(self.poll_seconds))

    async def stop(self) -> None:
        """Stop sweeping now, as a crash would: what is outstanding stays outstanding in the
        store for the next holder of the lock. Then give the lock back."""
        tasks = [t for t in (self._poller, self._fanning, *self._runners.values(),
                             *self._cancels.values(), *self._withdrawals) if t is not None]
        await cancel_and_wait(tasks)  # a cancel lost on the way is sent again
        self._poller = self._fanning = None
        self._runners.clear()
        self._cancels.clear()
        self._sweeps.clear()
        self._mine.clear()
        await self._lock.release()

    async def finish(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds for this instance's sweeps (drain at SIGTERM);
        True if none is left running."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.settle(), timeout)
        return not self._runners

    async def settle(self) -> None:
        """Wait until every sweep this instance is running has settled its orders (and the
        latest change is on the fan-out)."""
        while self._runners or self._withdrawals:
            await asyncio.gather(*list(self._runners.values()), *list(self._withdrawals),
                                 return_exceptions=True)
        if self._fanning is not None:
            await asyncio.gather(self._fanning, return_exceptions=True)

    # --- commands -----------------------------------------------------------------------------

    async def handle_command(self, command: SignedStateCommand | SetTradingState
                             ) -> CommandReply:
        """A trading-state command from outside (the bus): checked by ``verify``, then applied
        with the signing key's name as the actor. An unsigned ``SetTradingState`` is refused
        ``UNAUTHORIZED``: its actor is whatever its sender wrote."""
        if isinstance(command, SetTradingState):
            return refuse_unsigned(command, self.clock.now())
        verdict = await self.verify(command, self.states.get(command.scope, command.scope_id))
        if isinstance(verdict, CommandReply):
            return verdict
        return await self.set_trading_state(
            make_command(command.scope, command.scope_id, verdict.state, verdict.actor,
                         command.reason), escalate_only=verdict.escalate_only)

    async def set_trading_state(self, command: SetTradingState, *,
                                escalate_only: bool = False) -> CommandReply:
        """Halt, reduce or resume a scope; reply once the change and its sweep are durable.

        HALTED sweeps every open order of the scope (all funds: each instance cancels its own
        funds' orders, so the reply counts what the whole halt left outstanding); REDUCING
        sweeps this instance's orders that add risk; only an explicit ACTIVE clears a halt.
        ``escalate_only`` (the drawdown gate's changes) records the change only if it is more
        restrictive than the scope's state, so it never replaces an operator's HALT and many
        breaches make one change. The reply's context: ``state``, ``applied``, ``sweep_id``
        and ``outstanding`` (cancels not settled when the reply was sent).
        """
        now = self.clock.now()
        change = make_change(command.scope, command.scope_id, command.state, command.actor,
                             command.reason, now)
        sweep_id = _new_sweep_id() if command.state is not TradingState.ACTIVE else None
        async with self._changes:
            current = self.states.get(command.scope, command.scope_id)
            applied = not escalate_only or (
                restrictiveness(command.state) > restrictiveness(current))
            sweep = None
            if applied:
                wanted = None
                if command.state is TradingState.REDUCING:
                    wanted = [st.order_id for st in self.book.risk_increasing(
                        self._open_in_scope(command.scope, command.scope_id))]
                written = await self.store.set_trading_state(
                    change, [OutboxItem("mts.v1.oms.state.changed", change, new_event_id())],
                    escalate_only=escalate_only, sweep_id=sweep_id, sweep_orders=wanted)
                applied, sweep = written.applied, written.sweep
            if applied:
                self._take(change, force=True)  # ours: whatever another clock says
        if not applied:
            return CommandReply(ok=True, ts=now, context={"state": current.value,
                                                          "applied": False, "outstanding": 0})
        self.host.notify()
        if sweep is not None:
            self._start_sweep(sweep, ours=True)
        self._withdraw(change)
        self._fan_out(change)
        _log.warning("trading state changed", scope=change.scope, scope_id=change.scope_id,
                     state=change.state.value, actor=change.actor, reason=change.reason,
                     sweep_id=sweep_id or "", outstanding=sweep.outstanding if sweep else 0)
        context: dict[str, str | int | bool | None] = {
            "state": command.state.value, "applied": True,
            "outstanding": sweep.outstanding if sweep else 0}
        if sweep is not None:
            context["sweep_id"] = sweep.sweep_id
        return CommandReply(ok=True, ts=now, context=context)

    def _fan_out(self, change: TradingStateChange) -> None:
        """Put the change on the fan-out after the reply, in the order of the changes: the
        reply waits only for PostgreSQL, where the change already is (other instances that
        miss the fan-out take it in at their next poll)."""
        fanout = self.fanout
        if fanout is None:
            return
        previous = self._fanning

        async def put() -> None:
            if previous is not None:
                with contextlib.suppress(Exception):
                    await previous
            try:
                await fanout.put(change)
            except Exception as exc:
                _log.error("kill-switch fan-out failed", error=repr(exc))

        self._fanning = asyncio.get_running_loop().create_task(put())

    def apply_state_change(self, change: TradingStateChange) -> None:
        """Take a change into memory (one seen on the fan-out, or in a test)."""
        self._take(change, force=True)

    async def on_fanout(self, change: TradingStateChange) -> None:
        """Another instance's change, seen on the KV bucket: take in the scope's change as
        stored in PostgreSQL and sweep this instance's part (HALTED: the rows the writer
        recorded for our funds; REDUCING: our orders that add risk, as a sweep of our own).

        The bucket's value is only the signal to look: every change is stored before it is
        fanned out, so what anyone else puts in the bucket (a forged ACTIVE, unsigned) changes
        nothing - one that PostgreSQL does not hold is logged and ignored."""
        stored = next((c for c in await self.store.state_changes()
                       if (c.scope, c.scope_id) == (change.scope, change.scope_id)), None)
        if stored is None or change.ts > stored.ts or (change.ts == stored.ts
                                                       and change != stored):
            _log.warning("a trading state on the fan-out is not the one stored: ignored",
                         scope=change.scope, scope_id=change.scope_id, state=change.state.value,
                         claimed_actor=change.actor)
        if stored is None:
            return
        self._take(stored)
        await self.kick(top_up=stored.state is TradingState.REDUCING)
        self._withdraw(stored)

    def _withdraw(self, change: TradingStateChange) -> None:
        """A strategy just HALTED: take its share out of the orders that serve it beside
        other sleeves (``on_strategy_halt``); just REDUCING: take out its shares that would
        add to its sleeve's position (``on_strategy_reduce``). In the background like a
        sweep; ``settle`` waits for it."""
        if change.scope != "strategy":
            return
        hook = (self.on_strategy_halt if change.state is TradingState.HALTED
                else self.on_strategy_reduce if change.state is TradingState.REDUCING
                else None)
        if hook is None:
            return
        task: asyncio.Task[object] = asyncio.get_running_loop().create_task(
            hook(change.scope_id, change.reason))
        self._withdrawals.add(task)
        task.add_done_callback(self._withdrawals.discard)

    def _take(self, change: TradingStateChange, *, force: bool = False) -> None:
        """Apply ``change`` unless memory already holds a later one for its scope."""
        key = (change.scope, change.scope_id)
        seen = self._stamps.get(key)
        if not force and seen is not None and seen > change.ts:
            return
        self._stamps[key] = change.ts
        self.states.set(change.scope, change.scope_id, change.state)

    # --- what the order path asks -------------------------------------------------------------

    def forbidden(self, state: OrderState) -> tuple[DenialCode, str] | None:
        """Why the trading state forbids this order to work now, or None.

        HALTED forbids every order; REDUCING forbids one that takes its position further from
        zero (judged with the older open orders on its side, as the REDUCING sweep judges
        them); an unfinished halt sweep of its scope forbids every order until it ends.
        Checked wherever an order is about to reach the broker or has just reached it,
        because a state change can land at any ``await`` in between.
        """
        o = state.order
        trading, (scope, scope_id) = self.states.effective_for(o.fund_id,
                                                               state_strategies(state))
        if trading is TradingState.HALTED:
            return DenialCode.TRADING_HALTED, f"trading is halted for {scope} {scope_id}"
        if trading is TradingState.REDUCING and self.book.adds_risk(state):
            return DenialCode.TRADING_STATE_REDUCING, f"{scope} {scope_id} is reducing"
        sweep = self._halt_sweep_of(o)
        if sweep is not None:
            return DenialCode.TRADING_HALTED, (
                f"the halt sweep of {sweep.scope} {sweep.scope_id} is still canceling")
        return None

    def blocks(self, order: Order) -> Denial | None:
        """The denial for a submit while this instance's part of a HALTED sweep covering the
        order is outstanding (the scope may have been resumed meanwhile), else None."""
        sweep = self._halt_sweep_of(order)
        if sweep is None:
            return None
        left = len(self._mine.get(sweep.sweep_id, ()))
        return Denial(code=DenialCode.TRADING_HALTED, gate="trading_state",
                      message=f"the halt sweep of {sweep.scope} {sweep.scope_id} is still "
                              f"canceling {left} orders; submits wait until it ends",
                      context={"scope": sweep.scope, "scope_id": sweep.scope_id,
                               "sweep_id": sweep.sweep_id, "outstanding": left})

    def _halt_sweep_of(self, order: Order) -> Sweep | None:
        for sweep_id, sweep in self._sweeps.items():
            if (sweep.state is TradingState.HALTED and self._mine.get(sweep_id)
                    and in_scope(sweep.scope, sweep.scope_id, order.fund_id,
                                 order.strategy_id)):
                return sweep
        return None

    def outstanding_order_ids(self) -> set[str]:
        """Orders of our funds that a sweep this instance runs has still to settle."""
        return {oid for ids in self._mine.values() for oid in ids}

    async def cancel_now(self, order_id: str, reason: str) -> None:
        """Cancel an order the state forbids right away (the submit path found it working
        after a halt landed), sharing the cancel a sweep may have in flight for it."""
        await self._cancel(order_id, reason)

    async def wait(self, sweep_id: str, *, poll_seconds: float = 0.2) -> Sweep | None:
        """Wait until the sweep has finished (every order settled, by whichever instance)
        and return it as stored; None for an unknown sweep."""
        while True:
            runner = self._runners.get(sweep_id)
            if runner is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(runner)
            sweep = await self.store.sweep(sweep_id)
            if sweep is None or sweep.finished:
                return sweep
            await asyncio.sleep(poll_seconds)

    # --- running sweeps -----------------------------------------------------------------------

    async def kick(self, *, top_up: bool = False) -> None:
        """Run every unfinished sweep with outstanding orders of the funds whose lock this
        instance holds (taking the ones it can); with ``top_up``, first sweep orders found
        working in a forbidding scope without being in any sweep."""
        held = await self._lock.acquire()
        missing = self.funds - held
        if missing != self._warned_unlocked:
            self._warned_unlocked = missing
            if missing:
                _log.warning("another instance holds the sweeper lock of these funds; their "
                             "kill-switch sweeps are left to it", funds=",".join(sorted(missing)))
        if not held:
            return
        for sweep in await self.store.unfinished_sweeps(held):
            self._start_sweep(sweep)
        if top_up:
            await self._top_up(held)

    async def _top_up(self, held: frozenset[str]) -> None:
        taken = {oid for s in await self.store.unfinished_sweeps(held)
                 for oid in (o.order_id for o in s.orders if o.outcome is None)}
        forbidding = list(self.states)
        if not forbidding:
            return
        changes = {(c.scope, c.scope_id): c for c in await self.store.state_changes()}
        open_orders = [st for st in self.book.open_orders() if st.order.fund_id in held]
        for (scope, scope_id), state in forbidding:
            change = changes.get((scope, scope_id))
            if change is None or change.state is not state:
                continue
            working = [st for st in open_orders
                       if st.order_id not in taken and st.order_id not in self._given_up
                       and in_scope(scope, scope_id, st.order.fund_id, st.order.strategy_id)]
            if state is TradingState.REDUCING:
                working = self.book.risk_increasing(working)
            if not working:
                continue
            sweep = await self.store.create_sweep(
                change, _new_sweep_id(), [st.order_id for st in working], now=self.clock.now())
            if sweep is not None:
                _log.warning("orders found working in a forbidding scope: sweeping them",
                             scope=scope, scope_id=scope_id, sweep_id=sweep.sweep_id,
                             outstanding=sweep.outstanding)
                taken |= {o.order_id for o in sweep.orders}
                self._start_sweep(sweep, ours=True)

    def _start_sweep(self, sweep: Sweep, *, ours: bool = False) -> None:
        """Run this instance's part of ``sweep`` (``ours``: written by this instance just
        now, so its book is as fresh as the store; else each order is read again first)."""
        held = self._lock.held
        mine = {o.order_id for o in sweep.orders if o.outcome is None and o.fund_id in held}
        if not mine or sweep.sweep_id in self._runners:
            return
        self._sweeps[sweep.sweep_id] = sweep
        self._mine[sweep.sweep_id] = mine
        self.pacer.prime()
        task = asyncio.get_running_loop().create_task(
            self._run(sweep, sorted(mine), refresh=not ours))
        self._runners[sweep.sweep_id] = task

        def done(_t: asyncio.Task[None]) -> None:
            if self._runners.get(sweep.sweep_id) is task:
                del self._runners[sweep.sweep_id]
                self._sweeps.pop(sweep.sweep_id, None)
                self._mine.pop(sweep.sweep_id, None)

        task.add_done_callback(done)

    async def _run(self, sweep: Sweep, order_ids: list[str], *, refresh: bool) -> None:
        """One task per order, at most ``max_in_flight`` at once and a quarter second's worth
        ahead of the pacer; each paces its own call to the broker (:meth:`_cancel_once`)."""
        settling = []
        for order_id in order_ids:
            await self._slots.acquire()
            await self._lead.acquire()
            settling.append(asyncio.get_running_loop().create_task(
                self._settle(sweep, order_id, refresh=refresh)))
        await asyncio.gather(*settling)

    async def _settle(self, sweep: Sweep, order_id: str, *, refresh: bool) -> None:
        """Cancel one order until its outcome is certain, then record it. Enters holding a
        slot of ``max_in_flight`` and a lead permit; gives the permit back when its turn at
        the broker comes, and the slot while it waits to try again."""
        reason = f"{sweep.state.value.lower()}: {sweep.reason}"
        holding, leading = True, True

        async def pace() -> None:
            nonlocal leading
            await self.pacer.wait()
            if leading:
                leading = False
                self._lead.release()

        attempt = 0
        try:
            while True:
                try:
                    outcome, state, detail = await self._cancel(order_id, reason, pace,
                                                                refresh=refresh)
                    if leading:  # no call to the broker was needed
                        leading = False
                        self._lead.release()
                    if outcome is not None:
                        await self._record(sweep, order_id, outcome, state, detail)
                        return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the store or the broker failed: try again
                    _log.error("kill-switch cancel failed; will retry", order_id=order_id,
                               sweep_id=sweep.sweep_id, error=repr(exc))
                    if leading:
                        leading = False
                        self._lead.release()
                attempt += 1
                holding = False
                self._slots.release()
                await asyncio.sleep(min(30.0, self.retry_seconds * 2 ** min(attempt - 1, 5)))
                await self._slots.acquire()
                holding = True
                await self._lead.acquire()
                leading, refresh = True, True
        finally:
            if holding:
                self._slots.release()
            if leading:
                self._lead.release()

    async def _record(self, sweep: Sweep, order_id: str, outcome: CancelOutcome,
                      state: OrderState | None, detail: str | None) -> None:
        status = state.status if state is not None else None
        await self.store.record_cancel_outcome(sweep.sweep_id, order_id, outcome, status,
                                               detail, now=self.clock.now())
        self._mine.get(sweep.sweep_id, set()).discard(order_id)
        if outcome in {CancelOutcome.REFUSED, CancelOutcome.NOT_WORKING}:
            self._given_up.add(order_id)
            await self.host.alert(f"kill switch: {outcome.value} for order {order_id} "
                                  f"({detail or 'no detail'})", order_id=order_id,
                                  sweep_id=sweep.sweep_id, outcome=outcome.value)

    async def _cancel(self, order_id: str, reason: str,
                      pace: Callable[[], Awaitable[None]] | None = None, *, refresh: bool = True
                      ) -> tuple[CancelOutcome | None, OrderState | None, str | None]:
        """One cancel of ``order_id``, shared by everyone asking while it is in flight."""
        running = self._cancels.get(order_id)
        if running is None:
            running = asyncio.get_running_loop().create_task(
                self._cancel_once(order_id, reason, pace or self.pacer.wait, refresh=refresh))
            self._cancels[order_id] = running
            running.add_done_callback(lambda t: self._cancels.pop(order_id, None)
                                      if self._cancels.get(order_id) is t else None)
        return await asyncio.shield(running)

    async def _cancel_once(self, order_id: str, reason: str,
                           pace: Callable[[], Awaitable[None]], *, refresh: bool
                           ) -> tuple[CancelOutcome | None, OrderState | None, str | None]:
        """``(outcome, state, detail)``; outcome None: not certain yet, try again later."""
        state = await self.host.load_order(order_id)
        if state is None:
            return CancelOutcome.CLOSED, None, "the order is not in the store"
        if state.is_open:  # the pacer spaces the calls to the broker themselves, so they
            # reach it at the rate whatever the writes before each take
            attempt = await self.host.cancel_for_sweep(order_id, reason, pace,
                                                       refresh=refresh)
            state = attempt.state or state
            if state.is_open:
                if state.status is S.PENDING_CANCEL or self.host.sending(order_id):
                    return None, state, "the cancel's outcome is not known yet"
                if not attempt.refused:
                    return None, state, "the cancel did not reach the broker"
                if await self.host.broker_lists_open(state):
                    return CancelOutcome.REFUSED, state, "the broker refused the cancel"
                return (CancelOutcome.NOT_WORKING, state,
                        "the broker refused the cancel and does not list the order as open")
        if state.status is S.CANCELED:
            return CancelOutcome.CANCELED, state, None
        return CancelOutcome.CLOSED, state, f"the order ended {state.status}"

    def _open_in_scope(self, scope: str, scope_id: str) -> list[OrderState]:
        return [st for st in self.book.open_orders() if st.order.fund_id in self.funds
                and in_scope(scope, scope_id, st.order.fund_id, st.order.strategy_id)]

    async def poll_once(self) -> None:
        """Take in state changes the bus did not bring (a change stored while NATS was
        down), take the locks a dead instance left, resume and top up sweeps."""
        for change in await self.store.state_changes():
            self._take(change)
        await self.kick(top_up=True)

    async def _poll(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store is away: try again next time
                _log.error("kill-switch poll failed", error=repr(exc))


def _new_sweep_id() -> str:
    return new_event_id().replace("evt-", "swp-", 1)
