"""The paper venue's state kept in a NATS key/value bucket, so a SIGKILLed paper service
restarts where it was (issue #20: the paper loop's supervisor restarts any service that dies).

Why a KV bucket and not event sourcing from the execution-report stream: the reports do not
carry everything that decides what the venue does next (reservations, a triggered stop, the
random generator's state, marks, last prices), and replaying years of them at every start
costs more than reading the latest state. Why not one value: a paper loop over years ends
hundreds of thousands of orders, which no NATS message holds; the state is split.

Layout, one bucket per venue (:func:`state_bucket`, ``broker-state-<name>``):

``head``
    ``{"generation": g, "parts": n, "sha256": ...}``, written last: the commit point.
``part.<g mod 2>.<i>``
    zlib-compressed JSON, cut in parts that fit a message: the venue's
    :meth:`~mts1b_brokers.paper.PaperClient.snapshot` without ended orders plus the service's
    own state (the bars fed and corporate actions applied per session, the reports not yet
    published). Generation ``g``'s parts are written before the head names them, in the slot
    the head does not name (two slots, so the bucket does not grow with every save), so a
    SIGKILL between any two writes leaves a whole state.
``ended.<sha256 of the order id>``
    an order that ended (filled, canceled, expired, rejected), zlib-compressed JSON (some
    hundreds of bytes: a loop that ends 300,000 orders stores about 150 MB), written once,
    *after* the head
    of the state it ended in: a record is never that of a state a kill lost. The records of
    the orders that ended since the previous save travel in the parts as well, and a load
    writes them again, so a kill between the head and the records loses none.

A state that is present but cannot be read is refused with :class:`VenueStateUnreadable`
naming the bucket and key - never silently replaced by a fresh venue, whose empty accounts
would trade against the other services' books.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from typing import Any

from mts1b_foundation import MtsError
from mts1b_platform.bus import Bus, KeyValue

__all__ = ["VenueStateUnreadable", "VenueStore", "state_bucket"]

_HEAD = "head"
_PART_BYTES = 512 * 1024
"""Largest part (compressed bytes): half the NATS default max_payload of 1 MiB."""


def state_bucket(name: str) -> str:
    """``broker-state-<name>``: the bucket of the paper venue named ``name``."""
    return f"broker-state-{name}"


def _ended_key(order_id: str) -> str:
    """Order ids may hold characters a KV key may not: the key is their hash."""
    return "ended." + hashlib.sha256(order_id.encode()).hexdigest()[:40]


class VenueStateUnreadable(MtsError):
    """The stored state of a paper venue exists but cannot be read (corrupt, partial, of
    another version or venue): the service refuses to start rather than trade from nothing."""

    code = "BROKERS.STATE_UNREADABLE"


class VenueStore:
    """Save and load one paper venue's state (see the module's docs). ``await open(bus)``."""

    def __init__(self, kv: KeyValue, name: str, bucket: str) -> None:
        self._kv = kv
        self.name = name
        self.bucket = bucket
        self.generation = 0  # of the state last read or written
        self._parts = 0
        self._last: bytes | None = None  # the last document written (unchanged: not again)

    @classmethod
    async def open(cls, bus: Bus, name: str) -> VenueStore:
        bucket = state_bucket(name)
        return cls(await bus.kv(bucket, history=1), name, bucket)

    def _unreadable(self, key: str, why: str) -> VenueStateUnreadable:
        return VenueStateUnreadable(
            f"the stored state of paper venue {self.name!r} (bucket {self.bucket!r}, key "
            f"{key!r}) cannot be read: {why}; the venue is not started from nothing (its "
            f"accounts would disagree with every other service's books): repair or delete "
            f"the bucket (serve --reset-state) to start afresh", bucket=self.bucket, key=key)

    async def load(self) -> dict[str, Any] | None:
        """The latest state saved (``None`` when none ever was). Raises
        :class:`VenueStateUnreadable` naming the bucket and key when it cannot be read."""
        raw = await self._kv.get(_HEAD)
        if raw is None:
            return None
        try:
            head = json.loads(raw)
            generation, parts, digest = (int(head["generation"]), int(head["parts"]),
                                         str(head["sha256"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise self._unreadable(_HEAD, f"{type(exc).__name__}: {exc}") from None
        chunks: list[bytes] = []
        for i in range(parts):
            key = f"part.{generation % 2}.{i}"
            chunk = await self._kv.get(key)
            if chunk is None:
                raise self._unreadable(key, "the part is missing")
            chunks.append(chunk)
        blob = b"".join(chunks)
        if hashlib.sha256(blob).hexdigest() != digest:
            raise self._unreadable(f"part.{generation % 2}.*", "the parts do not match the head's "
                                   "sha256")
        try:
            document = zlib.decompress(blob)
            state = json.loads(document)
        except (zlib.error, ValueError) as exc:
            raise self._unreadable(f"part.{generation % 2}.*", f"{type(exc).__name__}: {exc}"
                                   ) from None
        if not isinstance(state, dict) or not isinstance(state.get("core"), dict) or (
                not isinstance(state.get("ended"), list)):
            raise self._unreadable(f"part.{generation % 2}.*", "not a saved state")
        self.generation, self._parts = generation, parts
        self._last = None  # the next save writes, whatever it holds
        await self._put_ended(state["ended"])  # a kill may have come before they were written
        core: dict[str, Any] = state["core"]
        return core

    async def _put_ended(self, ended: list[dict[str, Any]]) -> None:
        for record in ended:
            await self._kv.put(_ended_key(str(record["order_id"])), zlib.compress(
                json.dumps(record, separators=(",", ":")).encode(), 6))

    async def save(self, state: dict[str, Any] | bytes, ended: list[dict[str, Any]]) -> bool:
        """Store ``state`` (a JSON object, or its text) and the records of orders that ended
        since the last save (each with its ``order_id``); whether anything was written (an
        unchanged state is not)."""
        core = state if isinstance(state, bytes) else json.dumps(
            state, separators=(",", ":")).encode()
        if core == self._last and not ended:
            return False
        generation = self.generation + 1
        document = b'{"core":' + core + b',"ended":' + json.dumps(
            ended, separators=(",", ":")).encode() + b"}"
        blob = zlib.compress(document, 1)  # level 1: a save per command must be cheap
        chunks = [blob[i:i + _PART_BYTES] for i in range(0, len(blob), _PART_BYTES)] or [b""]
        for i, chunk in enumerate(chunks):
            await self._kv.put(f"part.{generation % 2}.{i}", chunk)
        await self._kv.put(_HEAD, json.dumps({"generation": generation, "parts": len(chunks),
                                              "sha256": hashlib.sha256(blob).hexdigest()}))
        self.generation, self._parts, self._last = generation, len(chunks), core
        await self._put_ended(ended)
        return True

    async def ended(self, order_id: str) -> dict[str, Any] | None:
        """The record of ``order_id`` if it ended in a stored state (``None`` otherwise)."""
        key = _ended_key(order_id)
        raw = await self._kv.get(key)
        if raw is None:
            return None
        try:
            record = json.loads(zlib.decompress(raw))
            found = record["order_id"]
        except (ValueError, KeyError, TypeError, zlib.error) as exc:
            raise self._unreadable(key, f"{type(exc).__name__}: {exc}") from None
        return dict(record) if found == order_id else None  # another id with that hash

    async def clear(self) -> None:
        """Forget the stored state (``serve --reset-state``): every key is deleted."""
        for key in await self._kv.keys():
            await self._kv.delete(key)
        self.generation, self._parts, self._last = 0, 0, None
