"""The OMS in a deploy: the gate "the OMS answers", and no restart while orders are working.

Why these and how, with the OMS's existing wire only (no query was added for the deploy):

- **The OMS answers** (:class:`OmsAnswers`): after the restart a request on the OMS's
  trading-state subject ``mts.v1.oms.commands.state`` must be answered within the timeout. The
  probe is an *unsigned* ``SetTradingState``, which the OMS always refuses ``UNAUTHORIZED``
  (only signed halt/reduce/resume change anything): the answer proves the new process took its
  subscriptions, read its books and serves, and nothing changes. The OMS logs the refusal as a
  warning naming the claimed actor ``mts1b-deploy-gate``.
- **Working orders** (:func:`working_orders`): read from the OMS's order events on the bus
  (``mts.v1.oms.orders.*`` in its JetStream stream, the same events ``paper status`` counts):
  an order whose latest event is not terminal is working. No stream yet: none. The whole
  history is read once (``mts1b_platform.follow``), then followed live while draining.
- **Refusal and drain** (:class:`OrdersGuard`): before a release is installed and its services
  restarted, ``install --start`` refuses while orders are working. With ``--drain`` it first
  sends a signed ``HaltTrading`` for the global scope (a key with the role ``operations``):
  the OMS stops taking orders and its sweep cancels the working ones; the deploy waits, up to
  the drain timeout, until none is working, else it refuses and leaves trading halted. A
  successful deploy leaves trading HALTED too: resuming (role ``risk``) is the operator's
  decision once the new release is checked (``mts mts1b-oms resume --all``).

Needs ``nats-py`` (the ``local`` extra: ``mts1b-platform[bus]``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mts1b_foundation import CommandReply, OrderEvent, SetTradingState, parse_message

from mts1b_deploy.errors import ReleaseError
from mts1b_deploy.supervisor import Supervisor

__all__ = ["OmsAnswers", "OrdersGuard", "OrdersWorking", "working_orders"]

Log = Callable[[str], None]
STATE_SUBJECT = "mts.v1.oms.commands.state"
HALT_SUBJECT = "mts.v1.oms.commands.halt"
ORDERS_SUBJECT = "mts.v1.oms.orders.>"
PROBE_ACTOR = "mts1b-deploy-gate"


class OrdersWorking(ReleaseError):
    """Orders are working in the OMS: the deploy does not restart it (``--drain`` does)."""

    code = "DEPLOY.ORDERS_WORKING"


async def _connect(nats_url: str, namespace: str | None, timeout: float) -> Any:
    from mts1b_platform.bus import Bus  # the `local` extra

    overrides: dict[str, Any] = {"url": nats_url, "name": "mts1b-deploy",
                                 "connect_timeout": min(timeout, 5.0)}
    if namespace:
        overrides["namespace"] = namespace
    return await Bus.connect(**overrides)


@dataclass(frozen=True)
class OmsAnswers:
    """A gate: the OMS answers a request on its trading-state subject within ``timeout_s``."""

    nats_url: str
    namespace: str | None = None
    timeout_s: float = 30.0
    name: str = "oms answers"

    def begin(self) -> None:
        """Nothing to watch before the start."""

    def check(self, supervisor: Supervisor) -> str | None:
        return asyncio.run(self._ask())

    async def _ask(self) -> str | None:
        from mts1b_platform.bus import BusError, RequestFailed

        started = time.monotonic()
        deadline = started + self.timeout_s
        try:
            bus = await _connect(self.nats_url, self.namespace, self.timeout_s)
        except BusError as exc:
            return f"cannot reach NATS ({exc.message})"
        probe = SetTradingState(scope="global", scope_id="*", state="HALTED", actor=PROBE_ACTOR,
                                reason="mts1b-deploy health gate: is the OMS answering?")
        last = "no answer"
        try:
            while time.monotonic() < deadline:
                try:
                    reply = await bus.request(STATE_SUBJECT, probe, timeout=min(
                        2.0, max(0.1, deadline - time.monotonic())), reply_model=CommandReply)
                except RequestFailed as exc:
                    return f"the OMS answered with an error ({exc.message})"
                except BusError as exc:  # no responder yet (starting), or a timeout
                    last = exc.message
                    await asyncio.sleep(0.2)
                    continue
                if not isinstance(reply, CommandReply) or reply.ok:
                    # an unsigned command is never applied: an OMS that does is not fit
                    return "the OMS accepted an unsigned trading-state command"
                return None
            return (f"no answer on {STATE_SUBJECT} within {self.timeout_s:g} s "
                    f"(last: {last})")
        finally:
            await bus.drain()


class _Orders:
    """Each order's latest status, from the OMS's order events: the stored history, then live
    (one ordered consumer, so a drain watches the cancels arrive instead of reading the
    whole history again)."""

    def __init__(self) -> None:
        self.done: dict[str, bool] = {}
        self._follower: Any = None

    async def start(self, bus: Any) -> None:
        import nats.js.errors
        from mts1b_platform.follow import follow

        try:
            await bus.js.stream_info(bus.stream_for("oms"))
        except nats.js.errors.NotFoundError:
            return  # the OMS has published no event here: no order exists
        self._follower = await follow(bus, "oms", ORDERS_SUBJECT, self._on_event)
        if not await self._follower.caught_up(30):
            raise ReleaseError("the OMS's order events were not all read within 30 s; the "
                               "working orders are unknown", step="orders")

    async def _on_event(self, _subject: str, data: bytes) -> None:
        event = parse_message(OrderEvent, data)
        self.done[event.order_id] = event.status.is_terminal

    @property
    def working(self) -> int:
        return sum(1 for finished in self.done.values() if not finished)

    async def stop(self) -> None:
        if self._follower is not None:
            await self._follower.stop()


async def _working(bus: Any) -> int:
    orders = _Orders()
    try:
        await orders.start(bus)
        return orders.working
    finally:
        await orders.stop()


def working_orders(nats_url: str, namespace: str | None = None) -> int:
    """How many orders are working in the OMS, from its order events on the bus."""

    async def count() -> int:
        bus = await _connect(nats_url, namespace, 10.0)
        try:
            return await _working(bus)
        finally:
            await bus.drain()

    return asyncio.run(count())


@dataclass(frozen=True)
class OrdersGuard:
    """Before a release restarts the OMS: refuse while orders work, or drain them first."""

    nats_url: str
    namespace: str | None = None
    drain_key: Path | None = None
    """With a key (role operations): halt trading and wait for the working orders to end."""
    drain_timeout_s: float = 120.0
    untouched: str = "nothing was installed"
    """What a refusal leaves as it was (said in its message)."""

    def __call__(self, log: Log) -> None:
        from mts1b_platform.bus import BusError

        try:
            asyncio.run(self._run(log))
        except BusError as exc:
            raise ReleaseError(f"cannot check the OMS's working orders on NATS at "
                               f"{self.nats_url} ({exc.message}); {self.untouched}",
                               step="orders") from None

    async def _run(self, log: Log) -> None:
        bus = await _connect(self.nats_url, self.namespace, 10.0)
        orders = _Orders()
        try:
            await orders.start(bus)
            working = orders.working
            if working == 0:
                log("orders: none working")
                return
            if self.drain_key is None:
                raise OrdersWorking(
                    f"{working} order(s) are working in the OMS: a deploy restarts it; drain "
                    "first (--drain --key-file KEY halts trading and waits until none works) "
                    f"or wait until they are done; {self.untouched}", working=working)
            await self._halt(bus, working, log)
            deadline = time.monotonic() + self.drain_timeout_s
            while orders.working and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            if orders.working:
                raise OrdersWorking(
                    f"drain: {orders.working} order(s) still working after "
                    f"{self.drain_timeout_s:g} s; trading stays HALTED, {self.untouched}",
                    working=orders.working)
            log("drain: no order working; trading stays HALTED until you resume it "
                "(mts mts1b-oms resume --all --key-file KEY, a key with the role risk)")
        finally:
            await orders.stop()
            await bus.drain()

    async def _halt(self, bus: Any, working: int, log: Log) -> None:
        from mts1b_foundation import HaltTrading
        from mts1b_platform.bus import BusError, RequestFailed
        from mts1b_platform.signing import KeyFileError, SigningKey

        try:
            key = SigningKey.load(self.drain_key or Path())
        except KeyFileError as exc:
            raise ReleaseError(f"--key-file: {exc.message}", field="--key-file") from None
        command = key.sign(HaltTrading, "global", "*",
                           f"mts1b-deploy: drain before a release ({working} orders working)")
        try:
            reply = await bus.request(HALT_SUBJECT, command, timeout=10.0,
                                      reply_model=CommandReply)
        except RequestFailed as exc:
            raise ReleaseError(f"drain: the OMS refused the halt ({exc.message})",
                               step="drain") from None
        except BusError as exc:
            raise ReleaseError(f"drain: no OMS took the halt ({exc.message}); "
                               f"{self.untouched}", step="drain") from None
        if not isinstance(reply, CommandReply) or not reply.ok:
            code, why = getattr(reply, "code", None), getattr(reply, "message", None)
            raise ReleaseError(f"drain: the OMS refused the halt ({code}: {why})",
                               step="drain")
        log(f"drain: trading HALTED by {key.name}; {working} order(s) being canceled")
