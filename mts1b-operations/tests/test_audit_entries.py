"""From a message to an entry: every id it mentions, RFC 8785 bytes, the chain hash."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st
from mts1b_foundation import GENESIS_HASH, AuditRecord, parse_message
from mts1b_operations.audit.chainhash import (
    audit_chain_hash,
    canonical_event,
    canonical_json,
    entry_bytes,
)
from mts1b_operations.audit.entries import Incoming, build_entry, mentioned_ids

NOW = dt.datetime(2026, 12, 7, 14, 30, tzinfo=dt.UTC)


def test_mentioned_ids_every_star_id_at_any_depth_once_in_order() -> None:
    event = {"order_id": "ord-abc", "fund_id": "F1", "text": "ord-zzz is not a field",
             "fill": {"trade_id": "t-9", "order_id": "ord-abc"}, "strategy_id": "",
             "leg_ids": ["l1", "l2", 7], "note_id": "has space"}
    assert mentioned_ids(event) == ["ord-abc", "F1", "t-9", "l1", "l2"]


def test_canonical_json_is_rfc8785() -> None:
    # RFC 8785 3.2.3's sorting by UTF-16 code units, and ES6 number forms.
    assert canonical_json({"b": 1, "a": [1e21, 1.5, "é"], "\u20ac": None, "\r": 0}) == (
        '{"\\r":0,"a":[1e+21,1.5,"é"],"b":1,"\u20ac":null}'.encode())


def test_entry_hash_covers_previous_hash_and_canonical_entry() -> None:
    payload = json.dumps({"ts": "2026-12-07T14:29:59.5+00:00", "order_id": "ord-abc",
                          "fund_id": "F1", "actor": "ops-alice"}).encode()
    message = Incoming("mts.v1.oms.orders.accepted", payload,
                       {"Mts-Model": "OrderEvent/3"}, "evt-1")
    entry = build_entry(message, sequence=0, prev_hash=GENESIS_HASH, recorded_ts=NOW)
    record = entry.record
    assert (record.ids, record.subject_id, record.actor, record.action) == (
        ["ord-abc", "F1"], "ord-abc", "ops-alice", "oms.orders.accepted")
    assert record.ts == dt.datetime(2026, 12, 7, 14, 29, 59, 500000, tzinfo=dt.UTC)
    assert record.payload_digest == hashlib.sha256(entry.event).hexdigest()
    assert entry.entry == entry_bytes(record)
    assert record.hash == hashlib.sha256(bytes(32) + entry.entry).hexdigest()
    assert record.hash == audit_chain_hash(GENESIS_HASH, entry.entry)
    assert b'"hash"' not in entry.entry and b'"prev_hash"' not in entry.entry
    assert parse_message(AuditRecord, record.to_json()) == record
    second = build_entry(message, sequence=1, prev_hash=record.hash, recorded_ts=NOW)
    assert second.record.hash != record.hash  # same event, another place in the chain


def test_undecodable_bytes_are_kept_not_dropped() -> None:
    entry = build_entry(Incoming("mts.v1.dlq.oms", b"\xff not json", {}, "m-2"),
                        sequence=3, prev_hash="a" * 64, recorded_ts=NOW)
    assert json.loads(entry.event) == {"undecodable_b64": "/yBub3QganNvbg=="}
    assert entry.record.subject_id == "dlq" and entry.record.ids == []
    assert entry.record.ts == NOW  # no producer time: the recorder's


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                  max_size=4),
    max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(json_values, st.booleans())
def test_the_fast_path_writes_exactly_rfc8785(value: object, ascii_only: bool) -> None:
    payload = json.dumps(value, ensure_ascii=ascii_only).encode()
    try:
        expected = rfc8785.dumps(json.loads(payload))
    except rfc8785.CanonicalizationError:
        with pytest.raises(rfc8785.CanonicalizationError):
            canonical_event(payload)
        return
    assert canonical_event(payload) == (json.loads(payload), expected)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20), st.lists(st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.:@=+-]{0,8}",
                                                    fullmatch=True), min_size=1, max_size=3,
                                      unique=True))
def test_entry_bytes_are_rfc8785(msg_id: str, ids: list[str]) -> None:
    record = AuditRecord(sequence=2**40, prev_hash=GENESIS_HASH, hash="a" * 64,
                         msg_id=msg_id or None, subject="mts.v1.oms.orders.accepted",
                         subject_id=ids[0], ids=ids, actor="oms", action="x",
                         payload_digest="b" * 64, ts=NOW, recorded_ts=NOW)
    body = {k: v for k, v in record.model_dump(mode="json").items()
            if k not in {"hash", "prev_hash"}}
    assert entry_bytes(record) == rfc8785.dumps(body)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=12), st.sampled_from(["mts.v1.oms.orders.accepted",
                                                          "mts.v1.x", "mts.v1.ops.é.y"]),
       st.datetimes(timezones=st.just(dt.UTC)), st.datetimes(timezones=st.just(dt.UTC)),
       st.dictionaries(st.sampled_from(["order_id", "fund_id", "leg_ids", "note", "actor"]),
                       st.text(max_size=6) | st.lists(st.text(max_size=4), max_size=2)))
def test_an_entry_is_its_record_in_rfc8785(msg_id: str, subject: str, ts: dt.datetime,
                                           recorded: dt.datetime, event: dict[str, object]
                                           ) -> None:
    """build_entry writes the entry's JSON itself (not through the model); it must be what
    entry_bytes makes of the record, whole seconds and non-ASCII text included."""
    payload = json.dumps({**event, "ts": ts.isoformat()}).encode()
    entry = build_entry(Incoming(subject, payload, {}, msg_id), sequence=7,
                        prev_hash=GENESIS_HASH, recorded_ts=recorded)
    assert entry.entry == entry_bytes(entry.record)
    assert entry.record.hash == audit_chain_hash(GENESIS_HASH, entry.entry)
    assert entry.record.ts == ts
