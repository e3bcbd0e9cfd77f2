"""Checkpoints: signed over their own bytes, refused when any field changes, kept in files
that are written whole."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from mts1b_foundation import ValidationFailed, parse_message
from mts1b_foundation.operations import AUDIT_CHECKPOINT_CONTEXT, AuditCheckpoint
from mts1b_operations.audit.checkpoints import (
    load_checkpoint_dir,
    merged,
    sign_checkpoint,
    write_checkpoint_file,
)
from mts1b_operations.audit.errors import AuditError
from mts1b_operations.audit.keys import configured_signing_key
from mts1b_platform.signing import SigningKey

KEY = SigningKey.generate("ops-audit")
NOW = dt.datetime(2026, 12, 7, 21, 0, tzinfo=dt.UTC)


def test_signature_covers_every_field() -> None:
    checkpoint = sign_checkpoint(KEY, log="mts_audit", tree_size=1000, root=b"\x01" * 32,
                                 chain_hash="ab" * 32, now=NOW)
    assert checkpoint.signing_bytes().split(b"\n")[:5] == [
        AUDIT_CHECKPOINT_CONTEXT.encode(), b"mts_audit", b"1000", b"01" * 32, b"ab" * 32]
    registered = KEY.registered(["operations"])
    assert registered.verifies(checkpoint)
    for change in ({"tree_size": 999}, {"root_hash": "02" * 32}, {"chain_hash": "cd" * 32},
                   {"log": "other"}, {"timestamp": NOW + dt.timedelta(seconds=1)}):
        assert not registered.verifies(checkpoint.model_copy(update=change)), change
    assert parse_message(AuditCheckpoint, checkpoint.to_json()) == checkpoint
    with pytest.raises(ValidationFailed, match="tree_size"):
        parse_message(AuditCheckpoint, checkpoint.model_dump(mode="json") | {"tree_size": 0})


def test_directory_round_trip_and_unreadable_files_named(tmp_path: Path) -> None:
    first = sign_checkpoint(KEY, log="a", tree_size=5, root=b"\x01" * 32, chain_hash="ab" * 32)
    second = sign_checkpoint(KEY, log="b", tree_size=9, root=b"\x02" * 32, chain_hash="cd" * 32)
    assert write_checkpoint_file(tmp_path, first).name == "a-000000000005.json"
    write_checkpoint_file(tmp_path, second)
    (tmp_path / "junk.json").write_text("{}")
    found, bad = load_checkpoint_dir(tmp_path, "a")
    assert found == [first] and bad == ["junk.json"]
    assert not list(tmp_path.glob("*.tmp"))
    assert merged([second, first], [first]) == [first, second]
    with pytest.raises(AuditError, match="does not exist"):
        load_checkpoint_dir(tmp_path / "none")


def test_the_key_from_the_services_configuration(tmp_path: Path) -> None:
    """What the deploy tool stores at secret/mts1b/operations (the key file's text) read as
    the platform reads any setting; here from the environment."""
    KEY.save(tmp_path / "k.json")
    text = (tmp_path / "k.json").read_text()
    key = configured_signing_key(environ={"MTS_OPERATIONS_SIGNING_KEY_FILE": text})
    assert key is not None and key.public_key == KEY.public_key and key.name == "ops-audit"
    assert configured_signing_key(environ={}) is None
    with pytest.raises(AuditError, match="does not hold a signing key file") as caught:
        configured_signing_key(environ={"MTS_OPERATIONS_SIGNING_KEY_FILE": text[:-20]})
    assert text[8:30] not in str(caught.value)
