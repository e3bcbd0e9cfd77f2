"""SIGKILL the recorder while events stream in, restart it, again: every event is in the chain
exactly once, the chain verifies and its signed checkpoints match it."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
from pathlib import Path
from types import SimpleNamespace as Kit
from typing import Any

import pytest
from mts1b_operations.audit.chain import AuditChain
from mts1b_operations.audit.checkpoints import load_checkpoint_dir
from mts1b_operations.audit.db import AuditDb
from mts1b_operations.audit.verify import verify_entries
from mts1b_platform.signing import KeyRegistry, SigningKey

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def spawn(kit: Kit, ns: str, schema: str, key: Path, checkpoints: Path, log: Path
          ) -> subprocess.Popen[bytes]:
    """The recorder with small batches and frequent checkpoints, so kills land mid-work."""
    proc: subprocess.Popen[bytes] = kit.spawn_recorder(
        schema, ns, key, checkpoints, log, "--ack-wait", "1", "--batch", "40",
        "--checkpoint-every", "100", "--checkpoint-interval", "0.5")
    return proc


async def size(db: AuditDb) -> int:
    return (await AuditChain(db).head()).size


async def test_sigkill_mid_stream_loses_nothing_and_adds_nothing_twice(
        audit_db: AuditDb, fresh_bus: Any, kit: Kit, tmp_path: Path) -> None:
    bus = fresh_bus
    await bus.declare_streams()
    key = SigningKey.generate("ops-audit")
    key.save(tmp_path / "audit.key")
    checkpoints = tmp_path / "checkpoints"
    rng = random.Random(21)
    total, kills, published = 1200, 3, 0
    proc = spawn(kit, bus.namespace, audit_db.schema, tmp_path / "audit.key", checkpoints,
                 tmp_path / "recorder.log")
    try:
        for kill in range(kills + 1):
            before = await size(audit_db)
            for i in range(published, published + total // (kills + 1)):
                subject = ("mts.v1.oms.orders.accepted" if i % 3 else
                           "mts.v1.treasury.nav.struck")
                await bus.publish_bytes(subject, json.dumps(kit.event(i)).encode(),
                                        {"Nats-Msg-Id": f"evt-{i}"})
            published += total // (kills + 1)
            if kill < kills:
                await kit.until_size(audit_db, before + 1)  # it is recording this batch
                await asyncio.sleep(rng.uniform(0, 0.005))
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                assert await size(audit_db) < published, "the kill landed after the batch"
                proc = spawn(kit, bus.namespace, audit_db.schema, tmp_path / "audit.key",
                             checkpoints, tmp_path / "recorder.log")
        await kit.until_size(audit_db, published)
        await asyncio.sleep(1.5)  # redeliveries of the last unacknowledged batch, checkpoint
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    chain = AuditChain(audit_db)
    msg_ids = [row.msg_id async for row in chain.entries()]
    assert len(msg_ids) == published == len(set(msg_ids))
    files, bad = load_checkpoint_dir(checkpoints, audit_db.schema)
    assert bad == [] and files[-1].tree_size == published
    assert len(files) >= 8  # one at least every 100 entries plus a batch (--checkpoint-every)
    report = await verify_entries(chain.entries(), checkpoints=files,
                                  keys=KeyRegistry([key.registered(["operations"])]))
    assert report.ok and report.findings == [] and report.anchored == published
