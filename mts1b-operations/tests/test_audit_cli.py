"""The audit commands as an operator runs them: the FAQ's ``audit show --subject-id``,
``verify`` failing with the tampered row named, ``proof`` and ``consistency`` verifying."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace as Kit

import pytest
from mts1b_operations.audit.chain import AuditChain
from mts1b_operations.audit.checkpoints import (
    sign_checkpoint,
    store_checkpoint,
    write_checkpoint_file,
)
from mts1b_operations.audit.db import AuditDb
from mts1b_operations.audit.errors import AuditInputError
from mts1b_operations.audit.merkle import leaf_hash, tree_root
from mts1b_operations.cli import app
from mts1b_platform.signing import SigningKey
from typer.testing import CliRunner

pytestmark = pytest.mark.integration
KEY = SigningKey.generate("ops-audit")


@pytest.fixture
async def chain_of_ten(audit_db: AuditDb, kit: Kit, tmp_path: Path) -> AuditDb:
    """Ten entries, entries 3 and 9 about ord-abc, a signed checkpoint of the first eight
    in the table and in a directory, and the signer's key registry at tmp_path/keys.json."""
    chain = AuditChain(audit_db)
    await chain.append([kit.incoming(i, order="ord-abc" if i in (3, 9) else None)
                        for i in range(10)])
    root = tree_root([leaf_hash(e) for e in await chain.entry_bytes(8)])
    row = await chain.entry(7)
    assert row is not None
    checkpoint = sign_checkpoint(KEY, log=audit_db.schema, tree_size=8, root=root,
                                 chain_hash=row.hash)
    await store_checkpoint(audit_db, checkpoint)
    write_checkpoint_file(tmp_path / "ckpt", checkpoint)
    (tmp_path / "keys.json").write_text(json.dumps(
        {"keys": [KEY.registered(["operations"]).entry()]}))
    return audit_db


def run(db: AuditDb, kit: Kit, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["audit", *args, "--schema", db.schema],
                                env={"MTS_DATABASE_URL": kit.DSN})
    return result.exit_code, result.output


def test_show_every_event_about_an_order(chain_of_ten: AuditDb, kit: Kit) -> None:
    code, out = run(chain_of_ten, kit, "show", "--subject-id", "ord-abc")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("#3  2026-12-07T14:30:00.003000+00:00  "
                               "mts.v1.oms.orders.accepted  by oms  [ok, in checkpoint 8]")
    assert lines[3].startswith("#9 ") and "after the last checkpoint (unanchored)" in lines[3]
    code, out = run(chain_of_ten, kit, "show", "--subject-id", "ord-abc", "--json")
    shown = json.loads(out)
    assert [(e["seq"], e["status"], e["record"]["ids"]) for e in shown] == [
        (3, "ok", ["ord-abc", "F1", "evt-3"]), (9, "ok", ["ord-abc", "F1", "evt-9"])]
    assert shown[0]["record"]["subject_id"] == "ord-abc"  # not the event's own id
    assert shown[0]["event"]["order_id"] == "ord-abc"
    assert run(chain_of_ten, kit, "show", "--subject-id", "ord-none")[1] == (
        "no recorded event mentions 'ord-none'\n")


def test_verify_passes_then_names_the_tampered_row(chain_of_ten: AuditDb, kit: Kit,
                                                   tmp_path: Path) -> None:
    ext = ["--checkpoints", str(tmp_path / "ckpt"), "--keys", str(tmp_path / "keys.json")]
    code, out = run(chain_of_ten, kit, "verify", *ext)
    assert code == 0, out
    assert out.splitlines() == [
        "UNANCHORED entry 8: entries 8..9 come after the last checkpoint that matched",
        "audit verify: ok - 10 rows from 0, 1 checkpoints matched, anchored up to 8"]
    code, out = run(chain_of_ten, kit, "verify", "--from", "4", "--to", "6", "--json")
    assert code == 0 and json.loads(out)["checked"] == 2
    asyncio.run(kit.tamper(
        chain_of_ten, "UPDATE audit_entries SET event = convert_to(replace(convert_from(event, "
        "'UTF8'), 'ord-abc', 'ord-xyz'), 'UTF8') WHERE seq = 3"))
    code, out = run(chain_of_ten, kit, "verify", *ext)
    assert code == 1
    assert out.splitlines()[0] == ("ALTERED entry 3: row 3: its event is not the one the "
                                   "entry's payload_digest names")
    assert out.splitlines()[-1].startswith("audit verify: FAILED")
    code, out = run(chain_of_ten, kit, "show", "--subject-id", "ord-abc")
    assert "FAILED: its event is not the one" in out.splitlines()[0]


def test_inclusion_and_consistency_proofs(chain_of_ten: AuditDb, kit: Kit) -> None:
    code, out = run(chain_of_ten, kit, "proof", "5", "--json")
    proof = json.loads(out)
    assert code == 0 and proof["verified"] is True and proof["tree_size"] == 8
    assert proof["checkpoint"]["root_hash"] == proof["root_hash"] and len(proof["path"]) == 3
    code, out = run(chain_of_ten, kit, "proof", "9")
    assert code == 0 and out.splitlines()[0] == (
        "entry 9 in the tree of 10 (no checkpoint: the table's own root)")
    assert out.splitlines()[-1].endswith("verified: True")
    code, out = run(chain_of_ten, kit, "consistency", "3", "10", "--json")
    assert code == 0 and json.loads(out)["verified"] is True
    result = CliRunner().invoke(app, ["audit", "proof", "12", "--schema", chain_of_ten.schema],
                                env={"MTS_DATABASE_URL": kit.DSN})
    assert result.exit_code == 1 and isinstance(result.exception, AuditInputError)
    assert str(result.exception) == ("[OPERATIONS.AUDIT.BAD_INPUT] entry: the chain has 10 "
                                     "entries (got 12)")
