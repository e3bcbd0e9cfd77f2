"""Operational records: the audit hash chain, alerts, and dead letters."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from typing import Annotated, Any

from pydantic import Field, model_validator

from mts1b_foundation.enums import Severity
from mts1b_foundation.wire import Context, ContextValue, Identifier, UtcDatetime, WireModel

__all__ = ["GENESIS_HASH", "Alert", "AuditRecord", "DeadLetter", "digest_payload"]

Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
GENESIS_HASH = "0" * 64
"""``prev_hash`` of the first record of a chain."""


def digest_payload(payload: Any) -> str:
    """SHA-256 of a JSON-able payload in canonical form (sorted keys, no spaces)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class AuditRecord(WireModel):
    """One link of a tamper-evident chain: ``hash`` covers every field and ``prev_hash``.

    Changing any past record changes its hash and breaks every later ``prev_hash`` link, so a
    verifier walking the chain finds the first altered record.
    """

    SCHEMA_VERSION = 2
    READABLE_VERSIONS = frozenset({1})

    sequence: int = Field(ge=0)
    prev_hash: Sha256Hex
    hash: Sha256Hex
    subject_id: Identifier
    actor: Identifier
    action: Identifier
    payload_digest: Sha256Hex
    ts: UtcDatetime

    @staticmethod
    def compute_hash(sequence: int, prev_hash: str, subject_id: str, actor: str, action: str,
                     payload_digest: str, ts_iso: str) -> str:
        """The chain hash of a record's content (what ``hash`` must equal)."""
        text = "\x1f".join([str(sequence), prev_hash, subject_id, actor, action,
                            payload_digest, ts_iso])
        return hashlib.sha256(text.encode()).hexdigest()

    @model_validator(mode="after")
    def _hash_matches(self) -> AuditRecord:
        expected = self.compute_hash(self.sequence, self.prev_hash, self.subject_id, self.actor,
                                     self.action, self.payload_digest, self.ts.isoformat())
        if self.hash != expected:
            raise ValueError(f"hash {self.hash} does not match the record's content "
                             f"(expected {expected})")
        return self

    @classmethod
    def seal(cls, *, sequence: int, prev_hash: str, subject_id: str, actor: str, action: str,
             payload: Any, ts: dt.datetime) -> AuditRecord:
        """Build the next record of a chain, computing ``payload_digest`` and ``hash``.

        ``ts`` must be timezone-aware; the hash is computed over its UTC ISO form, which is the
        form the record stores, so a verifier recomputes the same value.
        """
        if ts.tzinfo is None or ts.utcoffset() is None:
            raise ValueError("ts must be a timezone-aware datetime")
        ts_utc = ts.astimezone(dt.UTC)
        digest = digest_payload(payload)
        return cls(
            sequence=sequence, prev_hash=prev_hash, subject_id=subject_id, actor=actor,
            action=action, payload_digest=digest, ts=ts_utc,
            hash=cls.compute_hash(sequence, prev_hash, subject_id, actor, action, digest,
                                  ts_utc.isoformat()),
        )


class Alert(WireModel):
    """Something a person should know about, with structured context."""

    SCHEMA_VERSION = 2
    READABLE_VERSIONS = frozenset({1})

    alert_id: Identifier
    severity: Severity
    source: Identifier
    text: str = Field(min_length=1, max_length=4000)
    context: Context = Field(default_factory=dict)
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
