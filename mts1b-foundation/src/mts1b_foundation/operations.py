"""Operational records: the audit hash chain, alerts, heartbeats and dead letters."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

from pydantic import Field, model_validator

from mts1b_foundation.enums import AlertStatus, Severity
from mts1b_foundation.wire import Context, ContextValue, Identifier, UtcDatetime, WireModel

__all__ = ["AUDIT_CHECKPOINT_CONTEXT", "GENESIS_HASH", "SCOPE_LABELS", "Alert", "AlertLabels",
           "AuditCheckpoint", "AuditRecord", "DeadLetter", "Heartbeat", "alert_fingerprint",
           "alert_labels", "digest_payload"]

Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
GENESIS_HASH = "0" * 64
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
"""``prev_hash`` of the first record of a chain."""


def digest_payload(payload: Any) -> str:
    """SHA-256 of a JSON-able payload in canonical form (sorted keys, no spaces)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class AuditRecord(WireModel):
    """One entry of the audit chain: an event as the recorder appended it.

    ``hash`` is SHA-256 over ``prev_hash`` (32 bytes) and the entry's RFC 8785 canonical JSON
    (:func:`mts1b_operations.audit.chainhash.audit_chain_hash`, the one place the rule lives):
    every field below but ``hash`` and ``prev_hash``, with ``payload_digest`` standing for the
    event's own canonical JSON. The model carries the link; the chain in PostgreSQL checks it
    (``mts mts1b-operations audit verify``), because a record alone proves nothing: a forger
    recomputes one hash as easily as a verifier does, not the signed checkpoints after it.

    ``ids`` lists every id the event mentions (each ``*_id`` field, in order, once), so one
    lookup finds every event about an order, a fund or a strategy across services;
    ``subject_id`` is the first of them (or the event's model name when it mentions none).
    ``ts`` is the producer's time, ``recorded_ts`` the recorder's: their difference is the skew
    the recorder alerts on. ``msg_id`` is the event's ``Nats-Msg-Id``, which makes an event an
    entry exactly once.

    Version 3 added ``msg_id``, ``subject``, ``ids`` and ``recorded_ts`` and moved the hash rule
    out of the model. Records of versions 1 and 2 still read (:meth:`upgrade`): no message id or
    subject, ``ids`` of their ``subject_id`` alone, recorded when produced.
    """

    SCHEMA_VERSION = 3
    READABLE_VERSIONS = frozenset({1, 2})

    sequence: int = Field(ge=0)
    prev_hash: Sha256Hex
    hash: Sha256Hex
    msg_id: str | None = Field(default=None, min_length=1, max_length=512,
                               description="the event's Nats-Msg-Id")
    subject: str | None = Field(default=None, min_length=1, max_length=512,
                                description="the NATS subject the event travelled on")
    subject_id: Identifier
    ids: list[Identifier] = Field(max_length=256, description="every id the event mentions")
    actor: Identifier
    action: Identifier
    payload_digest: Sha256Hex
    ts: UtcDatetime
    recorded_ts: UtcDatetime

    @classmethod
    def upgrade(cls, version: int, data: dict[str, Any]) -> dict[str, Any]:
        """v1, v2 -> v3: the record's one id, recorded at its own time."""
        data.setdefault("ids", [data.get("subject_id")])
        data.setdefault("recorded_ts", data.get("ts"))
        return data

    @model_validator(mode="after")
    def _ids_consistent(self) -> AuditRecord:
        if len(set(self.ids)) != len(self.ids):
            raise ValueError("ids must not repeat an id")
        if self.ids and self.subject_id != self.ids[0]:
            raise ValueError(f"subject_id {self.subject_id!r} must be the first of ids "
                             f"({self.ids[0]!r})")
        return self

AUDIT_CHECKPOINT_CONTEXT = "mts1b.operations.audit-checkpoint.v1"
"""The first line of a checkpoint's signed bytes (:meth:`AuditCheckpoint.signing_bytes`): a
signature made for anything else never verifies as a checkpoint."""


class AuditCheckpoint(WireModel):
    """A signed statement of the audit chain's state: its first ``tree_size`` entries have
    Merkle root ``root_hash`` (RFC 6962: leaf = SHA-256(0x00 || entry), node = SHA-256(0x01 ||
    left || right)) and the last of them chain hash ``chain_hash``.

    Why signed and published: an entry can be rewritten by whoever holds the database, but not
    a checkpoint already copied off the host (the bus, a directory, a person's inbox) without
    the private key. ``audit verify`` recomputes each root from the table and names the
    checkpoint a rewritten history no longer matches; consistency proofs show that a later
    checkpoint extends an earlier one. The signature is Ed25519 by ``key_id`` (a key of the
    platform's key registry) over :meth:`signing_bytes`.
    """

    COMMAND: ClassVar[str] = "audit-checkpoint"
    """What the platform's signature check calls it (``mts1b_platform.signing``)."""

    log: Identifier = Field(description="the chain's name (its PostgreSQL schema)")
    tree_size: int = Field(ge=1)
    root_hash: Sha256Hex
    chain_hash: Sha256Hex
    key_id: Identifier
    nonce: str = Field(pattern=r"^[0-9a-f]{32}$")
    timestamp: UtcDatetime
    signature: str = Field(pattern=r"^[A-Za-z0-9+/]{86}==$",
                           description="Ed25519 signature (standard base64) of signing_bytes()")

    def signing_bytes(self) -> bytes:
        """What :attr:`signature` signs: one line per field, the context first."""
        when = self.timestamp.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return "\n".join((AUDIT_CHECKPOINT_CONTEXT, self.log, str(self.tree_size),
                          self.root_hash, self.chain_hash, self.key_id, self.nonce,
                          when)).encode("utf-8")


_LABEL_NAME = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
_LABEL_VALUE = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")]
AlertLabels = Annotated[dict[_LABEL_NAME, _LABEL_VALUE], Field(min_length=1, max_length=32)]
"""What an alert *is* (Alertmanager's labels): ``alertname`` plus the scope it is about
(``service``, ``fund``, ``symbol``, ...). At most 32, names as Prometheus label names, values of
1-256 printable characters. Nothing that changes between two raisings of the same condition (a
count, an amount, a time) belongs here: that goes in ``context``."""


def alert_fingerprint(labels: Mapping[str, str]) -> str:
    """The identity of an alert: SHA-256 of its labels sorted by name, first 16 hex digits.

    Why the labels and only they: the router deduplicates, groups and silences by identity, so
    two raisings of one condition (same labels, new text or severity) must be the same alert and
    two conditions must never be. Names and values cannot hold the separators (control
    characters are refused), so distinct label sets never hash the same text.
    """
    text = "\x1e".join(f"{name}\x1f{labels[name]}" for name in sorted(labels))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


SCOPE_LABELS: Mapping[str, str] = {
    "fund_id": "fund", "fund": "fund", "strategy_id": "strategy", "strategy": "strategy",
    "symbol": "symbol", "broker": "broker", "order_id": "order_id", "check": "check",
    "kind": "kind", "event_type": "event_type",
}
"""Context keys that say *what* an alert is about, and the label each becomes. Everything
else in a context (amounts, counts, codes, times) varies between raisings of one condition and
stays out of the labels."""


def alert_labels(alertname: str, service: str,
                 context: Mapping[str, ContextValue] | None = None) -> dict[str, str]:
    """The labels of an alert ``alertname`` raised by ``service`` about the scope named in
    ``context`` (its :data:`SCOPE_LABELS` keys that hold text: ``fund_id`` -> ``fund``, ...).

    Why one function: every producer (the platform's ``raise_alert``, the OMS's outbox, the
    treasury's reconciliation) must label the same scope the same way, or the router's
    grouping by ``fund`` and the inhibition of a halted fund's order alerts miss some of them.
    """
    labels = {"alertname": alertname, "service": service}
    for key, value in (context or {}).items():
        label = SCOPE_LABELS.get(key)
        if label is not None and isinstance(value, str) and value:
            labels[label] = _CONTROL.sub(" ", value[:256])
    return labels


class Alert(WireModel):
    """Something a person should know about: one raising (or the resolution) of a condition.

    ``labels`` identify the condition (:func:`alert_fingerprint`), so the alert router can
    deduplicate, group, inhibit and silence by them; ``alert_id`` identifies this one message
    (the bus deduplicates a re-publish on it), not the condition. ``status`` is firing while the
    condition holds and resolved once it stopped, at ``ends_at``. ``severity`` is not a label: an
    alert that escalates from warning to error stays the same alert.

    Version 3 added ``labels``, ``status``, ``starts_at`` and ``ends_at``. Alerts of versions 1
    and 2 still read (:meth:`upgrade`): firing since their ``ts``, labelled with
    ``alertname=unlabelled``, their ``service`` and their own id - they carried no identity, so
    each stays its own alert.
    """

    SCHEMA_VERSION = 3
    READABLE_VERSIONS = frozenset({1, 2})

    alert_id: Identifier
    labels: AlertLabels
    status: AlertStatus = AlertStatus.FIRING
    severity: Severity
    source: Identifier
    text: str = Field(min_length=1, max_length=4000)
    context: Context = Field(default_factory=dict)
    ts: UtcDatetime
    starts_at: UtcDatetime = Field(default_factory=lambda data: data.get("ts"),
                                   description="when the condition began (default: ts)")
    ends_at: UtcDatetime | None = Field(default=None, description="when the condition stopped "
                                                                  "(required once resolved)")

    @property
    def fingerprint(self) -> str:
        """The condition's identity (:func:`alert_fingerprint` of ``labels``)."""
        return alert_fingerprint(self.labels)

    @property
    def alertname(self) -> str:
        return self.labels["alertname"]

    @classmethod
    def upgrade(cls, version: int, data: dict[str, Any]) -> dict[str, Any]:
        """v1, v2 -> v3: an unlabelled alert, firing since it was raised."""
        labels = {"alertname": "unlabelled", "alert_id": data.get("alert_id")}
        if isinstance(data.get("source"), str):
            labels["service"] = data["source"]
        data.setdefault("labels", labels)
        data.setdefault("starts_at", data.get("ts"))
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Alert:
        if "alertname" not in self.labels:
            raise ValueError("labels must name the alert (an 'alertname' label)")
        if self.status is AlertStatus.RESOLVED and self.ends_at is None:
            raise ValueError("a resolved alert needs ends_at (when the condition stopped)")
        if self.ends_at is not None and self.ends_at < self.starts_at:
            raise ValueError(f"ends_at {self.ends_at.isoformat()} is before starts_at "
                             f"{self.starts_at.isoformat()}")
        return self


class Heartbeat(WireModel):
    """A service's "I am alive", published every ``interval_s`` seconds.

    Why a model of its own: a service that died cannot raise an alert about itself; the alert
    router notices that its heartbeats stopped (none for a few intervals) and raises
    ``HeartbeatMissing`` for it, resolved by the next heartbeat. ``instance`` tells apart two
    copies of one service; ``started_at`` shows a restart.
    """

    service: Identifier
    instance: Identifier = "default"
    interval_s: float = Field(gt=0, le=3600, allow_inf_nan=False,
                              description="seconds between two heartbeats")
    started_at: UtcDatetime
    ts: UtcDatetime


class DeadLetter(WireModel):
    """A message that could not be processed: where it came from, why, and its bytes.

    ``payload_b64`` is the original message in base64: all of it, or - when the letter would not
    fit in the server's ``max_payload`` (base64 turns a 1 MB message into 1.33 MB) - only its
    first bytes, and then ``payload_truncated`` is true. ``payload_size`` and ``payload_sha256``
    always describe the whole original, so a truncated letter still says how much is missing
    and identifies the message exactly (its digest against the copy in the stream). Why a
    prefix rather than nothing: the start of a message (its first keys, a type tag) is usually
    what tells a person what it was, and a letter that could not be stored would lose it all.

    The validator holds a letter to its own description: ``payload_b64`` is strict base64, a
    whole payload has ``payload_size`` bytes and that SHA-256, a truncated one is shorter.

    Version 3 added the three ``payload_*`` fields. Letters of versions 1 and 2 (written before
    any was truncated) still read: :meth:`upgrade` computes the fields from their payload.
    """

    SCHEMA_VERSION = 3
    READABLE_VERSIONS = frozenset({1, 2})

    original_subject: str = Field(min_length=1, max_length=512)
    reason: str = Field(min_length=1, max_length=4000)
    errors: list[dict[str, ContextValue]] = Field(default_factory=list)
    payload_b64: str = Field(description="base64 of the original bytes, or of their first bytes "
                                         "when payload_truncated is true")
    payload_size: int = Field(ge=0, description="length of the whole original message in bytes")
    payload_sha256: Sha256Hex = Field(description="SHA-256 of the whole original message (hex)")
    payload_truncated: bool = Field(default=False, description="payload_b64 holds only a prefix "
                                                               "because the letter had to fit "
                                                               "the server's max_payload")
    headers: dict[str, str] = Field(default_factory=dict)
    deliveries: int = Field(default=1, ge=0)
    consumer: str | None = None
    ts: UtcDatetime

    @classmethod
    def upgrade(cls, version: int, data: dict[str, Any]) -> dict[str, Any]:
        """v1, v2 -> v3: those letters always carried the whole payload, so its size and digest
        are computed from ``payload_b64``. One that is not base64 is left for the validator to
        refuse (its size cannot be known)."""
        payload = _strict_b64decode(data.get("payload_b64"))
        if payload is not None:
            data["payload_size"] = len(payload)
            data["payload_sha256"] = hashlib.sha256(payload).hexdigest()
            data["payload_truncated"] = False
        return data

    @model_validator(mode="after")
    def _payload_matches(self) -> DeadLetter:
        payload = _strict_b64decode(self.payload_b64)
        if payload is None:
            raise ValueError("payload_b64 is not base64")
        if self.payload_truncated:
            if len(payload) >= self.payload_size:
                raise ValueError(f"payload_truncated, but payload_b64 holds {len(payload)} bytes "
                                 f"of a {self.payload_size}-byte message")
            return self
        if len(payload) != self.payload_size:
            raise ValueError(f"payload_b64 holds {len(payload)} bytes, payload_size says "
                             f"{self.payload_size} (and payload_truncated is false)")
        if hashlib.sha256(payload).hexdigest() != self.payload_sha256:
            raise ValueError("payload_sha256 is not the SHA-256 of the payload")
        return self


def _strict_b64decode(value: Any) -> bytes | None:
    """The bytes of standard base64 text, or None when ``value`` is not that."""
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):  # binascii.Error is a ValueError
        return None
