"""Signed checkpoints of the chain: made, stored, written to a directory, read back.

Why a directory as well as the table and the bus: a checkpoint only protects the history it
signs if a copy lives where the database's owner cannot rewrite it. The table keeps one for
``audit proof``; the recorder also publishes each one on
``mts.v1.operations.audit.checkpoint`` (kept by the operations stream) and writes it as a file
to a directory meant to be another host's mount or a synced folder; ``audit verify
--checkpoints DIR`` checks the chain against those copies.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from pathlib import Path

import asyncpg
import nats.errors
import nats.js.errors
from mts1b_foundation import ValidationFailed, parse_message
from mts1b_foundation.operations import AuditCheckpoint
from mts1b_platform.bus import Bus
from mts1b_platform.signing import SigningKey
from nats.js import api

from mts1b_operations.audit.db import AuditDb
from mts1b_operations.audit.errors import AuditError

__all__ = ["CHECKPOINT_BUCKET", "CHECKPOINT_SUBJECT", "bus_checkpoints", "load_checkpoint_dir",
           "merged", "put_checkpoint_object", "sign_checkpoint", "store_checkpoint",
           "stored_checkpoints", "write_checkpoint_file"]

CHECKPOINT_SUBJECT = "mts.v1.operations.audit.checkpoint"
CHECKPOINT_BUCKET = "audit_checkpoints"
"""The NATS object store bucket holding a copy of every checkpoint (namespaced like the
bus's key/value buckets: ``<namespace>_audit_checkpoints``)."""


def sign_checkpoint(key: SigningKey, *, log: str, tree_size: int, root: bytes, chain_hash: str,
                    now: dt.datetime | None = None) -> AuditCheckpoint:
    """A checkpoint of the first ``tree_size`` entries, signed by ``key`` now."""
    return key.sign_command(AuditCheckpoint, {
        "log": log, "tree_size": tree_size, "root_hash": root.hex(), "chain_hash": chain_hash},
        now=now)


async def store_checkpoint(db: AuditDb, checkpoint: AuditCheckpoint) -> bool:
    """Keep ``checkpoint`` in the table; False when one of that size is there already."""
    try:
        status = await db.pool.execute(
            "INSERT INTO audit_checkpoints (tree_size, root_hash, chain_hash, checkpoint) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (tree_size) DO NOTHING",
            checkpoint.tree_size, bytes.fromhex(checkpoint.root_hash),
            bytes.fromhex(checkpoint.chain_hash), checkpoint.to_json())
    except asyncpg.PostgresError as exc:
        raise AuditError(f"cannot store checkpoint {checkpoint.tree_size}: "
                         f"{type(exc).__name__}", tree_size=checkpoint.tree_size) from None
    return bool(status.endswith(" 1"))


async def stored_checkpoints(db: AuditDb) -> list[AuditCheckpoint]:
    """The table's checkpoints, smallest first (a row that no longer parses is skipped:
    verify then finds the entries it covered unanchored)."""
    found = []
    for row in await db.pool.fetch("SELECT checkpoint FROM audit_checkpoints "
                                   "ORDER BY tree_size"):
        try:
            found.append(parse_message(AuditCheckpoint, bytes(row["checkpoint"])))
        except ValidationFailed:
            continue
    return found


def write_checkpoint_file(directory: Path, checkpoint: AuditCheckpoint) -> Path:
    """Write ``<log>-<size>.json`` into ``directory`` (created if needed), durably: to a
    temporary name, fsync, then renamed, so a reader never sees half a checkpoint."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{checkpoint.log}-{checkpoint.tree_size:012d}.json"
    temporary = path.with_suffix(".tmp")
    with open(temporary, "wb") as handle:
        handle.write(checkpoint.to_json() + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return path


def load_checkpoint_dir(directory: Path, log: str | None = None
                        ) -> tuple[list[AuditCheckpoint], list[str]]:
    """The checkpoints in ``directory`` (of ``log`` only, when given), and the names of the
    files that are not checkpoints (reported, never silently skipped)."""
    if not directory.is_dir():
        raise AuditError(f"checkpoint directory {directory} does not exist",
                         path=str(directory))
    found, bad = [], []
    for path in sorted(directory.glob("*.json")):
        try:
            checkpoint = parse_message(AuditCheckpoint, path.read_bytes())
        except (OSError, ValidationFailed):
            bad.append(path.name)
            continue
        if log is None or checkpoint.log == log:
            found.append(checkpoint)
    return found, bad


def _bucket(bus: Bus) -> str:
    return f"{bus.namespace}_{CHECKPOINT_BUCKET}" if bus.namespace else CHECKPOINT_BUCKET


async def put_checkpoint_object(bus: Bus, checkpoint: AuditCheckpoint) -> None:
    """Keep a copy of ``checkpoint`` in the NATS object store (the bucket is created on first
    use), named ``<log>-<tree size>.json``."""
    name = _bucket(bus)
    try:
        try:
            store = await bus.js.object_store(name)
        except (nats.js.errors.BucketNotFoundError, nats.js.errors.NotFoundError):
            store = await bus.js.create_object_store(name, config=api.ObjectStoreConfig(
                storage=api.StorageType.FILE, description="MTS1B audit checkpoints"))
        await store.put(f"{checkpoint.log}-{checkpoint.tree_size:012d}.json",
                        checkpoint.to_json())
    except (nats.js.errors.Error, nats.errors.Error) as exc:
        raise AuditError(f"checkpoint {checkpoint.tree_size} not stored in the object store "
                         f"{name}: {type(exc).__name__}", tree_size=checkpoint.tree_size
                         ) from None


async def bus_checkpoints(bus: Bus, log: str) -> list[AuditCheckpoint]:
    """The checkpoints of ``log`` in the object store, smallest first (none when the bucket
    does not exist); an object that is not a checkpoint is skipped."""
    try:
        store = await bus.js.object_store(_bucket(bus))
        infos = await store.list(ignore_deletes=True)
    except (nats.js.errors.BucketNotFoundError, nats.js.errors.NotFoundError):
        return []  # no bucket, or an empty one
    found = []
    for info in infos:
        if not info.name.startswith(f"{log}-"):
            continue
        result = await store.get(info.name)
        try:
            found.append(parse_message(AuditCheckpoint, result.data or b""))
        except ValidationFailed:
            continue
    return sorted(found, key=lambda c: c.tree_size)


def merged(*groups: Iterable[AuditCheckpoint]) -> list[AuditCheckpoint]:
    """Checkpoints from several places, each signed statement once, smallest first."""
    unique = {(c.tree_size, c.root_hash, c.signature): c for group in groups for c in group}
    return sorted(unique.values(), key=lambda c: c.tree_size)
