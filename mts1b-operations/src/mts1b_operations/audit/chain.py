"""Appending to the chain exactly once, and reading it back.

Why one transaction per batch under an advisory lock: an entry's hash depends on the one
before, so appends must be strictly one after another, even with two recorders running; and
the messages of a batch are acknowledged to JetStream only after the batch committed, so a
crash between the two leaves events that come again - and ``(domain, msg_id)``, looked up
inside the same transaction, makes the second delivery add nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field

import asyncpg
from mts1b_foundation import GENESIS_HASH

from mts1b_operations.audit.db import AuditDb
from mts1b_operations.audit.entries import Entry, Incoming, build_entry, subject_domain

__all__ = ["APPEND_LOCK", "SELECT_ENTRY", "SELECT_LINK", "AppendResult", "AuditChain",
           "ChainHead", "StoredEntry"]

APPEND_LOCK = 0x6D74_6163  # advisory lock id held while appending ("mtac")
_COLUMNS = ("seq", "domain", "msg_id", "subject", "ids", "producer_ts", "recorded_ts",
            "prev_hash", "hash", "entry", "event")
SELECT_ENTRY = ("SELECT seq, domain, msg_id, subject, ids, producer_ts, recorded_ts, "
                "prev_hash, hash, entry, event FROM audit_entries ")
"""The columns of :class:`StoredEntry`; a query appends its WHERE and ORDER BY."""
SELECT_LINK = ("SELECT seq, prev_hash, hash, entry, event, domain, msg_id, subject, "
               "array_to_json(ids)::text, producer_ts::text, recorded_ts::text FROM audit_entries ")
"""A row as ``verify`` reads it: the hashes and bytes, and the indexed columns as text the
database writes - ids as a JSON array, times as the database writes them in UTC
(``2026-12-07 01:06:42.7688+00``; see :meth:`link_batches`) - which is cheaper to compare with
an entry than the values decoded in Python, and cheaper for the database than reshaping the
text into the entry's form (that took it about as long as the rest of the row)."""


@dataclass(frozen=True, slots=True)
class ChainHead:
    """How long the chain is and the hash of its last entry (the genesis hash when empty)."""

    size: int
    hash: str


@dataclass(slots=True)
class AppendResult:
    """What one append did: the entries added, in order, and how many were already there."""

    appended: list[Entry] = field(default_factory=list)
    duplicates: int = 0
    head: ChainHead = ChainHead(0, GENESIS_HASH)


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """One row of the chain as the table holds it now (hashes as hex)."""

    seq: int
    domain: str
    msg_id: str
    subject: str
    ids: tuple[str, ...]
    producer_ts: dt.datetime
    recorded_ts: dt.datetime
    prev_hash: str
    hash: str
    entry: bytes
    event: bytes

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> StoredEntry:
        return cls(row["seq"], row["domain"], row["msg_id"], row["subject"], tuple(row["ids"]),
                   row["producer_ts"], row["recorded_ts"], bytes(row["prev_hash"]).hex(),
                   bytes(row["hash"]).hex(), bytes(row["entry"]), bytes(row["event"]))


class AuditChain:
    """The chain in one :class:`AuditDb` schema."""

    def __init__(self, db: AuditDb) -> None:
        self.db = db

    async def head(self) -> ChainHead:
        row = await self.db.pool.fetchrow(
            "SELECT seq, hash FROM audit_entries ORDER BY seq DESC LIMIT 1")
        return _head(row)

    async def append(self, incoming: Sequence[Incoming], *,
                     now: dt.datetime | None = None) -> AppendResult:
        """Append each message not recorded before, in the order given; one transaction."""
        result = AppendResult()
        if not incoming:
            result.head = await self.head()
            return result
        recorded = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        async with self.db.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
            head = _head(await conn.fetchrow(
                "SELECT seq, hash FROM audit_entries ORDER BY seq DESC LIMIT 1"))
            keys = [(subject_domain(m.subject) or "unknown", m.msg_id) for m in incoming]
            seen = {(r["domain"], r["msg_id"]) for r in await conn.fetch(
                "SELECT e.domain, e.msg_id FROM audit_entries e JOIN unnest($1::text[], "
                "$2::text[]) AS k(domain, msg_id) USING (domain, msg_id)",
                [k[0] for k in keys], [k[1] for k in keys])}
            size, prev = head.size, head.hash
            rows = []
            for key, message in zip(keys, incoming, strict=True):
                if key in seen:
                    result.duplicates += 1
                    continue
                seen.add(key)
                entry = build_entry(message, sequence=size, prev_hash=prev, recorded_ts=recorded)
                rows.append((size, key[0], message.msg_id, message.subject, entry.ids,
                             entry.ts, entry.recorded_ts, bytes.fromhex(prev),
                             bytes.fromhex(entry.hash), entry.entry, entry.event))
                result.appended.append(entry)
                size, prev = size + 1, entry.hash
            if rows:
                await conn.copy_records_to_table("audit_entries", records=rows,
                                                 columns=list(_COLUMNS),
                                                 schema_name=self.db.schema)
            result.head = ChainHead(size, prev)
        return result

    async def entries(self, start: int = 0, stop: int | None = None, *,
                      prefetch: int = 5000) -> AsyncIterator[StoredEntry]:
        """The rows with ``start <= seq < stop``, by ``seq``, read with a cursor."""
        query = SELECT_ENTRY + "WHERE seq >= $1 AND ($2::bigint IS NULL OR seq < $2) ORDER BY seq"
        async with self.db.pool.acquire() as conn, conn.transaction(readonly=True):
            async for row in conn.cursor(query, start, stop, prefetch=prefetch):
                yield StoredEntry.from_row(row)

    async def link_batches(self, start: int = 0, stop: int | None = None, *,
                           batch: int = 1000) -> AsyncGenerator[list[asyncpg.Record], None]:
        """The rows with ``start <= seq < stop`` as :data:`SELECT_LINK` reads them, by ``seq``,
        in lists of ``batch``.

        Why the next batch is asked for before this one is handed over: the database then
        reads and encodes it on its own core while the caller checks this one. Why sorting is
        switched off: planned for all its rows (as a portal is), a read of most of a large
        table is a parallel scan and a sort on disk, and the first row comes after seconds
        (3 s for a million); the primary key's index hands them over in order at once. JIT
        compiling is switched off too: it only delays the first row of a plain read."""
        query = SELECT_LINK + "WHERE seq >= $1 AND ($2::bigint IS NULL OR seq < $2) ORDER BY seq"
        async with self.db.pool.acquire() as conn, conn.transaction(readonly=True):
            await conn.execute("SET LOCAL TimeZone TO 'UTC'; SET LOCAL DateStyle TO 'ISO'; "
                               "SET LOCAL enable_sort TO off; SET LOCAL jit TO off")
            cursor = await conn.cursor(query, start, stop)
            ahead = asyncio.ensure_future(cursor.fetch(batch))
            try:
                while rows := await ahead:
                    ahead = asyncio.ensure_future(cursor.fetch(batch))
                    await asyncio.sleep(0)  # let the FETCH go out before the caller works
                    yield rows
            finally:
                if not ahead.done():
                    await asyncio.wait([ahead])
                if not ahead.cancelled():
                    ahead.exception()  # the caller stopped first: what it raised is moot

    async def entry(self, seq: int) -> StoredEntry | None:
        row = await self.db.pool.fetchrow(
            SELECT_ENTRY + "WHERE seq = $1", seq)
        return None if row is None else StoredEntry.from_row(row)

    async def mentioning(self, subject_id: str) -> list[StoredEntry]:
        """Every entry whose event mentions ``subject_id``, in chain order."""
        rows = await self.db.pool.fetch(
            SELECT_ENTRY + "WHERE ids @> ARRAY[$1]::text[] ORDER BY seq", subject_id)
        return [StoredEntry.from_row(r) for r in rows]

    async def entry_bytes(self, stop: int | None = None) -> list[bytes]:
        """The entry bytes of ``seq < stop`` (all), in table order: what Merkle leaves hash."""
        rows = await self.db.pool.fetch(
            "SELECT entry FROM audit_entries WHERE ($1::bigint IS NULL OR seq < $1) "
            "ORDER BY seq", stop)
        return [bytes(r["entry"]) for r in rows]


def _head(row: asyncpg.Record | None) -> ChainHead:
    if row is None:
        return ChainHead(0, GENESIS_HASH)
    return ChainHead(int(row["seq"]) + 1, bytes(row["hash"]).hex())
