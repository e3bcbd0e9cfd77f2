"""``mts mts1b-operations serve alerts``: the router as a service.

It consumes three subjects with durable consumers, each message acknowledged only after the
router committed what it means (so a SIGKILL loses nothing: an unacknowledged message comes
again and is deduplicated by its ``alert_id``):

- ``mts.v1.operations.alerts.raised``: every service's alerts;
- ``mts.v1.operations.heartbeats.*``: every service's heartbeats;
- ``mts.v1.oms.state.changed``: kill-switch changes, turned into ``TradingHalted`` alerts
  (:func:`~mts1b_operations.alerts.router.halt_alert`) - what inhibits a halted fund's order
  alerts. While the OMS stream does not exist, tried again every 10 s.

Every ``tick`` seconds it resolves what timed out, raises missing heartbeats and evaluates
the groups that are due; the dispatcher delivers the outbox meanwhile. It publishes its own
heartbeat (``mts1b-operations-alerts``, through :class:`mts1b_platform.heartbeat.Heartbeater`),
so a second router - or a person - can tell it died.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from mts1b_foundation import Alert, SystemClock, TradingStateChange
from mts1b_platform.bus import Bus, BusError, Consumer, Delivery
from mts1b_platform.heartbeat import HEARTBEAT_SUBJECTS, Heartbeater
from mts1b_platform.logging import get_logger
from mts1b_platform.shutdown import stop_on_signals

from mts1b_operations.alerts.config import AlertsConfig
from mts1b_operations.alerts.dispatch import Dispatcher, build_sinks
from mts1b_operations.alerts.router import Router, halt_alert
from mts1b_operations.alerts.store import AlertsDb

__all__ = ["ALERT_SUBJECT", "HEARTBEAT_SERVICE", "run_alerts"]

ALERT_SUBJECT = "mts.v1.operations.alerts.raised"
HEARTBEAT_SERVICE = "mts1b-operations-alerts"
_log = get_logger("mts1b_operations.alerts")


async def run_alerts(config: AlertsConfig, *, namespace: str | None = None,
                     stop: asyncio.Event | None = None, ready: asyncio.Event | None = None,
                     heartbeat_interval: float = 10.0) -> None:
    """Run the router until ``stop`` is set (SIGTERM or SIGINT set it too)."""
    stop = stop or asyncio.Event()
    stop_on_signals(stop)
    clock = SystemClock()
    started = clock.now()
    db = await AlertsDb.open(config.database_url.get_secret_value(), schema=config.schema_name)
    consumers: list[Consumer] = []
    try:
        async with await Bus.connect(namespace=namespace, name=HEARTBEAT_SERVICE) as bus:
            await bus.declare_streams(["operations"])
            dispatcher = Dispatcher(db, build_sinks(config), clock=clock,
                                    poll=min(config.tick, 1.0))
            router = Router(db, config, clock=clock, on_notify=dispatcher.wake)

            async def on_alert(delivery: Delivery[Any]) -> None:
                message: Alert = delivery.message
                if await router.ingest(message) and message.severity.value == "critical":
                    await router.tick()  # a page is evaluated now, not at the next tick

            async def on_beat(delivery: Delivery[Any]) -> None:
                await router.heartbeat(delivery.message)

            async def on_state(delivery: Delivery[Any]) -> None:
                change: TradingStateChange = delivery.message
                alert = halt_alert(change)
                if alert is not None:
                    await router.ingest(alert)

            consumers.append(await bus.consume(ALERT_SUBJECT, on_alert,
                                               durable="operations-alerts-router",
                                               ack_wait=config.ack_wait))
            consumers.append(await bus.consume(HEARTBEAT_SUBJECTS, on_beat,
                                               durable="operations-alerts-heartbeats",
                                               ack_wait=config.ack_wait))

            async def follow_halts() -> None:
                """The OMS's stream may not exist yet: try again every 10 s until it does."""
                while not stop.is_set():
                    try:
                        consumers.append(await bus.consume(
                            "mts.v1.oms.state.changed", on_state,
                            durable="operations-alerts-halts", ack_wait=config.ack_wait))
                        return
                    except BusError as exc:
                        _log.warning("not following kill-switch changes yet",
                                     error=exc.message)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=10)

            tasks = [asyncio.create_task(dispatcher.run(stop)),
                     asyncio.create_task(follow_halts()),
                     asyncio.create_task(_ticks(router, config.tick, stop))]
            async with Heartbeater(bus, HEARTBEAT_SERVICE, interval_s=heartbeat_interval,
                                   clock=clock, started_at=started):
                _log.info("alert router running", receivers=sorted(dispatcher.sinks),
                          schema=config.schema_name)
                if ready is not None:
                    ready.set()
                await stop.wait()
            for consumer in consumers:
                await consumer.stop()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
    finally:
        await db.close()


async def _ticks(router: Router, every: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await router.tick()
        except Exception as exc:  # a database hiccup: the next tick tries again
            _log.error("router tick failed", error=type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every)

