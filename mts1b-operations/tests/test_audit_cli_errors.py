"""The audit commands' errors as a new user meets them, through the ``mts`` entry point: one
line naming the option and its value, never a bare exception type, never a password, and
nothing created by a command that refuses."""

from __future__ import annotations

import asyncio
import json
import uuid
from types import SimpleNamespace as Kit

import asyncpg
import pytest
from mts1b_operations.audit.chain import AuditChain
from mts1b_operations.audit.db import AuditDb

pytestmark = pytest.mark.integration
BIG = "99999999999999999999999"
BAD_INPUT = "mts: [OPERATIONS.AUDIT.BAD_INPUT]"
DSN_FORM = "write postgresql://USER@HOST:PORT/DATABASE (--dsn or $MTS_DATABASE_URL)"


def mts(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``mts mts1b-operations audit ARGS`` as typed: its exit status and its output."""
    from mts1b_platform.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["mts1b-operations", "audit", *args])
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 0), out + err


@pytest.fixture
async def chain_of_three(audit_db: AuditDb, kit: Kit, monkeypatch: pytest.MonkeyPatch
                         ) -> AuditDb:
    """Three entries, no checkpoint; the commands reach it through $MTS_DATABASE_URL."""
    await AuditChain(audit_db).append([kit.incoming(i) for i in range(3)])
    monkeypatch.setenv("MTS_DATABASE_URL", kit.DSN)
    monkeypatch.setenv("MTS_AUDIT_SCHEMA", audit_db.schema)
    return audit_db


async def _sql(dsn: str, query: str, *args: object) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


def test_init_with_a_role_that_does_not_exist_creates_nothing(
        kit: Kit, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        asyncio.run(_sql(kit.DSN, "SELECT 1"))
    except (OSError, asyncpg.PostgresError):
        pytest.skip(f"PostgreSQL not reachable at {kit.DSN}")
    monkeypatch.setenv("MTS_DATABASE_URL", kit.DSN)
    tag = uuid.uuid4().hex[:10]
    schema, role = f"au_t_{tag}", f"au_rec_{tag}"
    schema_exists = "SELECT count(*) FROM pg_namespace WHERE nspname = $1"
    try:
        code, out = mts(capsys, "init", "--schema", schema, "--grant", role)
        assert code == 1
        assert out == (f"{BAD_INPUT} --grant: no such role in the database: create it first "
                       f"(CREATE ROLE {role} LOGIN, with a password or another way to log in),"
                       f" then run `audit init --grant` again; nothing was created "
                       f"(got '{role}')\n")
        assert asyncio.run(_sql(kit.DSN, schema_exists, schema)) == 0
        # once the role exists, the same command does it all
        asyncio.run(_sql(kit.DSN, f"CREATE ROLE {role} LOGIN"))
        code, out = mts(capsys, "init", "--schema", schema, "--grant", role)
        assert (code, out) == (0, f"audit schema {schema} ready; {role} may insert and "
                                  "select only\n")
        assert asyncio.run(_sql(kit.DSN, "SELECT has_table_privilege($1, $2, 'INSERT')",
                                role, f"{schema}.audit_entries")) is True
    finally:
        asyncio.run(_sql(kit.DSN, f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        asyncio.run(_sql(kit.DSN, f"DROP ROLE IF EXISTS {role}"))


def test_consistency_names_the_argument_and_the_chain_size(
        chain_of_three: AuditDb, capsys: pytest.CaptureFixture[str]) -> None:
    assert mts(capsys, "consistency", "3", "1") == (1, (
        f"{BAD_INPUT} old: must be at most new (1); the chain has 3 entries (got 3)\n"))
    assert mts(capsys, "consistency", "1", "5") == (1, (
        f"{BAD_INPUT} new: must be at most the chain's size (3) (got 5)\n"))
    code, out = mts(capsys, "consistency", "1", "3", "--json")
    assert code == 0 and json.loads(out)["verified"] is True


@pytest.mark.parametrize(("args", "field"), [
    (("verify", "--to", BIG), "--to"),
    (("verify", "--from", BIG), "--from"),
    (("proof", BIG), "entry"),
    (("proof", "0", "--size", BIG), "--size"),
    (("consistency", "1", BIG), "new"),
    (("consistency", BIG, BIG), "old"),
])
def test_numbers_beyond_bigint_are_refused_by_name(
        chain_of_three: AuditDb, capsys: pytest.CaptureFixture[str], args: tuple[str, ...],
        field: str) -> None:
    assert mts(capsys, *args) == (1, (
        f"{BAD_INPUT} {field}: must be at most 9223372036854775807, the largest entry number "
        f"the chain can hold (got {BIG})\n"))


def test_proof_size_must_hold_the_entry(chain_of_three: AuditDb,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """0 is no tree size (it used to mean "the whole chain" by accident)."""
    assert mts(capsys, "proof", "1", "--size", "0") == (1, (
        f"{BAD_INPUT} --size: must be at least 1 (a tree of that many entries); leave it out "
        "for the smallest checkpoint holding the entry, else the whole chain (got 0)\n"))
    assert mts(capsys, "proof", "1", "--size", "1") == (1, (
        f"{BAD_INPUT} --size: must be above the entry (1): the tree of the first 1 entries "
        "does not hold it (got 1)\n"))
    assert mts(capsys, "proof", "1", "--size", "4") == (1, (
        f"{BAD_INPUT} --size: must be at most the chain's size (3) (got 4)\n"))
    code, out = mts(capsys, "proof", "1", "--size", "2", "--json")
    assert code == 0 and json.loads(out)["tree_size"] == 2 and json.loads(out)["verified"]


def test_verify_without_a_matched_checkpoint_says_nothing_is_anchored(
        chain_of_three: AuditDb, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = mts(capsys, "verify")
    assert code == 0
    assert out.splitlines()[-1] == ("audit verify: ok - 3 rows from 0, 0 checkpoints "
                                    "matched, nothing anchored")
    code, out = mts(capsys, "verify", "--json")
    assert code == 0 and json.loads(out)["anchored"] == 0


@pytest.mark.parametrize("subject_id", ["", "   "])
def test_show_refuses_a_blank_subject_id(chain_of_three: AuditDb,
                                         capsys: pytest.CaptureFixture[str],
                                         subject_id: str) -> None:
    assert mts(capsys, "show", "--subject-id", subject_id) == (1, (
        f"{BAD_INPUT} --subject-id: must not be empty or blank: give an id the events "
        f"mention (an order, fund, strategy, ...) (got {subject_id!r})\n"))


@pytest.mark.parametrize("command", [("verify",), ("show", "--subject-id", "ord-1"),
                                     ("init",), ("init", "--grant", "audit_recorder")])
def test_a_refused_connection_names_the_server_not_the_password(
        capsys: pytest.CaptureFixture[str], command: tuple[str, ...]) -> None:
    code, out = mts(capsys, *command, "--schema", "au_t_unreached",
                    "--dsn", "postgresql://auditor:s3cret-pw@127.0.0.1:1/trading")
    assert (code, out) == (1, "mts: [OPERATIONS.AUDIT] cannot connect to PostgreSQL at "
                              "127.0.0.1:1/trading (user auditor): ConnectionRefusedError\n")


@pytest.mark.parametrize(("dsn", "problem", "shown"), [
    ("postgresql://u:s3cret-pw@127.0.0.1:notaport/x", "its port is not a number from 1 to "
     "65535", "postgresql://u:***@127.0.0.1:notaport/x"),
    ("postgresql://u:s3cret-pw@127.0.0.1:70000/x", "its port is not a number from 1 to "
     "65535", "postgresql://u:***@127.0.0.1:70000/x"),
    ("mysql://u@h/x", "its scheme is not postgresql://", "mysql://u@h/x"),
    ("not a dsn", "it is not a URL", "***"),
    ("", "it is not a URL", ""),
    # an unencoded / in the password: u and 12 would pass for a host and a port
    ("postgresql://u:12/s3cret-pw@h/x", "it has an @ besides the one before the host: "
     "percent-encode the password's @ / ? # as %40 %2F %3F %23", "***"),
    ("postgresql://h1,,h2/x", "a host of it is empty or not a name, an address or [an IPv6 "
     "address]", "postgresql://h1,,***"),
    ("postgresql://u:s3cret-pw@h/x?sslmode", "its query is not key=value pairs joined by &",
     "postgresql://u:***@h/x?sslmode"),
])
@pytest.mark.parametrize("command", [("verify",), ("init",)])
def test_a_malformed_dsn_is_refused_by_name(capsys: pytest.CaptureFixture[str],
                                            command: tuple[str, ...], dsn: str, problem: str,
                                            shown: str) -> None:
    code, out = mts(capsys, *command, "--schema", "au_t_unreached", "--dsn", dsn)
    assert (code, out) == (1, f"{BAD_INPUT} --dsn: {problem}; {DSN_FORM} (got {shown!r})\n")
    assert "s3cret" not in out
