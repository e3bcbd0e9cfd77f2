"""The recorder service: every domain event into the chain, once, then checkpointed.

Why a pull consumer of its own rather than :meth:`Bus.consume`: the chain must hold the bytes
that travelled (the bus's consumer hands over decoded models, and would dead-letter an event
the recorder must keep), and appending one event per transaction would cap the recorder far
below the rate the services publish at. So each stream's consumer fetches a batch, the batch
is appended in one transaction, and only then are its messages acknowledged: a SIGKILL at any
point leaves messages that come again and are found already recorded by their
``Nats-Msg-Id``, or messages not yet recorded that come again - never a loss, never a second
entry. A graceful stop (SIGTERM, SIGINT) records the batch in hand and then signs a last
checkpoint of whatever no checkpoint covers yet, as the periodic one would.

Streams: every domain's but the datalake's (market data: bars, quotes and trades at a rate no
audit needs, and kept by the datalake itself); of the operations stream, everything but the
audit chain's own checkpoints and the services' heartbeats (a pulse every few seconds from
every service says nothing that happened; the alert router keeps the last one of each).

The recorder beats itself, as ``mts1b-operations-audit`` (:data:`HEARTBEAT_SERVICE`), every
``RecorderOptions.heartbeat_interval`` seconds while it serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import nats.errors
import nats.js.errors
from mts1b_foundation import STREAMS, Clock, Severity, SystemClock
from mts1b_platform.alerts import raise_alert
from mts1b_platform.bus import Bus
from mts1b_platform.heartbeat import DEFAULT_HEARTBEAT_INTERVAL, HEARTBEAT_SUBJECTS, Heartbeater
from mts1b_platform.logging import get_logger
from mts1b_platform.signing import SigningKey
from nats.js import api

from mts1b_operations.audit.chain import AppendResult, AuditChain
from mts1b_operations.audit.checkpoints import (
    CHECKPOINT_SUBJECT,
    put_checkpoint_object,
    sign_checkpoint,
    store_checkpoint,
    stored_checkpoints,
    write_checkpoint_file,
)
from mts1b_operations.audit.db import AuditDb
from mts1b_operations.audit.entries import Incoming
from mts1b_operations.audit.merkle import CompactTree, leaf_hash

__all__ = ["HEARTBEAT_SERVICE", "RECORDED_DOMAINS", "Recorder", "RecorderOptions",
           "message_key", "run_recorder"]

_log = get_logger("mts1b_operations.audit.recorder")
RECORDED_DOMAINS = tuple(d for d in STREAMS if d != "datalake")
HEARTBEAT_SERVICE = "mts1b-operations-audit"
"""The name the recorder beats as: ``mts.v1.operations.heartbeats.mts1b-operations-audit``."""
_NOT_RECORDED = ("mts.v1.operations.audit.", HEARTBEAT_SUBJECTS.removesuffix("*"))
"""The chain's own checkpoints and every service's heartbeats: acknowledged, not recorded."""
_MAX_KEY = 512


@dataclass
class RecorderOptions:
    """How the recorder runs (``mts mts1b-operations serve audit``)."""

    dsn: str
    schema: str
    namespace: str | None = None
    nats_url: str | None = None
    durable: str = "audit_recorder"
    batch: int = 500
    ack_wait: float = 30.0
    signing_key: SigningKey | None = None
    checkpoint_dir: Path | None = None
    checkpoint_every: int = 1000
    checkpoint_interval: float = 60.0
    skew_threshold: float = 2.0
    skew_alert_every: float = 60.0
    domains: Sequence[str] = RECORDED_DOMAINS
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    heartbeat_instance: str = "default"


def message_key(headers: dict[str, str] | None, stream: str, stream_seq: Callable[[], int]
                ) -> str:
    """The key that makes a message one entry: its ``Nats-Msg-Id``; a message published
    without one is keyed by its place in its stream (``stream_seq()``, the same on every
    redelivery); an id too long for the record by its SHA-256."""
    key = (headers or {}).get("Nats-Msg-Id") or f"js:{stream}:{stream_seq()}"
    if len(key) > _MAX_KEY:
        key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key


@dataclass
class _Stats:
    appended: int = 0
    duplicates: int = 0
    checkpoints: int = 0
    skew_alerts: int = 0
    last_alert: dict[str, float] = field(default_factory=dict)


class Recorder:
    """The chain, its Merkle frontier and its checkpoints, fed by :meth:`record`."""

    def __init__(self, bus: Bus, db: AuditDb, opts: RecorderOptions, *,
                 clock: Clock | None = None) -> None:
        self.bus = bus
        self.db = db
        self.chain = AuditChain(db)
        self.opts = opts
        self.clock = clock or SystemClock()
        self.stats = _Stats()
        self.tree = CompactTree()
        self.last_checkpoint = 0
        self.last_checkpoint_at = time.monotonic()
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        """The Merkle frontier of the chain as stored, and its last checkpoint."""
        self.tree = CompactTree()
        for entry in await self.chain.entry_bytes():
            self.tree.append(leaf_hash(entry))
        stored = await stored_checkpoints(self.db)
        self.last_checkpoint = stored[-1].tree_size if stored else 0

    async def record(self, messages: Sequence[Incoming]) -> AppendResult:
        """Append ``messages`` (one transaction), grow the tree, checkpoint when due."""
        async with self._lock:
            result = await self.chain.append(messages, now=self.clock.now())
            if result.head.size - len(result.appended) != self.tree.size:
                await self.load()  # another recorder appended meanwhile
            else:
                for entry in result.appended:
                    self.tree.append(leaf_hash(entry.entry))
            self.stats.appended += len(result.appended)
            self.stats.duplicates += result.duplicates
            if self.tree.size - self.last_checkpoint >= self.opts.checkpoint_every:
                await self._checkpoint(result.head.hash)
        await self._check_skew(result)
        return result

    async def checkpoint_if_idle(self) -> None:
        """Checkpoint entries older than the interval that no checkpoint covers yet."""
        async with self._lock:
            if time.monotonic() - self.last_checkpoint_at >= self.opts.checkpoint_interval:
                await self._checkpoint_waiting()

    async def checkpoint_on_stop(self) -> None:
        """Checkpoint the entries no checkpoint covers yet, now, when a key is configured:
        on a graceful stop, after the last batch committed. Otherwise a recorder stopped
        before the interval ran out (a deploy, a short run) would leave its last entries
        unanchored until another one ran that long."""
        async with self._lock:
            if self.opts.signing_key is not None:
                await self._checkpoint_waiting()

    async def _checkpoint_waiting(self) -> None:
        if self.tree.size > self.last_checkpoint:
            head = await self.chain.head()
            if head.size != self.tree.size:
                await self.load()
            await self._checkpoint(head.hash)

    async def _checkpoint(self, chain_hash: str) -> None:
        self.last_checkpoint_at = time.monotonic()
        key = self.opts.signing_key
        if key is None:
            return
        checkpoint = sign_checkpoint(key, log=self.db.schema, tree_size=self.tree.size,
                                     root=self.tree.root(), chain_hash=chain_hash,
                                     now=self.clock.now())
        await store_checkpoint(self.db, checkpoint)
        self.last_checkpoint = checkpoint.tree_size
        self.stats.checkpoints += 1
        if self.opts.checkpoint_dir is not None:
            try:
                write_checkpoint_file(self.opts.checkpoint_dir, checkpoint)
            except OSError as exc:
                _log.error("checkpoint not written", tree_size=checkpoint.tree_size,
                           error=type(exc).__name__)
        try:
            await self.bus.publish_acked(CHECKPOINT_SUBJECT, checkpoint,
                                         msg_id=f"ckpt-{self.db.schema}-{checkpoint.tree_size}")
            await put_checkpoint_object(self.bus, checkpoint)
        except Exception as exc:  # the table and the file keep it; the log says what failed
            _log.error("checkpoint not published", tree_size=checkpoint.tree_size,
                       error=type(exc).__name__)
        _log.info("audit checkpoint", tree_size=checkpoint.tree_size,
                  root=checkpoint.root_hash)

    async def _check_skew(self, result: AppendResult) -> None:
        """Alert when a producer's clock and the recorder's differ by more than the threshold
        (at most one alert per producer per ``skew_alert_every`` seconds)."""
        threshold = self.opts.skew_threshold
        if threshold <= 0:
            return
        worst: dict[str, float] = {}
        for entry in result.appended:
            skew = (entry.recorded_ts - entry.ts).total_seconds()
            if abs(skew) > threshold and abs(skew) > abs(worst.get(entry.actor, 0.0)):
                worst[entry.actor] = skew
        now = time.monotonic()
        for actor, skew in worst.items():
            if now - self.stats.last_alert.get(actor, -1e18) < self.opts.skew_alert_every:
                continue
            self.stats.last_alert[actor] = now
            self.stats.skew_alerts += 1
            await raise_alert(
                self.bus, "mts1b-operations",
                f"clock skew: {actor}'s events are stamped {skew:+.3f} s from the audit "
                f"recorder's clock (threshold {threshold:g} s)", severity=Severity.WARNING,
                context={"producer": actor, "skew_s": f"{skew:.3f}"})


async def _consume(recorder: Recorder, domain: str, stop: asyncio.Event) -> None:
    """One stream's pull consumer: fetch a batch, record it, acknowledge it; until ``stop``."""
    bus, opts = recorder.bus, recorder.opts
    stream = bus.stream_for(domain)
    config = api.ConsumerConfig(durable_name=opts.durable, ack_policy=api.AckPolicy.EXPLICIT,
                                deliver_policy=api.DeliverPolicy.ALL, ack_wait=opts.ack_wait,
                                max_deliver=-1, max_ack_pending=max(opts.batch * 4, 1000))
    await bus.js.add_consumer(stream, config)
    psub = await bus.js.pull_subscribe_bind(durable=opts.durable, stream=stream)
    try:
        await _fetch_loop(recorder, psub, stream, stop)
    finally:
        with contextlib.suppress(nats.errors.Error):
            await psub.unsubscribe()


async def _fetch_loop(recorder: Recorder, psub: Any, stream: str, stop: asyncio.Event) -> None:
    """Fetch, record, acknowledge - with the next fetch already on its way while a batch is
    recorded, so that the bus's round trip overlaps the database's commit (10-35% more
    events a second, bench/RESULTS.md). When ``stop`` comes, the fetch on its way is finished
    and recorded too, so that nothing waits for its redelivery."""
    ahead = asyncio.ensure_future(_fetch(recorder, psub, stream))
    try:
        while True:
            msgs = await ahead
            if not stop.is_set():
                ahead = asyncio.ensure_future(_fetch(recorder, psub, stream))
            if msgs:
                await _record_and_ack(recorder, msgs, stream)
            if stop.is_set() and ahead.done():
                return
    finally:
        if not ahead.done():  # cancelled from outside: its messages come again
            ahead.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ahead


async def _fetch(recorder: Recorder, psub: Any, stream: str) -> list[Any]:
    try:
        msgs: list[Any] = await psub.fetch(recorder.opts.batch, timeout=1.0)
    except (nats.errors.TimeoutError, TimeoutError):
        return []
    except nats.errors.Error as exc:
        _log.warning("fetch failed", stream=stream, error=type(exc).__name__)
        await asyncio.sleep(1.0)
        return []
    return msgs


async def _record_and_ack(recorder: Recorder, msgs: list[Any], stream: str) -> None:
    bus = recorder.bus
    incoming = []
    for msg in msgs:
        subject = bus.logical_subject(msg.subject)
        if subject.startswith(_NOT_RECORDED):
            continue  # checkpoints and heartbeats: acknowledged below, not recorded
        incoming.append(Incoming(subject, msg.data, msg.headers or {},
                                 message_key(msg.headers, stream,
                                             functools.partial(_stream_seq, msg))))
    try:
        await recorder.record(incoming)
    except Exception as exc:  # not acknowledged: JetStream delivers them again
        _log.error("batch not recorded; it will be delivered again", stream=stream,
                   messages=len(incoming), error=type(exc).__name__)
        await asyncio.sleep(1.0)
        return
    for msg in msgs:
        with contextlib.suppress(nats.errors.Error):
            await msg.ack()


def _stream_seq(msg: Any) -> int:
    return int(msg.metadata.sequence.stream)


async def _checkpoints(recorder: Recorder, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=min(recorder.opts.checkpoint_interval,
                                                            5.0))
        try:
            await recorder.checkpoint_if_idle()
        except Exception as exc:
            _log.error("checkpoint failed", error=type(exc).__name__)


async def open_audit_db(dsn: str, schema: str) -> AuditDb:
    """The schema as the recorder's insert-only role finds it, or created by its owner."""
    from mts1b_operations.audit.errors import AuditError, AuditInputError

    try:
        return await AuditDb.open_existing(dsn, schema=schema)
    except AuditInputError:
        raise  # a malformed DSN or schema name: creating the schema would fail the same way
    except AuditError:
        pass
    try:
        return await AuditDb.open(dsn, schema=schema)
    except asyncpg.PostgresError as exc:  # an insert-only role cannot create the schema
        raise AuditError(f"cannot create the audit schema {schema!r} ({type(exc).__name__}): "
                         "run `mts mts1b-operations audit init` as its owner",
                         schema=schema) from None


async def run_recorder(opts: RecorderOptions, *, ready: asyncio.Event | None = None,
                       stop: asyncio.Event | None = None) -> Recorder:
    """Run until SIGTERM/SIGINT (or ``stop``); returns the recorder (its stats)."""
    from mts1b_platform.shutdown import stop_on_signals

    overrides: dict[str, Any] = {"name": "mts1b-operations-audit"}
    if opts.namespace:
        overrides["namespace"] = opts.namespace
    if opts.nats_url:
        overrides["url"] = opts.nats_url
    bus = await Bus.connect(**overrides)
    db = await open_audit_db(opts.dsn, opts.schema)
    done = stop or asyncio.Event()
    try:
        # the operations stream also when it is not recorded: the heartbeats go there
        await bus.declare_streams(list(dict.fromkeys([*opts.domains, "operations"])))
        recorder = Recorder(bus, db, opts)
        await recorder.load()
        stop_on_signals(done)
        tasks = [asyncio.create_task(_consume(recorder, d, done)) for d in opts.domains]
        tasks.append(asyncio.create_task(_checkpoints(recorder, done)))
        _log.info("audit recorder serving", schema=opts.schema, entries=recorder.tree.size,
                  domains=",".join(opts.domains), namespace=opts.namespace or "")
        async with Heartbeater(bus, HEARTBEAT_SERVICE, instance=opts.heartbeat_instance,
                               interval_s=opts.heartbeat_interval):
            if ready is not None:
                ready.set()
            waiter = asyncio.create_task(done.wait())
            await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
            done.set()  # a consumer that failed stops the others too
            waiter.cancel()
        # each consumer stops after the batch in hand; a failure is raised, not swallowed
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome
        try:  # every batch is committed: anchor them all, through the periodic path
            await recorder.checkpoint_on_stop()
        except Exception as exc:  # the entries stay, unanchored until the next checkpoint
            _log.error("final checkpoint failed", error=type(exc).__name__)
        return recorder
    finally:
        await bus.drain()
        await db.close()
