"""SIGTERM the recorder (``mts mts1b-operations serve audit``) long before its checkpoint
interval: it still signs a checkpoint of every entry it recorded - in the table, the
directory, the object store and on the bus - so a short run leaves nothing unanchored."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from types import SimpleNamespace as Kit
from typing import Any

import pytest
from mts1b_operations.audit.chain import AuditChain
from mts1b_operations.audit.checkpoints import (
    CHECKPOINT_SUBJECT,
    bus_checkpoints,
    load_checkpoint_dir,
    stored_checkpoints,
)
from mts1b_operations.audit.db import AuditDb
from mts1b_operations.audit.verify import verify_entries
from mts1b_platform.signing import KeyRegistry, SigningKey

pytestmark = pytest.mark.integration


async def test_sigterm_signs_a_last_checkpoint_of_the_waiting_entries(
        audit_db: AuditDb, fresh_bus: Any, kit: Kit, tmp_path: Path) -> None:
    bus = fresh_bus
    await bus.declare_streams()
    key = SigningKey.generate("ops-audit")
    key.save(tmp_path / "audit.key")
    for i in range(3):
        await bus.publish_bytes("mts.v1.oms.orders.accepted", json.dumps(kit.event(i)).encode(),
                                {"Nats-Msg-Id": f"evt-{i}"})
    log = tmp_path / "recorder.log"
    # the defaults: a checkpoint after 1,000 entries or 60 s - neither comes in this test
    proc = kit.spawn_recorder(audit_db.schema, bus.namespace, tmp_path / "audit.key",
                              tmp_path / "ckpt", log)
    try:
        await kit.until_size(audit_db, 3)
        assert await stored_checkpoints(audit_db) == []  # nothing anchored while it runs
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)
    output = log.read_text()
    assert code == 0, output
    assert ("audit recorder stopped: 3 appended, 0 already recorded, 1 checkpoints signed"
            in output.splitlines()), output

    stored = await stored_checkpoints(audit_db)
    assert [(c.log, c.tree_size, c.key_id) for c in stored] == [(audit_db.schema, 3, "ops-audit")]
    files, unreadable = load_checkpoint_dir(tmp_path / "ckpt", audit_db.schema)
    assert unreadable == [] and files == stored
    assert await bus_checkpoints(bus, audit_db.schema) == stored
    published = await bus.js.get_last_msg(bus.stream_for("operations"),
                                          bus.wire_subject(CHECKPOINT_SUBJECT))
    assert json.loads(published.data)["tree_size"] == 3
    report = await verify_entries(AuditChain(audit_db).entries(), checkpoints=stored,
                                  keys=KeyRegistry([key.registered(["operations"])]))
    assert report.ok and report.anchored == 3 and report.findings == []
