"""``audit verify`` on two processes gives the one-process report, word for word.

The second process checks the newer half; its result is joined only when both halves are
clean and meet. Each test tampers near the middle of a 40-row chain (or not at all) and
compares the two reports, and counts whether the join was used, so that both the joined path
and the fall-back are exercised on a real PostgreSQL."""

from __future__ import annotations

from types import SimpleNamespace as Kit
from typing import Any

import pytest
from mts1b_foundation.operations import AuditCheckpoint
from mts1b_operations.audit import verify_split
from mts1b_operations.audit.chain import AuditChain
from mts1b_operations.audit.checkpoints import sign_checkpoint
from mts1b_operations.audit.db import AuditDb
from mts1b_operations.audit.merkle import leaf_hash, tree_root
from mts1b_operations.audit.verify import VerifyReport, verify_chain
from mts1b_platform.signing import KeyRegistry, SigningKey

pytestmark = pytest.mark.integration

ROWS = 40
KEY = SigningKey.generate("ops-audit")
KEYS = KeyRegistry([KEY.registered(["operations"])])


async def _checkpoints(chain: AuditChain, log: str, *, wrong: int | None = None
                       ) -> list[AuditCheckpoint]:
    """Signed checkpoints at 10 entries (in the first half) and 30 (in the second), and at
    ``wrong`` one whose root is not the table's."""
    leaves = [leaf_hash(entry) for entry in await chain.entry_bytes()]
    out = []
    for size in (10, 30, wrong) if wrong else (10, 30):
        row = await chain.entry(size - 1)
        assert row is not None
        root = bytes(32) if size == wrong else tree_root(leaves[:size])
        out.append(sign_checkpoint(KEY, log=log, tree_size=size, root=root,
                                   chain_hash=row.hash))
    return out


async def _split_and_alone(chain: AuditChain, dsn: str, points: list[AuditCheckpoint],
                           monkeypatch: pytest.MonkeyPatch) -> tuple[VerifyReport, int]:
    """The two-process report (asserted equal to the one-process one) and how many times the
    second half was joined."""
    joins: list[Any] = []
    real_join = verify_split._join
    monkeypatch.setattr(verify_split, "_join", lambda *a: joins.append(a) or real_join(*a))
    split = await verify_split.verify_chain_split(chain, dsn, checkpoints=points, keys=KEYS,
                                                  min_rows=2)
    alone = await verify_chain(chain, checkpoints=points, keys=KEYS)
    assert split.as_dict() == alone.as_dict()
    return split, len(joins)


def _kinds(report: VerifyReport) -> list[tuple[str, int | None]]:
    return [(f.kind, f.seq) for f in report.findings]


async def test_a_clean_chain_is_joined(audit_db: AuditDb, kit: Kit,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    chain = AuditChain(audit_db)
    await chain.append([kit.incoming(i) for i in range(ROWS)])
    points = await _checkpoints(chain, audit_db.schema, wrong=35)
    report, joins = await _split_and_alone(chain, kit.DSN, points, monkeypatch)
    assert joins == 1
    assert report.checked == ROWS and report.checkpoints_matched == 2
    # the wrong root at 35 lies in the second half: the join checks it too
    assert _kinds(report) == [("checkpoint", 34), ("unanchored", 30)]


@pytest.mark.parametrize("statements", [
    ["UPDATE audit_entries SET seq = 100 WHERE seq = 19",  # swapped across the middle
     "UPDATE audit_entries SET seq = 19 WHERE seq = 20",
     "UPDATE audit_entries SET seq = 20 WHERE seq = 100"],
    ["UPDATE audit_entries SET event = overlay(event placing 'X' from 5 for 1) "
     "WHERE seq = 27"],  # the second half altered
    ["UPDATE audit_entries SET ids = ARRAY['x'] WHERE seq = 5"],  # the first half altered
    ["DELETE FROM audit_entries WHERE seq = 21"],  # a gap in the second half
    ["DELETE FROM audit_entries WHERE seq = 19"],  # the row before the middle is gone
])
async def test_a_tampered_chain_is_reported_as_by_one_process(
        audit_db: AuditDb, kit: Kit, monkeypatch: pytest.MonkeyPatch,
        statements: list[str]) -> None:
    chain = AuditChain(audit_db)
    await chain.append([kit.incoming(i) for i in range(ROWS)])
    points = await _checkpoints(chain, audit_db.schema)  # signed before the tampering
    await kit.tamper(audit_db, *statements)
    report, joins = await _split_and_alone(chain, kit.DSN, points, monkeypatch)
    assert not report.ok and joins == 0
