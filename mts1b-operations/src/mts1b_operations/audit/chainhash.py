"""The bytes an audit entry's hash covers, and the hash itself: the one home of the rule.

Why RFC 8785 (the JSON Canonicalization Scheme): an event is JSON, and JSON has many spellings
of one value (key order, spacing, escapes, number forms). JCS picks exactly one, so anyone -
this verifier or an auditor's own tool in another language - recomputes the same bytes from
the same value, and a hash over them proves the value, not one spelling of it.

An entry is the :class:`~mts1b_foundation.AuditRecord` without ``hash`` and ``prev_hash``, in
JCS; the event itself is covered through ``payload_digest`` (SHA-256 of the event's JCS). The
chain hash is ``SHA-256(prev_hash (32 bytes) || entry)``; the first entry's ``prev_hash`` is
:data:`~mts1b_foundation.GENESIS_HASH`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785
from mts1b_foundation import AuditRecord

__all__ = ["audit_chain_hash", "canonical_json", "entry_bytes", "event_digest"]

_LINK_FIELDS = {"hash", "prev_hash"}


def canonical_json(value: Any) -> bytes:
    """``value`` (JSON-able: dicts with string keys, lists, strings, ints, floats, bools, None)
    in RFC 8785 canonical form. Raises ``rfc8785.CanonicalizationError`` (a ``ValueError``)
    for what JSON cannot carry exactly: NaN, infinities, integers beyond 2**53."""
    return rfc8785.dumps(value)


def event_digest(event_bytes: bytes) -> str:
    """``payload_digest`` of an event already in canonical form."""
    return hashlib.sha256(event_bytes).hexdigest()


def entry_bytes(record: AuditRecord) -> bytes:
    """The canonical bytes of ``record``'s entry: every field but the two links."""
    body = {k: v for k, v in record.model_dump(mode="json").items() if k not in _LINK_FIELDS}
    return canonical_json(body)


def audit_chain_hash(prev_hash: str, entry: bytes) -> str:
    """The chain hash of ``entry`` after an entry whose hash is ``prev_hash`` (hex)."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + entry).hexdigest()
