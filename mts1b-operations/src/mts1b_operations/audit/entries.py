"""From a message on the bus to an audit entry: its ids, actor, action, times and bytes.

Why the entry is derived here and not by each producer: the recorder must take every domain's
events as they are, including those of services written before the audit chain existed, so it
reads what the event itself says - each ``*_id`` field (wherever it sits in the JSON), its
``actor`` or ``source``, its time - and nothing a producer would have to remember to add.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from mts1b_foundation import AuditRecord

from mts1b_operations.audit.chainhash import (
    SORTED_JSON,
    audit_chain_hash,
    canonical_event,
    canonical_json,
    event_digest,
)

__all__ = ["MAX_IDS", "Entry", "Incoming", "build_entry", "event_value", "mentioned_ids",
           "subject_domain"]

MAX_IDS = 256
_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@=+-]{0,127}$")
_MODEL = re.compile(r"^([A-Za-z][A-Za-z0-9]{0,127})/")
_TIME_FIELDS = ("ts", "timestamp", "created_at", "as_of")


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message as the recorder received it: logical subject, payload, headers, key."""

    subject: str
    payload: bytes
    headers: Mapping[str, str]
    msg_id: str


@dataclass(frozen=True, slots=True)
class Entry:
    """An entry ready to append: the wire record's fields, and the two byte strings the table
    keeps.

    Why the record is made on demand: constructing a model costs more than hashing the entry,
    and the recorder's path needs only a few of its fields."""

    fields: dict[str, Any]
    entry: bytes
    event: bytes

    @property
    def record(self) -> AuditRecord:
        """The :class:`~mts1b_foundation.AuditRecord` (built from checked parts, not
        validated again)."""
        return AuditRecord.model_construct(**self.fields)

    @property
    def hash(self) -> str:
        return str(self.fields["hash"])

    @property
    def ids(self) -> list[str]:
        return list(self.fields["ids"])

    @property
    def actor(self) -> str:
        return str(self.fields["actor"])

    @property
    def ts(self) -> dt.datetime:
        value: dt.datetime = self.fields["ts"]
        return value

    @property
    def recorded_ts(self) -> dt.datetime:
        value: dt.datetime = self.fields["recorded_ts"]
        return value


def subject_domain(subject: object) -> str | None:
    """The domain token of a subject (``oms`` in ``mts.v1.oms.orders.accepted``), or None."""
    tokens = str(subject).split(".")
    return tokens[2] if len(tokens) > 2 else None


def _walk(value: Any) -> Iterator[str]:
    # Only containers are descended into: a generator per scalar value cost more than the
    # rest of building an entry.
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(item, str):
                if isinstance(key, str) and key.endswith("_id") and _ID.match(item):
                    yield item
            elif isinstance(item, list) and isinstance(key, str) and key.endswith("_ids"):
                yield from (i for i in item if isinstance(i, str) and _ID.match(i))
            elif isinstance(item, (Mapping, list)):
                yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (Mapping, list)):
                yield from _walk(item)


def mentioned_ids(event: Any) -> list[str]:
    """Every id ``event`` mentions - the string value of each ``*_id`` field and the items of
    each ``*_ids`` list, at any depth - in the order met, each once, at most :data:`MAX_IDS`.
    Values that are not ids (free text, empty) are skipped."""
    return list(dict.fromkeys(_walk(event)))[:MAX_IDS]


def event_value(payload: bytes) -> tuple[Any, bytes]:
    """The JSON value of ``payload`` and its canonical bytes; bytes that are not JSON RFC 8785
    can carry are kept as ``{"undecodable_b64": ...}``, so nothing on the bus goes
    unrecorded."""
    try:
        return canonical_event(payload)
    except ValueError:
        value = {"undecodable_b64": base64.b64encode(payload).decode()}
        return value, canonical_json(value)


def _producer_time(event: Any, fallback: dt.datetime) -> dt.datetime:
    if isinstance(event, Mapping):
        for name in _TIME_FIELDS:
            text = event.get(name)
            if isinstance(text, str):
                try:
                    value = dt.datetime.fromisoformat(text)
                except ValueError:
                    continue
                if value.tzinfo is not None:
                    return value.astimezone(dt.UTC)
    return fallback


def _actor(event: Any, domain: str) -> str:
    if isinstance(event, Mapping):
        for name in ("actor", "key_id", "source", "broker"):
            value = event.get(name)
            if isinstance(value, str) and _ID.match(value):
                return value
    return domain


def build_entry(incoming: Incoming, *, sequence: int, prev_hash: str,
                recorded_ts: dt.datetime) -> Entry:
    """The entry ``sequence`` of the chain for ``incoming``, linked to ``prev_hash``."""
    event, event_bytes = event_value(incoming.payload)
    tokens = incoming.subject.split(".")
    domain = subject_domain(incoming.subject) or "unknown"
    ids = mentioned_ids(event)
    own = event.get("event_id") if isinstance(event, Mapping) else None
    if own in ids and len(ids) > 1:  # what the event is about comes first, its own id last
        ids.remove(own)
        ids.append(own)
    model = _MODEL.match(incoming.headers.get("Mts-Model", ""))
    subject_id = ids[0] if ids else (model.group(1) if model else domain)
    action = ".".join(tokens[2:])[:128].rstrip(".") or "unknown"
    ts = _producer_time(event, recorded_ts)
    # Checked parts (ids and actor match the id pattern, the action is cut to its length):
    # Entry.record constructs the model from them without validating again.
    fields: dict[str, Any] = {
        "action": action, "actor": _actor(event, domain), "ids": ids,
        "msg_id": incoming.msg_id, "payload_digest": event_digest(event_bytes),
        "recorded_ts": recorded_ts, "schema_version": AuditRecord.SCHEMA_VERSION,
        "sequence": sequence, "subject": incoming.subject, "subject_id": subject_id, "ts": ts}
    # The entry's JSON written directly, as entry_bytes(record) would write it (a test holds
    # the two equal): dumping a model costs as much as the rest of an append.
    entry = SORTED_JSON.encode({**fields, "ts": _json_time(ts),
                                "recorded_ts": _json_time(recorded_ts)}).encode()
    fields.update(prev_hash=prev_hash, hash=audit_chain_hash(prev_hash, entry))
    return Entry(fields, entry, event_bytes)


def _json_time(value: dt.datetime) -> str:
    """``value`` as the wire models write a time: ISO 8601, ``Z`` for UTC."""
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text
