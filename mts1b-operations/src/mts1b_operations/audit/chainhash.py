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
import json
from typing import Any

import rfc8785
from mts1b_foundation import AuditRecord

__all__ = ["SORTED_JSON", "audit_chain_hash", "canonical_event", "canonical_json",
           "entry_bytes", "event_digest"]

_LINK_FIELDS = {"hash", "prev_hash"}
_MAX_SAFE = 2**53 - 1


class _NotPlain(Exception):
    """The payload holds something the fast path does not canonicalize (a float, a large
    integer): RFC 8785's own serializer takes it."""


SORTED_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
"""``json.dumps`` with sorted keys and no spaces, made once (``dumps`` with options builds an
encoder per call): RFC 8785 for plain values, see :func:`canonical_event`."""


def canonical_json(value: Any) -> bytes:
    """``value`` (JSON-able: dicts with string keys, lists, strings, ints, floats, bools, None)
    in RFC 8785 canonical form. Raises ``rfc8785.CanonicalizationError`` (a ``ValueError``)
    for what JSON cannot carry exactly: NaN, infinities, integers beyond 2**53."""
    return rfc8785.dumps(value)


def _reject_float(text: str) -> Any:
    raise _NotPlain(text)


def _safe_int(text: str) -> int:
    value = int(text)
    if abs(value) > _MAX_SAFE:
        raise _NotPlain(text)
    return value


_PLAIN = json.JSONDecoder(parse_float=_reject_float, parse_int=_safe_int,
                          parse_constant=_reject_float)


def canonical_event(payload: bytes) -> tuple[Any, bytes]:
    """The JSON value of ``payload`` and its RFC 8785 bytes. Raises ``ValueError`` for bytes
    that are not JSON or hold what RFC 8785 refuses.

    Why a fast path: the recorder canonicalizes every event, and the pure-Python serializer
    costs more than the rest of an append together. For the common event - ASCII text with
    no ``\\u`` escape, no float, integers within 2**53 - Python's ``json.dumps`` with sorted
    keys and no spaces writes exactly RFC 8785's bytes: keys are ASCII, so sorting by code
    point is sorting by UTF-16 unit; strings escape the same characters the same way
    (lower-case ``\\u00xx`` for control characters, nothing else); integers print the same.
    Anything else goes through ``rfc8785``, and a test compares the two on random values.
    """
    if payload.isascii() and b"\\u" not in payload:
        try:
            value = _PLAIN.decode(payload.decode("ascii"))
        except _NotPlain:
            pass
        else:
            return value, SORTED_JSON.encode(value).encode()
    value = json.loads(payload)
    return value, canonical_json(value)


def event_digest(event_bytes: bytes) -> str:
    """``payload_digest`` of an event already in canonical form."""
    return hashlib.sha256(event_bytes).hexdigest()


def entry_bytes(record: AuditRecord) -> bytes:
    """The canonical bytes of ``record``'s entry: every field but the two links.

    The body's keys are the model's ASCII field names and its values strings, integers below
    2**53, lists of strings and nulls, for which sorted ``json.dumps`` is RFC 8785 exactly (see
    :func:`canonical_event`); a test holds the two equal."""
    body = {k: v for k, v in record.model_dump(mode="json").items() if k not in _LINK_FIELDS}
    return SORTED_JSON.encode(body).encode()


def audit_chain_hash(prev_hash: str, entry: bytes) -> str:
    """The chain hash of ``entry`` after an entry whose hash is ``prev_hash`` (hex)."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + entry).hexdigest()
