"""DeadLetter version 3: the payload's size, SHA-256 and a truncation flag; versions 1 and 2 read.

A letter must describe its own payload truthfully: a whole payload matches ``payload_size`` and
``payload_sha256``, a truncated one is a shorter prefix. The bus relies on this to dead-letter a
message too large to carry whole (see mts1b-platform's test_dead_letters.py).
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from mts1b_foundation import DeadLetter, ValidationFailed, parse_message

PAYLOAD = b'{"symbol": "AAPL", "close": "not a number"}'


def _v3(**changes: Any) -> dict[str, Any]:
    letter = {
        "schema_version": 3, "original_subject": "mts.v1.datalake.bars.AAPL",
        "reason": "invalid message", "payload_b64": base64.b64encode(PAYLOAD).decode(),
        "payload_size": len(PAYLOAD), "payload_sha256": hashlib.sha256(PAYLOAD).hexdigest(),
        "ts": "2024-07-03T17:00:00Z",
    }
    letter.update(changes)
    return letter


def test_a_whole_payload_round_trips() -> None:
    letter = parse_message(DeadLetter, _v3())
    assert not letter.payload_truncated
    assert base64.b64decode(letter.payload_b64) == PAYLOAD
    assert parse_message(DeadLetter, letter.to_json()) == letter


def test_a_truncated_payload_is_a_shorter_prefix() -> None:
    prefix = PAYLOAD[:9]
    letter = parse_message(DeadLetter, _v3(payload_b64=base64.b64encode(prefix).decode(),
                                           payload_truncated=True))
    assert letter.payload_size == len(PAYLOAD)
    whole = f"payload_truncated, but payload_b64 holds {len(PAYLOAD)}"
    with pytest.raises(ValidationFailed, match=whole):
        parse_message(DeadLetter, _v3(payload_truncated=True))


@pytest.mark.parametrize(("changes", "reason"), [
    ({"payload_size": len(PAYLOAD) + 1}, f"payload_size says {len(PAYLOAD) + 1}"),
    ({"payload_sha256": "0" * 64}, "payload_sha256 is not the SHA-256"),
    ({"payload_b64": "not base64!"}, "payload_b64 is not base64"),
    ({"payload_b64": "éé"}, "payload_b64 is not base64"),
    ({"payload_sha256": "XYZ"}, "payload_sha256"),
    ({"payload_size": -1}, "payload_size"),
])
def test_a_letter_that_misdescribes_its_payload_is_refused(changes: dict[str, Any],
                                                            reason: str) -> None:
    with pytest.raises(ValidationFailed, match=reason):
        parse_message(DeadLetter, _v3(**changes))


@pytest.mark.parametrize("version", [1, 2])
def test_versions_1_and_2_read_with_size_and_digest_computed(version: int) -> None:
    old = {k: v for k, v in _v3(schema_version=version).items()
           if not k.startswith("payload_") or k == "payload_b64"}
    letter = parse_message(DeadLetter, json.dumps(old))
    assert letter.schema_version == 3
    assert (letter.payload_size, letter.payload_sha256, letter.payload_truncated) == (
        len(PAYLOAD), hashlib.sha256(PAYLOAD).hexdigest(), False)


def test_an_old_letter_whose_payload_is_not_base64_is_refused() -> None:
    with pytest.raises(ValidationFailed, match="payload_b64 is not base64"):
        parse_message(DeadLetter, {**_v3(schema_version=2, payload_b64="%%%"),
                                   "payload_size": 0})


def test_an_empty_payload() -> None:
    letter = parse_message(DeadLetter, _v3(payload_b64="", payload_size=0,
                                           payload_sha256=hashlib.sha256(b"").hexdigest()))
    assert letter.payload_size == 0 and not letter.payload_truncated
