"""The outbox relay: publishes committed events from PostgreSQL to NATS, at least once.

A batch of rows is claimed and marked published in one open transaction, published, and only
then committed. Each row goes out with ``Nats-Msg-Id`` = its ``msg_id`` (the event id), so when
the relay crashes after publishing but before the commit, the rows are still unpublished in the
database and their re-publication is dropped by JetStream's duplicate window instead of
creating a second event. Rows are claimed with ``FOR UPDATE SKIP LOCKED``, so several OMS
instances can relay from one database.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol

from mts1b_foundation import parse_message
from mts1b_foundation.subjects import model_for_subject
from mts1b_foundation.wire import WireModel
from mts1b_platform.logging import get_logger

from mts1b_oms.store import Store
from mts1b_oms.tradingstate import parse_change

__all__ = ["OutboxRelay"]


def _decode(subject: str, payload: bytes) -> WireModel:
    if subject == "mts.v1.oms.state.changed":
        return parse_change(payload)
    return parse_message(model_for_subject(subject), payload)

_log = get_logger("mts1b_oms.outbox")


class _Publisher(Protocol):
    async def publish(self, subject: str, message: WireModel, *,
                      msg_id: str | None = None) -> None: ...


class OutboxRelay:
    """Moves outbox rows to the bus. :meth:`notify` after a commit wakes it at once."""

    def __init__(self, store: Store, publisher: _Publisher, *, batch: int = 500,
                 idle_seconds: float = 0.2, linger_seconds: float = 0.005) -> None:
        self.store = store
        self.publisher = publisher
        self.batch = batch
        self.idle_seconds = idle_seconds
        self.linger_seconds = linger_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.published = 0

    def notify(self) -> None:
        self._wake.set()

    async def publish_pending(self) -> int:
        """Publish one batch of unpublished rows; return how many went out."""
        async with self.store.pool.acquire() as conn, conn.transaction():
            rows = await self.store.claim_outbox(conn, self.batch)
            if not rows:
                return 0
            batch: Any = getattr(self.publisher, "publish_batch_bytes", None)
            if batch is not None:  # the platform Bus: stored bytes go out as they are, and
                # the stream's acks are collected together instead of one round trip each
                await batch([(subject, payload, {"Nats-Msg-Id": msg_id,
                                                 "Content-Type": "application/json"})
                             for _id, msg_id, subject, payload in rows])
            else:
                for _id, msg_id, subject, payload in rows:
                    await self.publisher.publish(subject, _decode(subject, payload),
                                                 msg_id=msg_id)
        self.published += len(rows)
        return len(rows)

    async def drain(self) -> int:
        """Publish until nothing is left (used at shutdown and in tests)."""
        total = 0
        while n := await self.publish_pending():
            total += n
        return total

    async def run(self) -> None:
        """Relay forever: on :meth:`notify` (after ``linger_seconds``, so that events committed
        close together go out in one batch), and every ``idle_seconds`` in any case."""
        while True:
            try:  # a short batch means the outbox is empty: no extra claim to find that out
                while await self.publish_pending() >= self.batch:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep relaying: rows stay in the outbox until published
                _log.warning("outbox relay failed; will retry", error=repr(exc))
                await asyncio.sleep(self.idle_seconds)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.idle_seconds)
            self._wake.clear()
            if self.linger_seconds > 0:  # let the commits of the next few orders join the batch:
                await asyncio.sleep(self.linger_seconds)  # a batch costs about what a row does

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.drain()
