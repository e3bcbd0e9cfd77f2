"""The outbox relay: publishes committed events from PostgreSQL to NATS, at least once.

Every change the store commits carries its outbox rows; the store hands them to the relay right
after the commit (:meth:`OrderStore.on_commit`), and the relay publishes them in commit order, each
with ``Nats-Msg-Id`` = its ``msg_id`` (the event id), then deletes them - the mark of
"published". Publishing from memory saves reading the rows back: a relayed batch costs one
statement instead of three (begin, claim, commit), which on a busy OMS was as many round trips
to PostgreSQL as the orders themselves made.

The running relay (:meth:`OutboxRelay.run`) also gathers the marks of several batches into one
delete (``mark_linger_seconds``, or a full batch, or when it goes idle): under load it relayed
a batch every few orders, and each batch's own delete was a third of the OMS's statements and
commits. A mark only saves a second copy of a row that is already out, so holding it for a
moment risks nothing more than the crash case below; it is written before any sweep reads the
table, so this relay never takes its own published rows for unpublished ones.

The table stays the system of record. Rows this process did not hand over - left unpublished by
a crash, written by another process (``mts mts1b-oms halt``), or dropped from memory after a
failed publish - are found by a sweep of rows still unmarked some time after their commit
(``sweep_after_seconds``). A row can therefore go out twice (published, then the process dies
before the mark; or two OMS instances sweep the same row): JetStream's duplicate window drops
the second copy by its ``Nats-Msg-Id``, so no event is lost and none is delivered twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections import deque
from typing import Any, Protocol

from mts1b_foundation import parse_message
from mts1b_foundation.subjects import model_for_subject
from mts1b_foundation.wire import WireModel
from mts1b_platform.logging import get_logger

from mts1b_oms.orderstore import OrderStore, OutboxRow
from mts1b_oms.tasks import cancel_and_wait
from mts1b_oms.tradingstate import parse_change

__all__ = ["OutboxRelay"]

_log = get_logger("mts1b_oms.outbox")
_MEMORY_ROWS = 100_000  # beyond this the oldest rows are left to the sweep
_STOP_SECONDS = 1.0
"""How long :meth:`OutboxRelay.stop` waits for the relay loop to end before (again) cancelling."""


def _decode(subject: str, payload: bytes) -> WireModel:
    if subject == "mts.v1.oms.state.changed":
        return parse_change(payload)
    return parse_message(model_for_subject(subject), payload)


class _Publisher(Protocol):
    async def publish(self, subject: str, message: WireModel, *,
                      msg_id: str | None = None) -> None: ...


class OutboxRelay:
    """Moves outbox rows to the bus. :meth:`notify` after a commit wakes it at once.

    Created for a store, it receives that store's committed rows from then on; :meth:`stop`
    (or :meth:`close`) detaches it.
    """

    def __init__(self, store: OrderStore, publisher: _Publisher, *, batch: int = 500,
                 idle_seconds: float = 0.2, linger_seconds: float = 0.005,
                 sweep_after_seconds: float = 1.0, mark_linger_seconds: float = 0.05) -> None:
        self.store = store
        self.publisher = publisher
        self.batch = batch
        self.idle_seconds = idle_seconds
        self.linger_seconds = linger_seconds
        self.sweep_after = dt.timedelta(seconds=sweep_after_seconds)
        self.mark_linger = mark_linger_seconds
        self._unmarked: list[str] = []  # published by run(), not yet deleted
        self._unmarked_since = 0.0  # loop time the oldest of them was published
        self._fresh: deque[OutboxRow] = deque(maxlen=_MEMORY_ROWS)
        self._detach = store.on_commit(self._fresh.extend)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_sweep = float("-inf")  # loop time
        self._stopping = False
        self.published = 0

    def notify(self) -> None:
        self._wake.set()

    async def publish_pending(self, *, sweep_after: dt.timedelta | None = None) -> int:
        """Publish one batch: rows handed over by the store, else rows the sweep finds (those
        committed at least ``sweep_after`` ago, default ``sweep_after_seconds``). Returns how
        many went out. If publishing fails, the rows are kept for the next try. The rows are
        marked published before it returns (with any marks :meth:`run` still holds)."""
        return await self._next(sweep_after, defer=False)

    async def _next(self, sweep_after: dt.timedelta | None, *, defer: bool) -> int:
        rows = [self._fresh.popleft() for _ in range(min(self.batch, len(self._fresh)))]
        if not rows:
            return await self.sweep(sweep_after)
        return await self._relay(rows, swept=False, defer=defer)

    async def flush_marks(self) -> None:
        """Delete the rows published and not marked yet (one statement). If that fails the
        marks are dropped, as a process that dies before its mark drops them: the rows stay
        in the table and the sweep publishes them again under the same ``Nats-Msg-Id``."""
        ids, self._unmarked = self._unmarked, []
        if ids:
            await self.store.mark_published(ids)

    def _marks_due(self) -> bool:
        return bool(self._unmarked) and (
            len(self._unmarked) >= self.batch
            or asyncio.get_running_loop().time() - self._unmarked_since >= self.mark_linger)

    async def sweep(self, sweep_after: dt.timedelta | None = None) -> int:
        """Publish one batch of the rows found unpublished in the table (committed at least
        ``sweep_after`` ago, default ``sweep_after_seconds``); return how many. Marks still
        held are written first: a row already out is not read as unpublished."""
        await self.flush_marks()
        self._last_sweep = asyncio.get_running_loop().time()
        rows = await self.store.unpublished(
            self.batch, older_than=self.sweep_after if sweep_after is None else sweep_after)
        return await self._relay(rows, swept=True) if rows else 0

    async def _relay(self, rows: list[OutboxRow], *, swept: bool, defer: bool = False) -> int:
        try:
            await self._publish(rows)
        except BaseException:
            if not swept:  # in front again, in order (the table still has them too)
                self._fresh.extendleft(reversed(rows))
            raise
        if not self._unmarked:
            self._unmarked_since = asyncio.get_running_loop().time()
        self._unmarked.extend(msg_id for msg_id, _subject, _payload in rows)
        self.published += len(rows)
        if not defer or self._marks_due():
            await self.flush_marks()
        return len(rows)

    async def _publish(self, rows: list[OutboxRow]) -> None:
        batch: Any = getattr(self.publisher, "publish_batch_bytes", None)
        if batch is not None:  # the platform Bus: stored bytes go out as they are, and the
            # stream's acks are collected together instead of one round trip each
            await batch([(subject, payload, {"Nats-Msg-Id": msg_id,
                                             "Content-Type": "application/json"})
                         for msg_id, subject, payload in rows])
            return
        for msg_id, subject, payload in rows:
            await self.publisher.publish(subject, _decode(subject, payload), msg_id=msg_id)

    async def drain(self) -> int:
        """Publish until nothing is left, swept rows of any age included (used at shutdown
        and in tests)."""
        total = 0
        while n := await self.publish_pending(sweep_after=dt.timedelta(0)):
            total += n
        return total

    async def run(self) -> None:
        """Relay until :meth:`stop`: on :meth:`notify` (after ``linger_seconds``, so that events
        committed close together go out in one batch), and every ``idle_seconds`` in any case;
the marks of what it published are written together (see the module's docstring).

        Why a stop flag and not only a cancel: a cancel can be lost on the way - Python 3.11's
        ``asyncio.wait_for`` returns the inner result and drops a cancel that arrives as the
        wake-up event is set (a commit's :meth:`notify` at shutdown), and a library that turns
        the ``CancelledError`` into an error of its own lands in the retry branch. Either way
        the loop went on relaying and :meth:`stop` waited on it until its caller gave up (the
        OMS service's shutdown stalled 20-33 s in 2 of 15 runs of a fuzz test)."""
        while not self._stopping:
            try:  # a short batch means there is nothing more for now
                while await self._next(None, defer=True) >= self.batch:
                    pass
                if self._marks_due():
                    await self.flush_marks()
                # Under steady load the store always has fresh rows and publish_pending never
                # needs to sweep: sweep anyway now and then, for rows a crash left behind.
                since = asyncio.get_running_loop().time() - self._last_sweep
                if since >= 2 * self.sweep_after.total_seconds():
                    while await self.sweep() >= self.batch:
                        pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep relaying: the rows stay until published
                task = asyncio.current_task()
                if self._stopping or (task is not None and task.cancelling()):
                    return  # a cancel turned into this error on the way: we are stopping
                _log.warning("outbox relay failed; will retry", error=repr(exc))
                await asyncio.sleep(self.idle_seconds)
            if self._stopping:
                return
            wait = self.idle_seconds
            if self._unmarked:  # wake in time to write the marks held
                age = asyncio.get_running_loop().time() - self._unmarked_since
                wait = max(0.0, min(wait, self.mark_linger - age))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            self._wake.clear()
            if self.linger_seconds > 0:  # let the commits of the next few orders join the batch:
                await asyncio.sleep(self.linger_seconds)  # a batch costs about what a row does

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        """Stop relaying, publish what is left, and detach from the store. The loop is told to
        stop (:meth:`run` says why a flag) and woken; a batch in flight gets
        ``_STOP_SECONDS`` to finish, then the task is cancelled, and cancelled again while a
        cancel is swallowed on the way."""
        task, self._task = self._task, None
        if task is not None:
            self._stopping = True
            self._wake.set()
            await asyncio.wait({task}, timeout=_STOP_SECONDS)
            await cancel_and_wait([task], patience=_STOP_SECONDS)
        with contextlib.suppress(Exception):
            await self.drain()
        self.close()

    def close(self) -> None:
        """Stop receiving the store's committed rows (those still unpublished stay in the
        table for the sweep of whichever relay runs next)."""
        self._detach()
