"""Delivering the outbox: each receiver's notifications, in order, at least once.

:func:`dispatch_alert` is the one place a notification is handed to a sink (the dedupe
contract's canonical home): it marks the outbox row delivered only after the sink returned,
and otherwise records the failure and when to try again - the receiver's ``retry_after`` when
it gave one, else an exponential backoff (2 s doubling, at most 5 minutes). A permanent
failure (a chat that does not exist) is retried hourly and does not hold up the receiver's
later notifications; a passing one (a 429, a timeout) does, so they stay in order.

:class:`Dispatcher` runs one loop per receiver, woken by the router when it queues something
and every ``poll`` seconds otherwise (a row written before a crash is found at start).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import Mapping, Sequence

from mts1b_foundation import Alert, AlertDeliveryError, AlertSink, Clock, SystemClock, parse_message
from mts1b_foundation.plugins import EntryPointSource
from mts1b_platform.logging import get_logger

from mts1b_operations.alerts.config import (
    AlertsConfig,
    EmailReceiver,
    PluginReceiver,
    TelegramReceiver,
    WebhookReceiver,
)
from mts1b_operations.alerts.email import EmailSink
from mts1b_operations.alerts.plugins import plugin_sink
from mts1b_operations.alerts.store import AlertsDb
from mts1b_operations.alerts.telegram import TelegramSink
from mts1b_operations.alerts.webhook import WebhookSink

__all__ = ["Dispatcher", "build_sinks", "dispatch_alert", "notification_key"]

_log = get_logger("mts1b_operations.alerts")
_MAX_BACKOFF = 300.0
_PERMANENT_RETRY = 3600.0


def notification_key(schema: str, outbox_id: int) -> str:
    """The key a notification keeps on every attempt (a mail's Message-ID, a webhook's
    Idempotency-Key)."""
    return f"{schema}-{outbox_id}"


def build_sinks(config: AlertsConfig, *,
                source: EntryPointSource | None = None) -> dict[str, AlertSink]:
    """A sink per configured receiver, by name. A ``plugin`` receiver's sink comes from the
    ``mts1b.alert_sinks`` entry points (``source``: where they are read, default the installed
    distributions); one that cannot be built is an ``AlertsInputError`` naming the receiver."""
    sinks: dict[str, AlertSink] = {}
    for receiver in config.receivers:
        if isinstance(receiver, TelegramReceiver):
            sinks[receiver.name] = TelegramSink(receiver)
        elif isinstance(receiver, EmailReceiver):
            sinks[receiver.name] = EmailSink(receiver)
        elif isinstance(receiver, WebhookReceiver):
            sinks[receiver.name] = WebhookSink(receiver)
        elif isinstance(receiver, PluginReceiver):
            sinks[receiver.name] = plugin_sink(receiver, source=source)
    return sinks


async def dispatch_alert(db: AlertsDb, sink: AlertSink, outbox_id: int,
                         alerts: Sequence[Alert], *, attempts: int = 0,
                         clock: Clock | None = None) -> bool | None:
    """Hand one outbox row to ``sink``: True when delivered (and marked so), False when it
    must wait (the row says until when), None when it failed for good this hour."""
    now = (clock or SystemClock()).now()
    try:
        await sink.send(notification_key(db.schema, outbox_id), alerts)
    except AlertDeliveryError as exc:
        if exc.permanent:
            wait = _PERMANENT_RETRY
        elif exc.retry_after is not None:
            wait = max(exc.retry_after, 0.0)
        else:
            wait = min(2.0 * 2 ** attempts, _MAX_BACKOFF)
        async with db.pool.acquire() as conn:
            await conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $2, "
                "last_error = $3, permanent = $4 WHERE id = $1", outbox_id,
                now + dt.timedelta(seconds=wait), exc.message[:500], exc.permanent)
        _log.warning("notification not delivered", receiver=sink.name, outbox_id=outbox_id,
                     error=exc.message, retry_in_s=wait, permanent=exc.permanent)
        return None if exc.permanent else False
    async with db.pool.acquire() as conn:
        await conn.execute("UPDATE outbox SET delivered_at = $2, attempts = attempts + 1 "
                           "WHERE id = $1", outbox_id, (clock or SystemClock()).now())
    return True


class Dispatcher:
    """One delivery loop per sink over the outbox (see the module)."""

    def __init__(self, db: AlertsDb, sinks: Mapping[str, AlertSink], *,
                 clock: Clock | None = None, poll: float = 1.0) -> None:
        self.db = db
        self.sinks = dict(sinks)
        self.clock = clock or SystemClock()
        self.poll = poll
        self._wake = {name: asyncio.Event() for name in self.sinks}
        self.delivered = 0

    def wake(self) -> None:
        for event in self._wake.values():
            event.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set."""
        await asyncio.gather(*(self._loop(name, stop) for name in self.sinks))

    async def _loop(self, name: str, stop: asyncio.Event) -> None:
        wake = self._wake[name]
        while not stop.is_set():
            wake.clear()
            wait = self.poll
            try:
                wait = min(await self.drain(name), self.poll)
            except Exception as exc:  # a database hiccup: log, wait, go on
                _log.error("outbox drain failed", receiver=name, error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=max(wait, 0.01))

    async def drain(self, name: str) -> float:
        """Deliver ``name``'s due notifications in order; return seconds until the next try
        (``poll`` when none waits)."""
        sink = self.sinks[name]
        while True:
            async with self.db.pool.acquire() as conn:
                rows = await conn.fetch(
                    "SELECT id, alerts, attempts, next_attempt_at, permanent FROM outbox WHERE "
                    "receiver = $1 AND delivered_at IS NULL ORDER BY id LIMIT 50", name)
            if not rows:
                return self.poll
            progressed = waiting = False
            for row in rows:
                now = self.clock.now()
                if row["next_attempt_at"] > now:
                    if row["permanent"]:
                        continue  # failed for good: does not hold up the rest
                    return float((row["next_attempt_at"] - now).total_seconds())
                alerts = [parse_message(Alert, a) for a in json.loads(row["alerts"])]
                outcome = await dispatch_alert(self.db, sink, row["id"], alerts,
                                               attempts=row["attempts"], clock=self.clock)
                if outcome is False:
                    waiting = True  # read again: the row now says when to try it
                    break
                if outcome:
                    self.delivered += 1
                progressed = True
            if not progressed and not waiting:
                return self.poll
