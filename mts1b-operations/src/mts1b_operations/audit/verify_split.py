"""Verify a long chain on two cores: a second process checks the newer half.

Why: ``audit verify`` is bound by the per-row work in Python (three hashes, the entry's
layout, the walk), one core's worth, while the database's share of the read runs beside it. A
second process with its own connection checks the rows from the middle on while this one
checks the first half. The two results join only when they join exactly: the second half is
clean (every row where the chain expects it, nothing to report) and starts where the first
half ends. Otherwise this process walks the second half itself, so the report is always the
one :func:`~mts1b_operations.audit.verify.verify_chain` gives; a test holds the two equal on
tampered chains.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from mts1b_foundation import GENESIS_HASH
from mts1b_foundation.operations import AuditCheckpoint
from mts1b_platform.signing import KeyRegistry

from mts1b_operations.audit.chain import AuditChain
from mts1b_operations.audit.db import AuditDb
from mts1b_operations.audit.errors import AuditError
from mts1b_operations.audit.verify import (
    Checked,
    VerifyReport,
    Walk,
    checked_links,
    conclude,
    verify_chain,
    walk_rows,
    walk_to_end,
)

__all__ = ["MIN_SPLIT_ROWS", "verify_chain_split"]

MIN_SPLIT_ROWS = 200_000
"""Below this many rows a second process (about a second to start) is not worth it."""


@dataclass(frozen=True, slots=True)
class _Half:
    """What the second process found over its rows: whether every one was in place, how many
    there were, and each row's Merkle leaf and hash (32 bytes each, in row order). Where its
    walk ended follows from those: a clean half claims ``start .. start + checked - 1``."""

    clean: bool
    checked: int
    leaves: bytes
    hashes: bytes


async def _recorded(batches: AsyncIterator[list[Checked]], leaves: list[bytes],
                    hashes: list[bytes]) -> AsyncIterator[list[Checked]]:
    async for batch in batches:
        leaves.extend(row[3] for row in batch)
        hashes.extend(row[2] for row in batch)
        yield batch


async def _check_half(dsn: str, schema: str, start: int, stop: int | None,
                      prev_hash: str) -> _Half:
    db = await AuditDb.open_existing(dsn, schema=schema, min_size=1, max_size=1)
    try:
        walk = Walk.starting(start, prev_hash, (), None)  # start > 0: no tree of its own
        leaves: list[bytes] = []
        hashes: list[bytes] = []
        await walk_to_end(walk, _recorded(checked_links(AuditChain(db), start, stop), leaves,
                                          hashes))
        return _Half(walk.irregular == 0, walk.report.checked, b"".join(leaves),
                     b"".join(hashes))
    finally:
        await db.close()


def _child() -> None:
    """The second process: its task as JSON on stdin (the DSN may hold a password, so not on
    the command line); on stdout one line of JSON (``clean``, ``checked``), then the leaves
    and the hashes."""
    task = json.loads(sys.stdin.buffer.read())
    half = asyncio.run(_check_half(task["dsn"], task["schema"], task["start"], task["stop"],
                                   task["prev_hash"]))
    sys.stdout.buffer.write(json.dumps({"clean": half.clean, "checked": half.checked}).encode()
                            + b"\n" + half.leaves + half.hashes)


def _decode(data: bytes) -> _Half:
    line, _, blobs = data.partition(b"\n")
    head = json.loads(line)
    clean, checked = head["clean"], head["checked"]
    if not isinstance(clean, bool) or not isinstance(checked, int) or len(blobs) != 64 * checked:
        raise ValueError("not what the second process writes")
    return _Half(clean, checked, blobs[:32 * checked], blobs[32 * checked:])


async def _start_child(dsn: str, schema: str, start: int, stop: int | None,
                       prev_hash: str) -> tuple[asyncio.subprocess.Process, asyncio.Task[bytes]]:
    """Start the second process (``python -m`` this module: nothing of the caller's
    ``__main__`` is imported again) and a task collecting what it prints."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", __name__, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    stdin, stdout = child.stdin, child.stdout
    if stdin is None or stdout is None:  # never: both were asked for as pipes
        raise AuditError("the second verify process started without its pipes")
    stdin.write(json.dumps({"dsn": dsn, "schema": schema, "start": start, "stop": stop,
                            "prev_hash": prev_hash}).encode())
    await stdin.drain()
    stdin.close()
    return child, asyncio.ensure_future(stdout.read())


def _join(walk: Walk, half: _Half) -> None:
    """End ``walk`` as if it had stepped through the second half's clean rows (nothing
    follows them, so only the count, the next expected number and the tree move on)."""
    walk.report.checked += half.checked
    walk.expect += half.checked
    if (tree := walk.tree) is None:
        return
    leaves, hashes, points = half.leaves, half.hashes, walk.checkpoints
    for at in range(0, len(leaves), 32):
        tree.append(leaves[at:at + 32])
        if tree.size in points:
            walk.checkpoint(tree, hashes[at:at + 32])


async def verify_chain_split(chain: AuditChain, dsn: str, *, start: int = 0,
                             stop: int | None = None, prev_hash: str = GENESIS_HASH,
                             checkpoints: Iterable[AuditCheckpoint] = (),
                             keys: KeyRegistry | None = None,
                             min_rows: int = MIN_SPLIT_ROWS) -> VerifyReport:
    """:func:`~mts1b_operations.audit.verify.verify_chain`, the rows from the middle of the
    range checked by a second process connecting with ``dsn`` (the same database and schema as
    ``chain``). Ranges under ``min_rows`` rows, and every range on a one-core machine, are
    checked here alone."""
    end = stop if stop is not None else (await chain.head()).size
    middle = start + (end - start) // 2
    wide = end - start >= max(min_rows, 2) and (os.cpu_count() or 1) > 1
    before = await chain.entry(middle - 1) if wide else None
    if before is None:
        return await verify_chain(chain, start=start, stop=stop, prev_hash=prev_hash,
                                  checkpoints=checkpoints, keys=keys)
    child, output = await _start_child(dsn, chain.db.schema, middle, stop, before.hash)
    try:
        walk = Walk.starting(start, prev_hash, checkpoints, keys)
        last = await walk_rows(walk, checked_links(chain, start, middle))
        clean = walk.irregular == 0 and (last is None or walk.in_place(last))
        if clean and last is not None:
            walk.step(last, None)  # a row in place: its successor changes nothing
            last = None
        half = await _outcome(child, output) if clean else None
        if (half is not None and half.clean and walk.expect == middle
                and walk.prev.hex() == before.hash):
            _join(walk, half)
        else:
            await walk_to_end(walk, checked_links(chain, middle, stop), last)
        return conclude(walk, keys, stop is None)
    finally:
        if child.returncode is None:
            child.kill()
        await child.wait()
        output.cancel()


async def _outcome(child: asyncio.subprocess.Process, output: asyncio.Task[bytes]
                   ) -> _Half | None:
    """The second half, or None if the process failed (the caller then checks it itself)."""
    data = await output
    if await child.wait() != 0:
        return None
    try:
        return _decode(data)
    except (ValueError, KeyError, TypeError, IndexError):
        return None


if __name__ == "__main__":
    _child()
