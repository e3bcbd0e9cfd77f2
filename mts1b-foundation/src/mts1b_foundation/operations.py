"""Operational records: the audit hash chain, alerts, and dead letters."""

from __future__ import annotations

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
    """A message that could not be processed: where it came from, why, and its exact bytes."""

    SCHEMA_VERSION = 2
    READABLE_VERSIONS = frozenset({1})

    original_subject: str = Field(min_length=1, max_length=512)
    reason: str = Field(min_length=1, max_length=4000)
    errors: list[dict[str, ContextValue]] = Field(default_factory=list)
    payload_b64: str
    headers: dict[str, str] = Field(default_factory=dict)
    deliveries: int = Field(default=1, ge=0)
    consumer: str | None = None
    ts: UtcDatetime
