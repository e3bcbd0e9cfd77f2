"""The chain in PostgreSQL: each event once, append-only for every role, and every kind of
tampering through SQL found and named by verify."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace as Kit

import asyncpg
import pytest
from mts1b_foundation import GENESIS_HASH
from mts1b_operations.audit import verify as verify_module
from mts1b_operations.audit.chain import AuditChain
from mts1b_operations.audit.chainhash import audit_chain_hash, canonical_json
from mts1b_operations.audit.db import AuditDb
from mts1b_operations.audit.errors import AuditError
from mts1b_operations.audit.recorder import open_audit_db
from mts1b_operations.audit.verify import VerifyReport, verify_chain, verify_entries

pytestmark = pytest.mark.integration


async def verify(db: AuditDb) -> VerifyReport:
    """What ``audit verify`` runs, and the same over rows handed in."""
    chain = AuditChain(db)
    report = await verify_chain(chain)
    assert report.as_dict() == (await verify_entries(chain.entries())).as_dict()
    return report


def kinds(report: VerifyReport) -> list[tuple[str, int | None]]:
    return [(f.kind, f.seq) for f in report.findings if f.kind != "unanchored"]


async def test_each_event_is_appended_once(audit_db: AuditDb, kit: Kit) -> None:
    chain = AuditChain(audit_db)
    first = await chain.append([kit.incoming(i) for i in range(5)] + [kit.incoming(2)])
    assert [e.record.sequence for e in first.appended] == [0, 1, 2, 3, 4]
    assert first.duplicates == 1
    again = await chain.append([kit.incoming(i) for i in range(3, 8)])
    assert [e.record.msg_id for e in again.appended] == ["evt-5", "evt-6", "evt-7"]
    assert again.duplicates == 2 and again.head.size == 8
    # the same id on another domain's stream is another event
    other = await chain.append([kit.incoming(1, subject="mts.v1.treasury.nav.struck")])
    assert len(other.appended) == 1
    report = await verify(audit_db)
    assert report.ok and report.checked == 9
    assert [r.seq for r in await chain.mentioning("ord-3")] == [3]
    assert len(await chain.mentioning("F1")) == 9


async def test_concurrent_appenders_keep_one_chain(audit_db: AuditDb, kit: Kit) -> None:
    chain = AuditChain(audit_db)
    await asyncio.gather(*(chain.append([kit.incoming(100 * k + i) for i in range(20)])
                           for k in range(5)))
    report = await verify(audit_db)
    assert report.ok and report.checked == 100
    assert (await chain.head()).size == 100


async def test_no_role_may_change_or_remove_a_row(audit_db: AuditDb, kit: Kit) -> None:
    await AuditChain(audit_db).append([kit.incoming(i) for i in range(3)])
    for statement in ("UPDATE audit_entries SET subject = 'x' WHERE seq = 1",
                      "DELETE FROM audit_entries WHERE seq = 2",
                      "TRUNCATE audit_entries", "TRUNCATE audit_checkpoints"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await audit_db.pool.execute(statement)
    role = f"au_rec_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(kit.DSN)
    await admin.execute(f"CREATE ROLE {role} LOGIN")
    try:
        await audit_db.grant_recorder(role)
        user_dsn = kit.DSN.replace("postgres@", f"{role}@", 1)
        with pytest.raises(AuditError, match="run `mts mts1b-operations audit init` as"):
            await open_audit_db(user_dsn, f"au_none_{uuid.uuid4().hex[:8]}")
        recorder_db = await AuditDb.open_existing(user_dsn, schema=audit_db.schema)
        try:
            result = await AuditChain(recorder_db).append([kit.incoming(3)])
            assert result.head.size == 4
            for statement in ("UPDATE audit_entries SET subject = 'x' WHERE seq = 1",
                              "DELETE FROM audit_entries WHERE seq = 2",
                              "TRUNCATE audit_entries",
                              "UPDATE audit_checkpoints SET tree_size = 1"):
                with pytest.raises(asyncpg.InsufficientPrivilegeError,
                                   match="permission denied"):
                    await recorder_db.pool.execute(statement)
        finally:
            await recorder_db.close()
    finally:
        await admin.execute(f"DROP OWNED BY {role}")
        await admin.execute(f"DROP ROLE {role}")
        await admin.close()


async def test_an_altered_event_or_column_is_named(audit_db: AuditDb, kit: Kit) -> None:
    await AuditChain(audit_db).append([kit.incoming(i) for i in range(6)])
    await kit.tamper(audit_db, "UPDATE audit_entries SET event = overlay(event placing 'X' "
                     "from 5 for 1) WHERE seq = 2",
                     "UPDATE audit_entries SET ids = ARRAY['ord-other'] WHERE seq = 4")
    report = await verify(audit_db)
    assert not report.ok
    assert kinds(report) == [("altered", 2), ("altered", 4)]
    assert "payload_digest" in report.findings[0].detail
    assert "column ids" in report.findings[1].detail


async def test_a_rewritten_entry_is_named(audit_db: AuditDb, kit: Kit) -> None:
    await AuditChain(audit_db).append([kit.incoming(i) for i in range(4)])
    await kit.tamper(audit_db, "UPDATE audit_entries SET entry = convert_to(replace(convert_from("
                     "entry, 'UTF8'), 'ord-1', 'ord-9'), 'UTF8') WHERE seq = 1")
    report = await verify(audit_db)
    assert ("altered", 1) in kinds(report)


async def test_a_deleted_row_is_named(audit_db: AuditDb, kit: Kit) -> None:
    await AuditChain(audit_db).append([kit.incoming(i) for i in range(6)])
    await kit.tamper(audit_db, "DELETE FROM audit_entries WHERE seq = 3")
    report = await verify(audit_db)
    assert kinds(report) == [("deleted", 3)]


async def test_a_deleted_last_row_is_found_by_the_checkpoint(audit_db: AuditDb, kit: Kit) -> None:
    """Removing the newest entries leaves a valid shorter chain: only a signed checkpoint
    of the longer one exposes it (see test_audit_recorder for signed checkpoints)."""
    await AuditChain(audit_db).append([kit.incoming(i) for i in range(4)])
    await kit.tamper(audit_db, "DELETE FROM audit_entries WHERE seq = 3")
    report = await verify(audit_db)
    assert report.ok and report.findings[-1].kind == "unanchored"


async def test_an_inserted_row_is_named(audit_db: AuditDb, kit: Kit) -> None:
    chain = AuditChain(audit_db)
    await chain.append([kit.incoming(i) for i in range(6)])
    row2 = await chain.entry(2)
    assert row2 is not None
    # A forged entry 3, correctly hashed onto entry 2, slid in by renumbering the rest.
    forged = canonical_json({"sequence": 3, "msg_id": "forged", "subject": row2.subject,
                             "ids": ["ord-x"], "payload_digest": "0" * 64})
    forged_hash = audit_chain_hash(row2.hash, forged)
    await kit.tamper(audit_db, "UPDATE audit_entries SET seq = seq + 100 WHERE seq >= 3",
                 "UPDATE audit_entries SET seq = seq - 99 WHERE seq >= 103",
                 "INSERT INTO audit_entries (seq, domain, msg_id, subject, ids, producer_ts, "
                 "recorded_ts, prev_hash, hash, entry, event) SELECT 3, domain, 'forged', "
                 f"subject, ARRAY['ord-x'], producer_ts, recorded_ts, '\\x{row2.hash}', "
                 f"'\\x{forged_hash}', '\\x{forged.hex()}', event FROM audit_entries "
                 "WHERE seq = 2")
    report = await verify(audit_db)
    found = kinds(report)
    assert ("inserted", 3) in found, report.findings
    assert not any(kind in {"deleted", "reordered", "broken"} for kind, _ in found)


async def test_reordered_rows_are_named(audit_db: AuditDb, kit: Kit) -> None:
    await AuditChain(audit_db).append([kit.incoming(i) for i in range(6)])
    await kit.tamper(audit_db, "UPDATE audit_entries SET seq = 100 WHERE seq = 2",
                 "UPDATE audit_entries SET seq = 2 WHERE seq = 3",
                 "UPDATE audit_entries SET seq = 3 WHERE seq = 100")
    report = await verify(audit_db)
    assert kinds(report) == [("reordered", 2)], report.findings
    assert "stored at row 3" in report.findings[0].detail


async def test_verify_a_range(audit_db: AuditDb, kit: Kit) -> None:
    chain = AuditChain(audit_db)
    await chain.append([kit.incoming(i) for i in range(10)])
    before = await chain.entry(4)
    assert before is not None
    report = await verify_entries(chain.entries(5, 8), start=5, prev_hash=before.hash)
    assert report.ok and report.checked == 3
    wrong = await verify_entries(chain.entries(5, 8), start=5, prev_hash=GENESIS_HASH)
    assert [(f.kind, f.seq) for f in wrong.findings] == [("broken", 5)]


async def test_an_entry_that_is_no_longer_json_is_named(audit_db: AuditDb, kit: Kit) -> None:
    chain = AuditChain(audit_db)
    await chain.append([kit.incoming(i) for i in range(4)])
    await kit.tamper(audit_db, "UPDATE audit_entries SET entry = 'not json' WHERE seq = 1")
    report = await verify(audit_db)
    assert kinds(report) == [("altered", 1), ("altered", 1)]
    assert [f.detail for f in report.findings[:2]] == [
        "row 1: its hash is not SHA-256 of prev_hash and the entry",
        "row 1: its entry is not JSON"]


def _entry_sql(old: str, new: str) -> str:
    """Rewrite the last row's entry text (``old`` a POSIX regex) and give it a hash that
    matches, as a superuser covering a rewrite would."""
    return (f"UPDATE audit_entries SET entry = convert_to(regexp_replace(convert_from(entry, "
            f"'UTF8'), '{old}', '{new}'), 'UTF8') WHERE seq = 2")


_REHASH = "UPDATE audit_entries SET hash = sha256(prev_hash || entry) WHERE seq = 2"
_TS = '"ts":"[^"]*"'


@pytest.mark.parametrize(("statements", "expected"), [
    # the same value spelled with an escape, or a key given twice: still what json.loads reads
    ([_entry_sql('"msg_id":"evt-2"', '"msg_id":"\\\\u0065vt-2"')], []),
    ([_entry_sql('"sequence":2', '"sequence":7,"sequence":2')], []),
    # times the fast comparison spells differently from PostgreSQL
    ([_entry_sql(_TS, '"ts":"2026-01-02T03:04:05.500000Z"'),
      "UPDATE audit_entries SET producer_ts = '2026-01-02 03:04:05.5Z' WHERE seq = 2"], []),
    ([_entry_sql(_TS, '"ts":"2026-01-02T03:04:05Z"'),
      "UPDATE audit_entries SET producer_ts = '2026-01-02 03:04:05Z' WHERE seq = 2"], []),
    (["UPDATE audit_entries SET producer_ts = 'infinity' WHERE seq = 2"], ["producer_ts"]),
    (["UPDATE audit_entries SET ids = ARRAY['ord-2', NULL] WHERE seq = 2"], ["ids"]),
    ([_entry_sql('"ids":\\[[^]]*\\]', '"ids":["NULL"]'),
      "UPDATE audit_entries SET ids = ARRAY[NULL]::text[] WHERE seq = 2"], ["ids"]),
    (["UPDATE audit_entries SET domain = 'treasury' WHERE seq = 2"], ["domain"]),
    ([_entry_sql('"subject":"[^"]*"', '"subject":"mts.v1"'),
      "UPDATE audit_entries SET subject = 'mts.v1' WHERE seq = 2"], ["domain"]),
    ([_entry_sql('"msg_id":"evt-2"', '"msg_id":"\u00e9vt-2"')], ["msg_id"]),
    ([_entry_sql('"msg_id":"evt-2"', '"msg_id":"evt-\x01"')], ["not JSON"]),
])
async def test_the_quick_check_and_the_full_one_agree(
        audit_db: AuditDb, kit: Kit, statements: list[str], expected: list[str]) -> None:
    """``audit verify`` compares most rows by string (its fast path) and hands the rest to
    the full check; on rows crafted to sit at the edge between them, its report equals that
    of the full check over every row (``verify`` asserts it) and names the same column."""
    await AuditChain(audit_db).append([kit.incoming(i) for i in range(3)])
    await kit.tamper(audit_db, *statements, _REHASH)
    report = await verify(audit_db)
    details = [f.detail for f in report.findings if f.kind != "unanchored"]
    assert len(details) == len(expected), details
    for detail, word in zip(details, expected, strict=True):
        assert detail.startswith("row 2: ") and word in detail


def test_the_entry_pattern_gives_its_groups_in_the_order_the_quick_check_unpacks() -> None:
    """The quick check takes the pattern's groups by position (``groups()`` is cheaper than
    asking by name a million times); a field added to the entry must not shift them."""
    index = verify_module._ENTRY.groupindex
    assert tuple(sorted(index, key=index.__getitem__)) == verify_module._GROUPS
