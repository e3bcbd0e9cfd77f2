"""Walk the chain and say what is wrong with it, row by row, by name.

What each finding means (``kind``):

- ``altered``: a row's content no longer matches itself - its hash is not SHA-256 of its
  ``prev_hash`` and entry, its event's digest is not the entry's ``payload_digest``, or an
  indexed column (message id, subject, ids, times) says something the entry does not;
- ``deleted``: an entry's sequence number is missing from the chain;
- ``inserted``: a row that is no link of the chain - a second row claiming a sequence number
  whose successor links to the other one, or a row no successor links to;
- ``reordered``: an entry stored after entries that follow it in the chain;
- ``broken``: a row whose ``prev_hash`` is not its predecessor's hash, for no reason above;
- ``checkpoint``: a signed checkpoint the chain no longer matches (or whose signature fails);
- ``unanchored``: entries after the last checkpoint whose root matched - the chain alone
  cannot show that they were not appended by whoever rewrote the table.

Why the checkpoints matter: a superuser who rewrites a row *and* recomputes every hash after
it leaves a chain that checks out link by link. Only the Merkle roots signed earlier (and kept
elsewhere) expose it, so every checkpoint whose tree the chain covers is recomputed.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from mts1b_foundation import GENESIS_HASH
from mts1b_foundation.operations import AuditCheckpoint
from mts1b_platform.signing import KeyRegistry

from mts1b_operations.audit.chain import AuditChain, StoredEntry
from mts1b_operations.audit.chainhash import audit_chain_hash, event_digest
from mts1b_operations.audit.entries import subject_domain
from mts1b_operations.audit.merkle import CompactTree, leaf_hash

__all__ = ["FAILURES", "Finding", "VerifyReport", "check_row", "verify_chain", "verify_entries"]

FAILURES = frozenset({"altered", "deleted", "inserted", "reordered", "broken", "checkpoint"})


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing wrong (or, for ``unanchored``, not provable), naming the entry."""

    kind: str
    seq: int | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "seq": self.seq, "detail": self.detail}


@dataclass(slots=True)
class VerifyReport:
    """What :func:`verify_entries` checked and found."""

    start: int
    checked: int = 0
    findings: list[Finding] = field(default_factory=list)
    anchored: int = 0
    checkpoints_matched: int = 0

    @property
    def ok(self) -> bool:
        return not any(f.kind in FAILURES for f in self.findings)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "start": self.start, "checked": self.checked,
                "anchored": self.anchored, "checkpoints_matched": self.checkpoints_matched,
                "findings": [f.as_dict() for f in self.findings]}


def _time(text: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None


def check_row(row: StoredEntry) -> tuple[int | None, list[str]]:
    """The sequence number the row's entry claims, and what in the row contradicts itself."""
    problems: list[str] = []
    if audit_chain_hash(row.prev_hash, row.entry) != row.hash:
        problems.append("its hash is not SHA-256 of prev_hash and the entry")
    try:
        body = json.loads(row.entry.decode())
    except ValueError:
        return None, [*problems, "its entry is not JSON"]
    if not isinstance(body, dict):
        return None, [*problems, "its entry is not a JSON object"]
    get = body.get
    if event_digest(row.event) != get("payload_digest"):
        problems.append("its event is not the one the entry's payload_digest names")
    subject = get("subject")
    # one comparison on the common path; each column named only when one differs
    if (row.msg_id != get("msg_id") or row.subject != subject or list(row.ids) != get("ids")
            or row.producer_ts != _time(get("ts"))
            or row.recorded_ts != _time(get("recorded_ts"))
            or row.domain != subject_domain(subject)):
        columns: Mapping[str, tuple[Any, Any]] = {
            "msg_id": (row.msg_id, get("msg_id")),
            "subject": (row.subject, subject),
            "domain": (row.domain, subject_domain(subject)),
            "ids": (list(row.ids), get("ids")),
            "producer_ts": (row.producer_ts, _time(get("ts"))),
            "recorded_ts": (row.recorded_ts, _time(get("recorded_ts"))),
        }
        problems.extend(f"column {name} differs from the entry"
                        for name, (stored, entry) in columns.items() if stored != entry)
    sequence = get("sequence")
    return (sequence if isinstance(sequence, int) else None), problems


class _Link(Protocol):
    """What the walk needs of a row: where it is, its two hashes, its entry's bytes."""

    @property
    def seq(self) -> int: ...

    @property
    def prev_hash(self) -> str: ...

    @property
    def hash(self) -> str: ...

    @property
    def entry(self) -> bytes: ...


class _Walk:
    """The state of one pass over the rows (see the module docstring for the findings)."""

    def __init__(self, report: VerifyReport, prev_hash: str, checkpoints:
                 Mapping[int, tuple[AuditCheckpoint, bool]]) -> None:
        self.report = report
        self.expect = report.start
        self.prev = prev_hash
        self.before_last = prev_hash  # prev_hash of the entry accepted last
        self.last: _Link | None = None
        self.missing: dict[int, int] = {}  # claimed-later sequence -> row seq where it was due
        self.tree: CompactTree | None = CompactTree() if report.start == 0 else None
        self.checkpoints = checkpoints

    def add(self, kind: str, seq: int | None, detail: str) -> None:
        self.report.findings.append(Finding(kind, seq, detail))

    def grow(self, row: _Link) -> None:
        if self.tree is None:
            return
        self.tree.append(leaf_hash(row.entry))
        point = self.checkpoints.get(self.tree.size)
        if point is None:
            return
        checkpoint, signed = point
        if self.tree.root().hex() != checkpoint.root_hash or row.hash != checkpoint.chain_hash:
            self.add("checkpoint", self.tree.size - 1,
                     f"the first {self.tree.size} rows no longer have the Merkle root (or last "
                     f"hash) signed in checkpoint {self.tree.size} at "
                     f"{checkpoint.timestamp.isoformat()}")
        elif signed:
            self.report.anchored = self.tree.size
            self.report.checkpoints_matched += 1

    def accept(self, row: _Link, claimed: int) -> None:
        self.before_last, self.prev, self.last = row.prev_hash, row.hash, row
        self.expect = claimed + 1

    def step(self, row: _Link, following: _Link | None, claimed: int | None,
             problems: list[str]) -> None:
        """Place ``row``, whose entry claims sequence number ``claimed`` and whose content
        contradicts itself in ``problems``; ``following`` is the next row, if any."""
        self.report.checked += 1
        for problem in problems:
            self.add("altered", row.seq, f"row {row.seq}: {problem}")
        if claimed is None:
            claimed = row.seq
        if claimed == self.expect:
            if row.prev_hash != self.prev and not problems and (
                    following is not None and following.prev_hash == self.prev):
                self.add("inserted", row.seq, f"row {row.seq} claims to be entry {claimed}"
                         f" but links to no entry before it; the next row does")
            else:
                if row.prev_hash != self.prev and not problems:
                    self.add("broken", row.seq, f"row {row.seq}: prev_hash is not the hash "
                             f"of entry {claimed - 1}")
                self.accept(row, claimed)
        elif claimed > self.expect:
            for missing in range(self.expect, claimed):
                self.missing[missing] = row.seq
            self.accept(row, claimed)
        elif claimed in self.missing:
            self.add("reordered", claimed, f"entry {claimed} is stored at row {row.seq}, after "
                     f"entries that follow it (it was due before row {self.missing.pop(claimed)})")
        elif (self.last is not None and claimed == self.expect - 1
              and row.prev_hash == self.before_last):
            # Two rows claim one sequence number: the one the next row links to is the entry.
            if following is not None and following.prev_hash == row.hash:
                self.add("inserted", self.last.seq, f"row {self.last.seq} claims to be entry "
                         f"{claimed}, but the next entry links to row {row.seq}")
                self.accept(row, claimed)
            else:
                self.add("inserted", row.seq, f"row {row.seq} claims to be entry {claimed}, "
                         f"which row {self.last.seq} already is")
        else:
            self.add("inserted", row.seq, f"row {row.seq} claims to be entry {claimed}, which "
                     "the chain already passed")
        self.grow(row)  # the tree of the table as it stands, as a checkpoint's was

    def finish(self) -> None:
        for missing, due in sorted(self.missing.items()):
            self.add("deleted", missing, f"entry {missing} is missing (due before row {due})")


def _checkpoint_map(checkpoints: Iterable[AuditCheckpoint], keys: KeyRegistry | None,
                    report: VerifyReport) -> dict[int, tuple[AuditCheckpoint, bool]]:
    found: dict[int, tuple[AuditCheckpoint, bool]] = {}
    for checkpoint in checkpoints:
        signed = False
        if keys is not None:
            key = keys.get(checkpoint.key_id)
            signed = key is not None and key.verifies(checkpoint)
            if not signed:
                report.findings.append(Finding(
                    "checkpoint", checkpoint.tree_size - 1, f"checkpoint {checkpoint.tree_size}"
                    f": signature by {checkpoint.key_id!r} does not verify with the key "
                    "registry"))
                continue
        seen = found.get(checkpoint.tree_size)
        if seen is not None and seen[0].root_hash != checkpoint.root_hash:
            report.findings.append(Finding(
                "checkpoint", checkpoint.tree_size - 1, f"two checkpoints of size "
                f"{checkpoint.tree_size} sign different roots"))
        found[checkpoint.tree_size] = (checkpoint, signed or (seen is not None and seen[1]))
    return found


async def _checked(rows: AsyncIterable[StoredEntry]
                   ) -> AsyncIterator[tuple[_Link, int | None, list[str]]]:
    async for row in rows:
        yield (row, *check_row(row))


async def _walk_all(walk: _Walk, rows: AsyncIterator[tuple[_Link, int | None, list[str]]],
                    keys: KeyRegistry | None, to_end: bool) -> VerifyReport:
    held: tuple[_Link, int | None, list[str]] | None = None
    async for item in rows:
        if held is not None:
            walk.step(held[0], item[0], held[1], held[2])
        held = item
    if held is not None:
        walk.step(held[0], None, held[1], held[2])
    walk.finish()
    report, end = walk.report, walk.expect
    if walk.tree is not None and to_end:
        for size in sorted(s for s in walk.checkpoints if s > walk.tree.size):
            report.findings.append(Finding(
                "deleted", walk.tree.size, f"checkpoint {size} signs {size} entries; the "
                f"table holds {walk.tree.size}: entries {walk.tree.size}..{size - 1} were "
                "removed"))
            break
    if walk.tree is not None and report.anchored < end:
        report.findings.append(Finding(
            "unanchored", report.anchored, f"entries {report.anchored}..{end - 1} come after "
            "the last checkpoint that matched"
            + ("" if keys is not None else " (no key registry: no signature was checked)")))
    return report


async def verify_entries(rows: AsyncIterable[StoredEntry], *, start: int = 0,
                         prev_hash: str = GENESIS_HASH,
                         checkpoints: Iterable[AuditCheckpoint] = (),
                         keys: KeyRegistry | None = None, to_end: bool = True
                         ) -> VerifyReport:
    """Check ``rows`` (the table from row ``start``, in row order; ``prev_hash`` is the hash
    of entry ``start - 1``) and, when starting at 0, every checkpoint the rows cover.

    With ``keys`` a checkpoint counts only if its signature verifies; without, its root is
    still compared but nothing is reported as anchored. ``to_end``: the rows run to the end of
    the table, so a checkpoint of more entries than it holds means entries were removed.
    """
    report = VerifyReport(start)
    walk = _Walk(report, prev_hash, _checkpoint_map(checkpoints, keys, report))
    return await _walk_all(walk, _checked(rows), keys, to_end)


async def verify_chain(chain: AuditChain, *, start: int = 0, stop: int | None = None,
                       prev_hash: str = GENESIS_HASH,
                       checkpoints: Iterable[AuditCheckpoint] = (),
                       keys: KeyRegistry | None = None) -> VerifyReport:
    """:func:`verify_entries` over the chain's rows from ``start`` to ``stop`` (to the end of
    the table when None), read with one cursor."""
    return await verify_entries(chain.entries(start, stop), start=start, prev_hash=prev_hash,
                                checkpoints=checkpoints, keys=keys, to_end=stop is None)
