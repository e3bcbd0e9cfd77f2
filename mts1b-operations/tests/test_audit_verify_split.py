"""``audit verify`` on two processes gives the one-process report, word for word.

The second process checks the newer rows (here it is waited for and given the rows from 16
on: half of 40, down to a block of eight); its result is joined only when both parts are
clean and meet. Each test tampers near row 16 of a 40-row chain (or not at all) and compares
the two reports, and counts whether the join was used, so that both the joined path and the
fall-back are exercised on a real PostgreSQL. The second process is forked (as on Linux) or
spawned (as elsewhere), fails, or is never needed."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import AsyncIterator
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
    """Signed checkpoints at 10 entries (in the first part), 24 (in the second, which starts
    at row 16, at the end of one of its blocks of eight) and 30 (inside a block), and at
    ``wrong`` one whose root is not the table's."""
    leaves = [leaf_hash(entry) for entry in await chain.entry_bytes()]
    out = []
    for size in (10, 24, 30, wrong) if wrong else (10, 24, 30):
        row = await chain.entry(size - 1)
        assert row is not None
        root = bytes(32) if size == wrong else tree_root(leaves[:size])
        out.append(sign_checkpoint(KEY, log=log, tree_size=size, root=root,
                                   chain_hash=row.hash))
    return out


async def _split_and_alone(chain: AuditChain, dsn: str, points: list[AuditCheckpoint],
                           monkeypatch: pytest.MonkeyPatch, *, wait: bool = True
                           ) -> tuple[VerifyReport, int]:
    """The two-process report (asserted equal to the one-process one) and how many times the
    second part was joined; no second process is left running."""
    joins: list[Any] = []
    real_join = verify_split._join
    monkeypatch.setattr(verify_split, "_join", lambda *a: joins.append(a) or real_join(*a))
    split = await verify_split.verify_chain_split(chain, dsn, checkpoints=points, keys=KEYS,
                                                  min_rows=2, share=0.5, wait_for_second=wait)
    assert multiprocessing.active_children() == []
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
    assert report.checked == ROWS and report.checkpoints_matched == 3
    # the wrong root at 35 lies in the second half: the join checks it too
    assert _kinds(report) == [("checkpoint", 34), ("unanchored", 30)]


@pytest.mark.parametrize("statements", [
    ["UPDATE audit_entries SET seq = 100 WHERE seq = 15",  # swapped across the middle
     "UPDATE audit_entries SET seq = 15 WHERE seq = 16",
     "UPDATE audit_entries SET seq = 16 WHERE seq = 100"],
    ["UPDATE audit_entries SET event = overlay(event placing 'X' from 5 for 1) "
     "WHERE seq = 27"],  # the second half altered
    ["UPDATE audit_entries SET ids = ARRAY['x'] WHERE seq = 5"],  # the first half altered
    ["DELETE FROM audit_entries WHERE seq = 21"],  # a gap in the second half
    ["DELETE FROM audit_entries WHERE seq = 15"],  # the row before the middle is gone
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


async def test_a_spawned_second_process_gives_the_same_report(
        audit_db: AuditDb, kit: Kit, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where fork is unsafe (macOS) the second process is a fresh interpreter."""
    monkeypatch.setattr(verify_split, "_context", lambda: multiprocessing.get_context("spawn"))
    chain = AuditChain(audit_db)
    await chain.append([kit.incoming(i) for i in range(ROWS)])
    points = await _checkpoints(chain, audit_db.schema)
    report, joins = await _split_and_alone(chain, kit.DSN, points, monkeypatch)
    assert joins == 1 and report.ok and report.checked == ROWS


async def test_a_second_process_that_cannot_connect_changes_nothing(
        audit_db: AuditDb, kit: Kit, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    """It exits quietly (what went wrong could name the DSN) and this process checks every
    row itself."""
    chain = AuditChain(audit_db)
    await chain.append([kit.incoming(i) for i in range(ROWS)])
    points = await _checkpoints(chain, audit_db.schema)
    dsn = kit.DSN.rsplit("/", 1)[0] + "/no_such_database_x"
    report, joins = await _split_and_alone(chain, dsn, points, monkeypatch)
    assert joins == 0 and report.ok and report.checked == ROWS
    out, err = capfd.readouterr()
    assert "no_such_database_x" not in out + err and "Traceback" not in err


async def test_the_rows_divide_where_this_process_has_got_to(
        audit_db: AuditDb, kit: Kit, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows come one at a time and the second process is ready after row 5: what is left
    (6..39) divides at 6 + 17 = 23, down to a block of eight: 16."""
    chain = AuditChain(audit_db)
    await chain.append([kit.incoming(i) for i in range(ROWS)])
    points = await _checkpoints(chain, audit_db.schema)
    started: list[Any] = []
    real_start, real_links = verify_split._SecondProcess.start, verify_split.checked_links
    monkeypatch.setattr(verify_split._SecondProcess, "start",
                        lambda *a: started.append(real_start(*a)) or started[-1])

    async def one_at_a_time(*args: Any) -> AsyncIterator[Any]:
        async for batch in real_links(*args):
            for row in batch:
                yield [row]
                if row[0] == 5 and started:
                    await started[0].ready

    monkeypatch.setattr(verify_split, "checked_links", one_at_a_time)
    report, joins = await _split_and_alone(chain, kit.DSN, points, monkeypatch, wait=False)
    assert joins == 1 and started[0].middle == 16 and report.checked == ROWS


async def test_a_second_process_not_needed_is_sent_away(
        audit_db: AuditDb, kit: Kit, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows checked before the second process is ready are not handed over: it is stopped,
    none is left running, and nothing is joined."""
    chain = AuditChain(audit_db)
    await chain.append([kit.incoming(i) for i in range(ROWS)])
    points = await _checkpoints(chain, audit_db.schema)
    real_serve = verify_split._serve

    async def slow(*args: Any) -> None:
        await asyncio.sleep(0.5)  # in the second process: this one is done long before
        await real_serve(*args)

    monkeypatch.setattr(verify_split, "_serve", slow)
    report, joins = await _split_and_alone(chain, kit.DSN, points, monkeypatch, wait=False)
    assert joins == 0 and report.ok and report.checked == ROWS


async def test_where_no_process_can_be_started_every_row_is_checked_here(
        audit_db: AuditDb, kit: Kit, monkeypatch: pytest.MonkeyPatch) -> None:
    """As inside a daemonic worker, which multiprocessing refuses children."""
    def refuse(*_: Any) -> Any:
        raise AssertionError("daemonic processes are not allowed to have children")

    monkeypatch.setattr(verify_split._SecondProcess, "start", refuse)
    chain = AuditChain(audit_db)
    await chain.append([kit.incoming(i) for i in range(ROWS)])
    points = await _checkpoints(chain, audit_db.schema)
    report, joins = await _split_and_alone(chain, kit.DSN, points, monkeypatch)
    assert joins == 0 and report.ok and report.checked == ROWS


async def test_a_second_process_whose_first_is_gone_stops() -> None:
    """Its parent SIGKILLed, it is adopted; it stops at its next batch instead of checking
    rows nobody will read."""
    async def batches() -> AsyncIterator[list[Any]]:
        yield [(0, b"", b"h", b"l", 0, [])]

    rows = verify_split._recorded(batches(), [], [], parent=os.getppid() + 1)
    with pytest.raises(verify_split._Orphaned):
        await anext(rows)
    kept = [b async for b in verify_split._recorded(batches(), [], [], parent=os.getppid())]
    assert len(kept) == 1
