"""``mts mts1b-operations audit ...`` and ``serve audit``: the chain from the command line.

Every command works on the chain's PostgreSQL schema (``--dsn`` / ``$MTS_DATABASE_URL``,
``--schema`` / ``$MTS_AUDIT_SCHEMA``). Errors are one line naming the field and the value;
``verify`` exits with status 1 when it finds the chain altered, and says what and where.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from mts1b_foundation import GENESIS_HASH

from mts1b_operations.audit.chain import AuditChain
from mts1b_operations.audit.checkpoints import load_checkpoint_dir, merged, stored_checkpoints
from mts1b_operations.audit.db import DEFAULT_SCHEMA, AuditDb
from mts1b_operations.audit.errors import AuditError, AuditInputError
from mts1b_operations.audit.merkle import (
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    tree_root,
    verify_consistency,
    verify_inclusion,
)
from mts1b_operations.audit.show import entry_views
from mts1b_operations.audit.verify import VerifyReport
from mts1b_operations.audit.verify_split import verify_chain_split

__all__ = ["audit_app", "register"]

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
MAX_SEQ = 2**63 - 1
"""The largest sequence number or tree size an argument may name: PostgreSQL's ``bigint``, the
type of the chain's ``seq`` column. A larger number is refused as the option it came from,
where the database would answer with a DataError naming nothing."""
T = TypeVar("T")

audit_app = typer.Typer(help="The audit chain: show, verify, prove.", no_args_is_help=True,
                        add_completion=False)

Dsn = Annotated[str, typer.Option(envvar="MTS_DATABASE_URL", help="PostgreSQL DSN")]
Schema = Annotated[str, typer.Option(envvar="MTS_AUDIT_SCHEMA", help="the chain's schema")]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON instead of text")]
Keys = Annotated[Path | None, typer.Option(
    envvar="MTS_AUDIT_KEYS", help="key registry (JSON) holding the checkpoint signer's public "
                                  "key; without it signatures are not checked")]
Namespace = Annotated[str | None, typer.Option(envvar="MTS_NATS_NAMESPACE",
                                               help="NATS namespace prefix")]
CheckpointDir = Annotated[Path | None, typer.Option(
    "--checkpoints", envvar="MTS_AUDIT_CHECKPOINT_DIR",
    help="directory of checkpoints kept outside the database")]


async def _object_store_copies(namespace: str | None, schema: str) -> list[Any]:
    from mts1b_platform.bus import Bus

    from mts1b_operations.audit.checkpoints import bus_checkpoints

    overrides: dict[str, Any] = {"namespace": namespace} if namespace else {}
    bus = await Bus.connect(**overrides)
    try:
        return await bus_checkpoints(bus, schema)
    finally:
        await bus.drain()


def _within_bigint(field: str, value: int | None) -> None:
    """Refuse an entry number or tree size above :data:`MAX_SEQ`, naming the option and
    the value (the database would only say DataError)."""
    if value is not None and value > MAX_SEQ:
        raise AuditInputError(field, value, f"must be at most {MAX_SEQ}, the largest entry "
                                            "number the chain can hold")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def _open(dsn: str, schema: str) -> AuditDb:
    return await AuditDb.open_existing(dsn, schema=schema)


@audit_app.command("init")
def init(dsn: Dsn = DEFAULT_DSN, schema: Schema = DEFAULT_SCHEMA,
         grant: Annotated[str | None, typer.Option(
             help="a role to let append and read only (the recorder's)")] = None) -> None:
    """Create the chain's schema (as its owner) and, with --grant, the recorder's rights.
    The role must exist already (CREATE ROLE ... LOGIN): it is checked before anything is
    created."""
    async def go() -> None:
        if grant is not None:
            await AuditDb.check_role(dsn, grant)
        db = await AuditDb.open(dsn, schema=schema)
        try:
            if grant:
                await db.grant_recorder(grant)
        finally:
            await db.close()
    _run(go())
    typer.echo(f"audit schema {schema} ready" + (f"; {grant} may insert and select only"
                                                  if grant else ""))


@audit_app.command("show")
def show(subject_id: Annotated[str, typer.Option("--subject-id", help="an id the events "
                                                 "mention: an order, fund, strategy, ...")],
         as_json: AsJson = False, dsn: Dsn = DEFAULT_DSN, schema: Schema = DEFAULT_SCHEMA
         ) -> None:
    """Every recorded event that mentions the id, across services, in chain order, with
    whether each entry still verifies."""
    if not subject_id.strip():
        raise AuditInputError("--subject-id", subject_id, "must not be empty or blank: give "
                              "an id the events mention (an order, fund, strategy, ...)")

    async def go() -> list[Any]:
        db = await _open(dsn, schema)
        try:
            chain = AuditChain(db)
            rows = await chain.mentioning(subject_id)
            return await entry_views(chain, rows, await stored_checkpoints(db))
        finally:
            await db.close()
    views = _run(go())
    if as_json:
        typer.echo(json.dumps([v.as_dict() for v in views], indent=1))
        return
    if not views:
        typer.echo(f"no recorded event mentions {subject_id!r}")
        return
    for view in views:
        row, record = view.row, view.record
        actor = record.actor if record is not None else "?"
        typer.echo(f"#{row.seq}  {row.producer_ts.isoformat()}  {row.subject}  by {actor}  "
                   f"[{view.status}]")
        typer.echo(f"    recorded {row.recorded_ts.isoformat()}  msg {row.msg_id}  ids "
                   f"{', '.join(row.ids)}")
        typer.echo(f"    {json.dumps(view.event, sort_keys=True)[:300]}")


def _print_report(report: VerifyReport, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=1))
        return
    for finding in report.findings:
        where = "" if finding.seq is None else f" entry {finding.seq}:"
        typer.echo(f"{finding.kind.upper()}{where} {finding.detail}")
    verdict = "ok" if report.ok else "FAILED"
    # "anchored up to 0" read as if entry 0 were anchored; the JSON keeps the number
    anchored = (f"anchored up to {report.anchored}" if report.anchored
                else "nothing anchored")
    typer.echo(f"audit verify: {verdict} - {report.checked} rows from {report.start}, "
               f"{report.checkpoints_matched} checkpoints matched, {anchored}")


@audit_app.command("verify")
def verify(start: Annotated[int, typer.Option("--from", min=0, help="first entry")] = 0,
           stop: Annotated[int | None, typer.Option("--to", min=1,
                                                    help="entry after the last")] = None,
           checkpoints: CheckpointDir = None, keys: Keys = None,
           object_store: Annotated[bool, typer.Option(
               "--object-store", help="also check the copies in the NATS object store")
           ] = False,
           namespace: Namespace = None, as_json: AsJson = False,
           dsn: Dsn = DEFAULT_DSN, schema: Schema = DEFAULT_SCHEMA) -> None:
    """Recompute every hash and link from --from to --to, and every checkpoint's Merkle root
    (from entry 0); name each altered, deleted, inserted or reordered row."""
    from mts1b_platform.signing import KeyRegistry

    _within_bigint("--from", start)
    _within_bigint("--to", stop)
    if stop is not None and stop <= start:
        raise AuditInputError("--to", stop, f"must be above --from ({start})")
    registry = KeyRegistry.load(keys) if keys is not None else None
    external, unreadable = (load_checkpoint_dir(checkpoints, schema) if checkpoints
                            else ([], []))

    async def go() -> VerifyReport:
        db = await _open(dsn, schema)
        try:
            chain = AuditChain(db)
            prev = GENESIS_HASH
            if start > 0:
                before = await chain.entry(start - 1)
                if before is None:
                    raise AuditInputError("--from", start, f"entry {start - 1} is not in the "
                                          "chain, so the first link cannot be checked")
                prev = before.hash
            copies = await _object_store_copies(namespace, schema) if object_store else []
            return await verify_chain_split(
                chain, dsn, start=start, stop=stop, prev_hash=prev, keys=registry,
                checkpoints=merged(await stored_checkpoints(db), external, copies))
        finally:
            await db.close()
    report = _run(go())
    for name in unreadable:
        typer.echo(f"CHECKPOINT {checkpoints}/{name} is not a checkpoint")
    _print_report(report, as_json)
    if not report.ok or unreadable:
        raise typer.Exit(1)


@audit_app.command("proof")
def proof(entry: Annotated[int, typer.Argument(min=0, help="the entry's sequence number")],
          size: Annotated[int | None, typer.Option(
              help="the tree size to prove it in, at least 1 (default: the smallest "
                   "checkpoint holding it, else the whole chain)")] = None,
          as_json: AsJson = False, dsn: Dsn = DEFAULT_DSN, schema: Schema = DEFAULT_SCHEMA
          ) -> None:
    """An RFC 6962 inclusion proof of ENTRY, checked against the checkpoint's signed root."""
    _within_bigint("entry", entry)
    _within_bigint("--size", size)
    if size is not None and size < 1:  # not "the whole chain": a tree of no entries
        raise AuditInputError("--size", size, "must be at least 1 (a tree of that many "
                              "entries); leave it out for the smallest checkpoint holding "
                              "the entry, else the whole chain")

    async def go() -> dict[str, Any]:
        db = await _open(dsn, schema)
        try:
            leaves = [leaf_hash(e) for e in await AuditChain(db).entry_bytes()]
            stored = await stored_checkpoints(db)
        finally:
            await db.close()
        covering = [c for c in stored if c.tree_size > entry and (size is None
                                                                   or c.tree_size == size)]
        tree = size if size is not None else (covering[0].tree_size if covering
                                              else len(leaves))
        if entry >= len(leaves):
            raise AuditInputError("entry", entry, f"the chain has {len(leaves)} entries")
        if tree > len(leaves):
            raise AuditInputError("--size", tree, f"must be at most the chain's size "
                                  f"({len(leaves)})")
        if entry >= tree:
            raise AuditInputError("--size", tree, f"must be above the entry ({entry}): the "
                                  f"tree of the first {tree} entries does not hold it")
        path = inclusion_proof(leaves, entry, tree)
        root = tree_root(leaves[:tree])
        signed = covering[0] if covering and covering[0].tree_size == tree else None
        if signed is not None and signed.root_hash != root.hex():
            raise AuditError(f"checkpoint {tree} signs root {signed.root_hash}, the table "
                             f"gives {root.hex()}: run `audit verify`", tree_size=tree)
        return {"entry": entry, "tree_size": tree, "leaf_hash": leaves[entry].hex(),
                "path": [p.hex() for p in path], "root_hash": root.hex(),
                "checkpoint": None if signed is None else signed.model_dump(mode="json"),
                "verified": verify_inclusion(leaves[entry], entry, tree, path, root)}
    result = _run(go())
    if as_json:
        typer.echo(json.dumps(result, indent=1))
        return
    anchor = ("signed checkpoint" if result["checkpoint"] else "no checkpoint: the table's "
              "own root")
    typer.echo(f"entry {entry} in the tree of {result['tree_size']} ({anchor})")
    typer.echo(f"leaf {result['leaf_hash']}")
    for i, node in enumerate(result["path"]):
        typer.echo(f"path[{i}] {node}")
    typer.echo(f"root {result['root_hash']}  verified: {result['verified']}")


@audit_app.command("consistency")
def consistency(old: Annotated[int, typer.Argument(min=1, help="the earlier tree size")],
                new: Annotated[int, typer.Argument(min=1, help="the later tree size")],
                as_json: AsJson = False, dsn: Dsn = DEFAULT_DSN,
                schema: Schema = DEFAULT_SCHEMA) -> None:
    """An RFC 6962 consistency proof: the tree of NEW entries extends that of OLD."""
    _within_bigint("old", old)
    _within_bigint("new", new)

    async def go() -> dict[str, Any]:
        db = await _open(dsn, schema)
        try:
            chain = AuditChain(db)
            size = (await chain.head()).size
            if new > size:
                raise AuditInputError("new", new, f"must be at most the chain's size ({size})")
            if old > new:
                raise AuditInputError("old", old, f"must be at most new ({new}); the chain "
                                      f"has {size} entries")
            leaves = [leaf_hash(e) for e in await chain.entry_bytes(new)]
        finally:
            await db.close()
        if len(leaves) != new:
            raise AuditError(f"the table holds {len(leaves)} of entries 0..{new - 1}: run "
                             "`audit verify`", tree_size=new)
        path = consistency_proof(leaves, old, new)
        old_root, new_root = tree_root(leaves[:old]), tree_root(leaves)
        return {"old": old, "new": new, "old_root": old_root.hex(),
                "new_root": new_root.hex(), "path": [p.hex() for p in path],
                "verified": verify_consistency(old, new, old_root, new_root, path)}
    result = _run(go())
    if as_json:
        typer.echo(json.dumps(result, indent=1))
        return
    typer.echo(f"tree {old} ({result['old_root']}) -> tree {new} ({result['new_root']})")
    for i, node in enumerate(result["path"]):
        typer.echo(f"path[{i}] {node}")
    typer.echo(f"verified: {result['verified']}")


@audit_app.command("keygen")
def keygen(name: Annotated[str, typer.Option(help="the key's name (recorded in checkpoints)")],
           out: Annotated[Path, typer.Option(help="the private key file to write (0600)")]
           ) -> None:
    """A new Ed25519 key to sign checkpoints; prints its key-registry entry (public)."""
    from mts1b_platform.signing import SigningKey

    key = SigningKey.generate(name)
    key.save(out)
    typer.echo(json.dumps({"keys": [key.registered(["operations"]).entry()]}, indent=1))


def serve_audit(
    dsn: Dsn = DEFAULT_DSN, schema: Schema = DEFAULT_SCHEMA,
    namespace: Namespace = None,
    signing_key: Annotated[Path | None, typer.Option(
        envvar="MTS_AUDIT_SIGNING_KEY", help="Ed25519 key file that signs checkpoints "
                                             "(`audit keygen`); without it the operations "
                                             "service's signing_key_file from "
                                             "$MTS_OPERATIONS_SIGNING_KEY_FILE or Vault; "
                                             "with neither no checkpoint is made")
    ] = None,
    checkpoints: CheckpointDir = None,
    checkpoint_every: Annotated[int, typer.Option(min=1, help="entries per checkpoint")
                                ] = 1000,
    checkpoint_interval: Annotated[float, typer.Option(
        min=0.1, help="seconds after which new entries are checkpointed anyway")] = 60.0,
    skew_threshold: Annotated[float, typer.Option(
        min=0, help="alert when an event's time and the recorder's differ by more seconds "
                    "(0: never)")] = 2.0,
    batch: Annotated[int, typer.Option(min=1, max=10_000, help="events per transaction")
                     ] = 500,
    ack_wait: Annotated[float, typer.Option(
        min=0.1, help="seconds before events held by a dead recorder are delivered again")
    ] = 30.0,
    heartbeat_interval: Annotated[float, typer.Option(
        envvar="MTS_HEARTBEAT_INTERVAL", min=0.001, max=3600,
        help="seconds between two heartbeats on "
             "mts.v1.operations.heartbeats.mts1b-operations-audit")] = 10.0,
) -> None:
    """Record every domain event (but market data, heartbeats and the chain's own) into the
    chain until SIGTERM, once each; checkpoint it, signed - on SIGTERM too, after the last
    batch, when entries are waiting. It beats as mts1b-operations-audit every
    --heartbeat-interval seconds."""
    from mts1b_platform.logging import set_service
    from mts1b_platform.shutdown import run_announced
    from mts1b_platform.signing import SigningKey

    from mts1b_operations.audit.keys import configured_signing_key
    from mts1b_operations.audit.recorder import RecorderOptions, run_recorder

    set_service("operations-audit")
    key = SigningKey.load(signing_key) if signing_key else configured_signing_key()
    opts = RecorderOptions(dsn=dsn, schema=schema, namespace=namespace, signing_key=key,
                           checkpoint_dir=checkpoints, checkpoint_every=checkpoint_every,
                           checkpoint_interval=checkpoint_interval,
                           skew_threshold=skew_threshold, batch=batch, ack_wait=ack_wait,
                           heartbeat_interval=heartbeat_interval)

    async def serve_and_report() -> None:
        def announce(ready: bool) -> None:
            if ready:
                typer.echo(f"audit recorder serving (schema {schema}"
                           f"{f', namespace {namespace}' if namespace else ''}); SIGTERM drains")

        ready = asyncio.Event()
        recorder = await run_announced(run_recorder(opts, ready=ready), ready, announce)
        typer.echo(f"audit recorder stopped: {recorder.stats.appended} appended, "
                   f"{recorder.stats.duplicates} already recorded, "
                   f"{recorder.stats.checkpoints} checkpoints signed")

    _run(serve_and_report())


def register(app: typer.Typer, serve: typer.Typer) -> None:
    """Add ``audit`` to ``mts mts1b-operations`` and ``audit`` to its ``serve``."""
    app.add_typer(audit_app, name="audit")
    serve.command("audit")(serve_audit)
