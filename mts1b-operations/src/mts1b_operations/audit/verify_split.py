"""Verify a long chain on two cores: a second process checks the newer rows.

Why: ``audit verify`` is bound by the per-row work in Python (three hashes, the entry's
layout, the walk), one core's worth, while the database's share of the read runs beside it. A
second process with its own connection checks the rows from a point on while this one checks
those before it. The two results join only when they join exactly: the second part is clean
(every row where the chain expects it, nothing to report) and starts where the first ends.
Otherwise this process walks the second part itself, so the report is always the one
:func:`~mts1b_operations.audit.verify.verify_chain` gives; a test holds the two equal on
tampered chains.

Where the rows divide is decided when the second process is ready, not before: it has to
connect (and where it is spawned rather than forked, start Python: a second or two), while
this process is already checking rows. What is left then is divided in two.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import multiprocessing
import os
import signal
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import ForkContext, SpawnContext
from multiprocessing.process import BaseProcess

from mts1b_foundation import GENESIS_HASH
from mts1b_foundation.operations import AuditCheckpoint
from mts1b_platform.signing import KeyRegistry

from mts1b_operations.audit.chain import AuditChain
from mts1b_operations.audit.db import AuditDb
from mts1b_operations.audit.merkle import tree_root
from mts1b_operations.audit.verify import (
    Batches,
    VerifyReport,
    Walk,
    checked_links,
    conclude,
    verify_chain,
    walk_rows,
    walk_to_end,
)

__all__ = ["BLOCK_HEIGHT", "MIN_SPLIT_ROWS", "PARENT_SHARE", "verify_chain_split"]

MIN_SPLIT_ROWS = 200_000
"""Below this many rows a second process (a second or two to start) is not worth it."""

PARENT_SHARE = 0.5
"""This process's share of the rows left when the second process is ready. Each checks a row
at about the same cost: this one keeps the Merkle tree, the other sends its leaves back."""

_READY = b"ready"
BLOCK_HEIGHT = 3
"""The second process sends the Merkle root of each aligned block of ``2 ** BLOCK_HEIGHT``
leaves, so that this process adds one node per block instead of eight leaves: the hashing
moves to the process that has no tree. Eight: the recorder checkpoints every 1,000 entries, a
multiple of eight, so its checkpoints fall between blocks (a block with one inside is added
leaf by leaf)."""
_BLOCK = 1 << BLOCK_HEIGHT


@dataclass(frozen=True, slots=True)
class _Half:
    """What the second process found over its rows: whether every one was in place, how many
    there were, each row's Merkle leaf and hash, and the root of each whole block of
    :data:`_BLOCK` leaves (32 bytes each, in row order). Where its walk ended follows from
    those: a clean part claims ``start .. start + checked - 1``."""

    clean: bool
    checked: int
    leaves: bytes
    hashes: bytes
    roots: bytes

    def encode(self) -> bytes:
        return (json.dumps({"clean": self.clean, "checked": self.checked}).encode() + b"\n"
                + self.leaves + self.hashes + self.roots)

    @classmethod
    def decode(cls, data: bytes) -> _Half:
        line, _, blobs = data.partition(b"\n")
        head = json.loads(line)
        clean, checked = head["clean"], head["checked"]
        roots = 32 * (checked // _BLOCK) if clean is True else 0  # of no use unless clean
        if (not isinstance(clean, bool) or not isinstance(checked, int)
                or len(blobs) != 64 * checked + roots):
            raise ValueError("not what the second process writes")
        n = 32 * checked
        return cls(clean, checked, blobs[:n], blobs[n:2 * n], blobs[2 * n:])


def _block_roots(leaves: list[bytes]) -> bytes:
    return b"".join(tree_root(leaves[at:at + _BLOCK])
                    for at in range(0, len(leaves) - _BLOCK + 1, _BLOCK))


class _Orphaned(Exception):
    """The first process is gone (killed): nobody is waiting for the answer."""


async def _recorded(batches: Batches, leaves: list[bytes], hashes: list[bytes],
                    parent: int) -> Batches:
    async with contextlib.aclosing(batches):
        async for batch in batches:
            if os.getppid() != parent:  # adopted: the first process died without stopping it
                raise _Orphaned
            leaves.extend(row[3] for row in batch)
            hashes.extend(row[2] for row in batch)
            yield batch


async def _check_half(db: AuditDb, start: int, stop: int | None, prev_hash: str,
                      parent: int) -> _Half:
    walk = Walk.starting(start, prev_hash, (), None)  # start > 0: no tree of its own
    leaves: list[bytes] = []
    hashes: list[bytes] = []
    await walk_to_end(walk, _recorded(checked_links(AuditChain(db), start, stop), leaves,
                                      hashes, parent))
    clean = walk.irregular == 0
    return _Half(clean, walk.report.checked, b"".join(leaves), b"".join(hashes),
                 _block_roots(leaves) if clean else b"")


async def _serve(dsn: str, schema: str, pipe: Connection, parent: int) -> None:
    db = await AuditDb.open_existing(dsn, schema=schema, min_size=1, max_size=1)
    try:
        pipe.send_bytes(_READY)
        task = pipe.recv()  # blocking: nothing else runs in this process
        if task is None:
            return  # the first process checked every row itself
        start, stop, prev_hash = task
        half = await _check_half(db, start, stop, prev_hash, parent)
    finally:
        await db.close()
    pipe.send_bytes(half.encode())


def _second(dsn: str, schema: str, pipe: Connection) -> None:
    """The second process. Once connected it says ``ready``; then it is sent its rows
    (``start``, ``stop``, ``prev_hash``), or None if it is not needed; at the end it sends one
    line of JSON (``clean``, ``checked``), then the leaves, the hashes and the block roots.
    Its garbage collector is off: it makes no cycles, and collecting a million short-lived
    rows costs a few percent. It stops when the first process dies (a SIGKILL gives that one
    no chance to stop it)."""
    parent = os.getppid()
    gc.disable()
    signal.set_wakeup_fd(-1)  # forked: a signal here must not wake the parent's event loop
    try:
        asyncio.run(_serve(dsn, schema, pipe, parent))
    except BaseException:  # the first process learns of it from the pipe
        sys.exit(1)  # quietly: what went wrong may name the DSN, and the report is unchanged


def _context() -> ForkContext | SpawnContext:
    """Fork where it is safe (Linux): the second process then starts with every module
    already imported, ready in milliseconds instead of a second or two, and checks that much
    more of the rows. It only opens its own connection and event loop, then exits without
    running the parent's clean-up. Elsewhere (fork is unsafe on macOS), spawn: a fresh
    interpreter given only the DSN and schema (through a pipe, never the command line)."""
    if sys.platform == "linux":
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


class _SecondProcess:
    """The second process, from its start to its answer, and where the rows divide."""

    def __init__(self, process: BaseProcess, pipe: Connection) -> None:
        self.process, self.pipe = process, pipe
        self.ready = asyncio.ensure_future(asyncio.to_thread(pipe.recv_bytes))
        self.middle: int | None = None  # the first row it checks, once handed over
        self.before_hash = ""  # the hash of the entry before ``middle``
        self.declined = False  # it will not be given rows

    @classmethod
    def start(cls, dsn: str, schema: str) -> _SecondProcess:
        context = _context()
        ours, theirs = context.Pipe()
        process = context.Process(target=_second, args=(dsn, schema, theirs), daemon=True,
                                  name="mts-audit-verify")
        process.start()
        theirs.close()
        return cls(process, ours)

    async def hand_over(self, chain: AuditChain, position: int, end: int, stop: int | None,
                        share: float) -> None:
        """Give it the rows from a point between ``position`` (the next row this process
        checks) and ``end``, if it is ready and there is such a point."""
        middle = position + round((end - position) * share)
        middle -= middle % _BLOCK  # its blocks are the tree's own
        if self.ready.exception() is None and self.ready.result() == _READY \
                and position < middle < end:
            before = await chain.entry(middle - 1)
            if before is not None:
                self.pipe.send((middle, stop, before.hash))
                self.middle, self.before_hash = middle, before.hash
                return
        self.declined = True  # it exits; what is left is checked here
        with contextlib.suppress(OSError):  # it may have died: then it needs no answer
            self.pipe.send(None)

    async def rows_before(self, chain: AuditChain, batches: Batches, end: int,
                          stop: int | None, share: float) -> Batches:
        """``batches`` up to the row handed over, once it is ready (all of them if it never
        is); rows come in ``seq`` order, so the cut is one place in one batch."""
        async with contextlib.aclosing(batches):  # cut short: the cursor goes at once
            async for batch in batches:
                if self.middle is None and not self.declined and self.ready.done():
                    await self.hand_over(chain, batch[0][0], end, stop, share)
                if self.middle is not None and batch[-1][0] >= self.middle:
                    if head := [row for row in batch if row[0] < self.middle]:
                        yield head
                    return
                yield batch

    async def outcome(self) -> _Half | None:
        """What it found, or None if it failed (the caller then checks the rows itself)."""
        if self.middle is None:
            return None
        try:
            data = await asyncio.to_thread(self.pipe.recv_bytes)
            return _Half.decode(data)
        except (OSError, EOFError, ValueError, KeyError, TypeError, IndexError):
            return None

    async def close(self) -> None:
        """Stop it if it is still running: its answer is in, or no longer wanted."""
        if self.process.is_alive():
            self.process.kill()
        await asyncio.to_thread(self.process.join)
        with contextlib.suppress(OSError, EOFError):
            await self.ready  # over: the process, and so its end of the pipe, is gone
        self.pipe.close()  # only now: no thread reads it any more


def _join(walk: Walk, half: _Half) -> None:
    """End ``walk`` as if it had stepped through the second part's clean rows (nothing
    follows them, so only the count, the next expected number and the tree move on)."""
    first = walk.expect
    walk.report.checked += half.checked
    walk.expect += half.checked
    if (tree := walk.tree) is None:
        return
    leaves, hashes, roots, points = half.leaves, half.hashes, half.roots, walk.checkpoints
    # blocks a checkpoint falls inside: those go leaf by leaf, to stop at the checkpoint
    inside = {(size - first) // _BLOCK for size in points
              if first < size < first + half.checked and (size - first) % _BLOCK}
    whole = half.checked // _BLOCK
    for block in range(whole + 1):
        at = block * 32 * _BLOCK
        if block < whole and block not in inside:
            tree.append_subtree(roots[block * 32:block * 32 + 32], BLOCK_HEIGHT)
            if tree.size in points:
                last = at + 32 * (_BLOCK - 1)
                walk.checkpoint(tree, hashes[last:last + 32])
            continue
        for leaf in range(at, min(at + 32 * _BLOCK, len(leaves)), 32):
            tree.append(leaves[leaf:leaf + 32])
            if tree.size in points:
                walk.checkpoint(tree, hashes[leaf:leaf + 32])


async def verify_chain_split(chain: AuditChain, dsn: str, *, start: int = 0,
                             stop: int | None = None, prev_hash: str = GENESIS_HASH,
                             checkpoints: Iterable[AuditCheckpoint] = (),
                             keys: KeyRegistry | None = None,
                             min_rows: int = MIN_SPLIT_ROWS, share: float = PARENT_SHARE,
                             wait_for_second: bool = False) -> VerifyReport:
    """:func:`~mts1b_operations.audit.verify.verify_chain`, the newer rows checked by a second
    process connecting with ``dsn`` (the same database and schema as ``chain``). Ranges under
    ``min_rows`` rows, every range on a one-core machine and every range where no process can
    be started are checked here alone.

    ``share``: this process's share of the rows left once the second one is ready.
    ``wait_for_second``: check nothing until it is ready, so that the rows divide at a known
    row (``start + round((stop - start) * share)``, down to a multiple of eight; for
    tests)."""
    end = stop if stop is not None else (await chain.head()).size
    second = None
    if end - start >= max(min_rows, 2) and (os.cpu_count() or 1) > 1:
        # a daemonic process may not start one (AssertionError), nor one out of resources
        with contextlib.suppress(OSError, AssertionError, ValueError):
            second = _SecondProcess.start(dsn, chain.db.schema)
    if second is None:
        return await verify_chain(chain, start=start, stop=stop, prev_hash=prev_hash,
                                  checkpoints=checkpoints, keys=keys)
    try:
        if wait_for_second:
            await asyncio.wait([second.ready])
        walk = Walk.starting(start, prev_hash, checkpoints, keys)
        last = await walk_rows(walk, second.rows_before(
            chain, checked_links(chain, start, stop), end, stop, share))
        if second.middle is None:  # every row was checked here
            if last is not None:
                walk.step(last, None)
            return conclude(walk, keys, stop is None)
        clean = walk.irregular == 0 and (last is None or walk.in_place(last))
        if clean and last is not None:
            walk.step(last, None)  # a row in place: its successor changes nothing
            last = None
        half = await second.outcome() if clean else None
        if (half is not None and half.clean and walk.expect == second.middle
                and walk.prev.hex() == second.before_hash):
            _join(walk, half)
        else:
            await walk_to_end(walk, checked_links(chain, second.middle, stop), last)
        return conclude(walk, keys, stop is None)
    finally:
        await second.close()


