"""Identifiers: time-ordered for things the system creates, deterministic for replays.

Why UUIDv7 for orders: ids that sort by creation time keep database indexes append-only and make
logs readable in order. Why deterministic ids (UUIDv5) for trades: replaying the same fills must
produce the same ``trade_id`` so that "apply each fill once per trade_id" stays true across
restarts and replays.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

__all__ = ["deterministic_id", "new_event_id", "new_order_id", "uuid7", "uuid7_time_ms"]

_NAMESPACE = uuid.UUID("6f1c2b0e-5d1a-4a63-9a57-0b1e2d3c4f50")
_lock = threading.Lock()
_last_ms = 0
_counter = 0


def uuid7() -> uuid.UUID:
    """A RFC 9562 UUIDv7: 48-bit Unix milliseconds, then a 12-bit counter, then random bits.

    Within one process, ids are strictly increasing even when many are made in the same
    millisecond (the counter), and never go backwards if the wall clock does.
    """
    return uuid.UUID(int=_uuid7_int())


def _uuid7_int() -> int:
    global _last_ms, _counter
    with _lock:
        now = time.time_ns() // 1_000_000
        if now > _last_ms:
            _last_ms, _counter = now, int.from_bytes(os.urandom(2), "big") & 0x3FF
        else:
            _counter += 1
            if _counter > 0xFFF:  # counter exhausted: borrow the next millisecond
                _last_ms, _counter = _last_ms + 1, 0
        ms, counter = _last_ms, _counter
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76 | counter << 64
    value |= 0b10 << 62 | rand
    return value


def _uuid7_text() -> str:
    """``str(uuid7())`` without building the UUID object: the OMS makes several per order."""
    h = f"{_uuid7_int():032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid7_time_ms(value: uuid.UUID) -> int:
    """Unix milliseconds encoded in a UUIDv7."""
    if value.version != 7:
        raise ValueError(f"not a UUIDv7: {value}")
    return value.int >> 80


def new_order_id() -> str:
    """An OMS order id: ``ord-`` + UUIDv7 (time-ordered, globally unique)."""
    return f"ord-{_uuid7_text()}"


def new_event_id() -> str:
    """An event id (also the ``Nats-Msg-Id`` of the message announcing it)."""
    return f"evt-{_uuid7_text()}"


def deterministic_id(prefix: str, *parts: object) -> str:
    """``<prefix>-<uuid5>`` of the parts: the same inputs give the same id in every process.

    Used where a replay must reproduce ids, e.g. ``deterministic_id("trd", broker, exec_id)``.
    """
    if not prefix or not prefix.isalnum():
        raise ValueError(f"prefix must be alphanumeric, got {prefix!r}")
    name = "\x1f".join(str(p) for p in parts)
    return f"{prefix}-{uuid.uuid5(_NAMESPACE, name)}"
