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

import contextlib
import datetime as dt
import hashlib
import json
import re
from collections.abc import AsyncGenerator, AsyncIterable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from mts1b_foundation import GENESIS_HASH, AuditRecord
from mts1b_foundation.operations import AuditCheckpoint
from mts1b_platform.signing import KeyRegistry

from mts1b_operations.audit.chain import AuditChain, StoredEntry
from mts1b_operations.audit.chainhash import audit_chain_hash, event_digest
from mts1b_operations.audit.entries import subject_domain
from mts1b_operations.audit.merkle import CompactTree, leaf_hash

__all__ = ["FAILURES", "Finding", "VerifyReport", "check_row", "verify_chain", "verify_entries"]

_sha256 = hashlib.sha256
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


Checked = tuple[int, bytes, bytes, bytes, int | None, list[str]]
"""What the walk needs of a row: ``(seq, prev_hash, hash, leaf, claimed, problems)`` - where
it is, its two hashes, its Merkle leaf, the sequence number its entry claims and what in it
contradicts itself. A plain tuple: the walk makes a million of them."""


def _checked_row(row: StoredEntry) -> Checked:
    return (row.seq, bytes.fromhex(row.prev_hash), bytes.fromhex(row.hash),
            leaf_hash(row.entry), *check_row(row))


def _entry_pattern() -> re.Pattern[str]:
    """The entry as :func:`~mts1b_operations.audit.chainhash.entry_bytes` writes it when
    every string is plain ASCII with nothing escaped: the model's fields in sorted order, each
    value strictly JSON. A match therefore means what ``json.loads`` would read, field for
    field; anything else (an escape, an older layout, a tampered byte) is left to
    :func:`check_row`.

    The groups: ``ids`` (the JSON array as written), ``msg_id``, ``payload_digest``,
    ``sequence``, ``subject`` and its third token ``domain``, and the date and the time of
    ``ts`` and ``recorded_ts`` (the time without the fraction's trailing zeros, as PostgreSQL
    writes it)."""
    # possessive (``*+``): each run stops at a character it cannot hold (``"`` or ``.``),
    # which must come next, so giving characters back could never help - only cost
    plain = r'[^"\\\x00-\x1f]*+'
    part = r'[^".\\\x00-\x1f]*+'
    string = f'"{plain}"'
    integer = "-?(?:0|[1-9][0-9]*)"
    strings = rf"\[(?:{string}(?:,{string})*)?\]"
    value = "|".join([string, integer, "null", "true", "false", strings])

    def utc(name: str) -> str:
        return (f'"(?P<{name}>[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}})T'
                f'(?P<{name}_time>[0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}(?:\\.[0-9]*[1-9])?)0*Z"')

    patterns = {
        "action": string, "actor": string, "subject_id": string, "schema_version": integer,
        "ids": f"(?P<ids>{strings})", "sequence": "(?P<sequence>0|[1-9][0-9]*)",
        "msg_id": f'"(?P<msg_id>{plain})"', "payload_digest": f'"(?P<payload_digest>{plain})"',
        "subject": f'"(?P<subject>{part}\\.{part}\\.(?P<domain>{part})(?:\\.{plain})?)"',
        "ts": utc("ts"), "recorded_ts": utc("recorded_ts")}
    names = sorted(set(AuditRecord.model_fields) - {"hash", "prev_hash"})
    return re.compile("{" + ",".join(f'"{name}":' + patterns.get(name, f"(?:{value})")
                                     for name in names) + "}")


_ENTRY = _entry_pattern()
_GROUPS = ("ids", "msg_id", "payload_digest", "recorded_ts", "recorded_ts_time", "sequence",
           "subject", "domain", "ts", "ts_time")
"""The pattern's groups in the order ``groups()`` gives them (the fields' sorted order)."""


def _time_of(text: str) -> dt.datetime:
    """A time as :data:`SELECT_LINK` reads it (``+00``), for the full check."""
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:  # 'infinity', a year BC: no time an entry can name
        return _NOT_A_TIME


# naive on purpose: unequal to every time an entry names (those carry a zone)
_NOT_A_TIME = dt.datetime.min  # noqa: DTZ901


def _checked_link(record: asyncpg.Record) -> Checked:
    """:func:`check_row` for a row as :data:`SELECT_LINK` reads it.

    Why two ways: parsing each entry as JSON costs more than all the hashing; for the common
    row, one match of :data:`_ENTRY` and a few string comparisons prove the same, and a row
    that does not compare equal that way - a mismatch, an escape, an unusual time - gets the
    full check, which names the problem. A test holds both ways to the same report on
    tampered rows."""
    (seq, prev_hash, hash_, entry, event, domain, msg_id, subject, ids, producer_ts,
     recorded_ts) = record
    if (entry.isascii() and _sha256(prev_hash + entry).digest() == hash_
            and (match := _ENTRY.fullmatch(entry.decode("ascii"))) is not None):
        (m_ids, m_msg_id, m_digest, m_recorded, m_recorded_time, m_sequence, m_subject,
         m_domain, m_ts, m_ts_time) = match.groups()
        if (m_msg_id == msg_id and m_subject == subject and m_domain == domain
                and m_ids == ids and f"{m_ts} {m_ts_time}+00" == producer_ts
                and f"{m_recorded} {m_recorded_time}+00" == recorded_ts
                and m_digest == _sha256(event).hexdigest()):
            return (seq, prev_hash, hash_, _sha256(b"\x00" + entry).digest(),
                    int(m_sequence), [])
    row = StoredEntry(seq, domain, msg_id, subject, tuple(json.loads(ids)),
                      _time_of(producer_ts), _time_of(recorded_ts), prev_hash.hex(),
                      hash_.hex(), entry, event)
    return _checked_row(row)


class Walk:
    """The state of one pass over the rows (see the module docstring for the findings)."""

    @classmethod
    def starting(cls, start: int, prev_hash: str, checkpoints: Iterable[AuditCheckpoint],
                 keys: KeyRegistry | None) -> Walk:
        """A walk from row ``start``, after the entry whose hash is ``prev_hash`` (hex), with
        ``checkpoints`` checked against ``keys`` (bad signatures already reported)."""
        report = VerifyReport(start)
        return cls(report, bytes.fromhex(prev_hash), checkpoint_map(checkpoints, keys, report))

    def __init__(self, report: VerifyReport, prev_hash: bytes, checkpoints:
                 Mapping[int, tuple[AuditCheckpoint, bool]]) -> None:
        self.report = report
        self.expect = report.start
        self.prev = prev_hash
        self.before_last = prev_hash  # prev_hash of the entry accepted last
        self.last: Checked | None = None
        self.missing: dict[int, int] = {}  # claimed-later sequence -> row seq where it was due
        self.tree: CompactTree | None = CompactTree() if report.start == 0 else None
        self.checkpoints = checkpoints
        self.irregular = 0  # rows placed other than where the chain expected them

    def add(self, kind: str, seq: int | None, detail: str) -> None:
        self.report.findings.append(Finding(kind, seq, detail))

    def checkpoint(self, tree: CompactTree, hash_: bytes) -> None:
        """``tree`` has just reached a checkpoint's size: does the table still make the root
        (and the last hash) that checkpoint signed?"""
        checkpoint, signed = self.checkpoints[tree.size]
        if tree.root().hex() != checkpoint.root_hash or hash_.hex() != checkpoint.chain_hash:
            self.add("checkpoint", tree.size - 1,
                     f"the first {tree.size} rows no longer have the Merkle root (or last "
                     f"hash) signed in checkpoint {tree.size} at "
                     f"{checkpoint.timestamp.isoformat()}")
        elif signed:
            self.report.anchored = tree.size
            self.report.checkpoints_matched += 1

    def accept(self, row: Checked, claimed: int) -> None:
        self.before_last, self.prev, self.last = row[1], row[2], row
        self.expect = claimed + 1

    def in_place(self, row: Checked) -> bool:
        """Whether ``row`` is the common row: self-consistent, claiming the expected sequence
        number and linked to the entry before it (then its successor changes nothing)."""
        return not row[5] and row[4] == self.expect and row[1] == self.prev

    def step(self, row: Checked, following: Checked | None) -> None:
        """Place ``row``; ``following`` is the next row, if any."""
        self.report.checked += 1
        _, prev_hash, hash_, leaf, _, _ = row
        if self.in_place(row):  # accept, inline: a million times
            self.before_last, self.prev, self.last = prev_hash, hash_, row
            self.expect += 1  # the row claimed exactly the expected number
        else:
            self.place(row, following)
        if (tree := self.tree) is not None:  # the tree of the table as it stands, as a
            tree.append(leaf)                # checkpoint's was
            if tree.size in self.checkpoints:
                self.checkpoint(tree, hash_)

    def place(self, row: Checked, following: Checked | None) -> None:
        self.irregular += 1
        seq, prev_hash, hash_, _, claimed, problems = row
        for problem in problems:
            self.add("altered", seq, f"row {seq}: {problem}")
        if claimed is None:
            claimed = seq
        if claimed == self.expect:
            if prev_hash != self.prev and not problems and (
                    following is not None and following[1] == self.prev):
                self.add("inserted", seq, f"row {seq} claims to be entry {claimed}"
                         f" but links to no entry before it; the next row does")
            else:
                if prev_hash != self.prev and not problems:
                    self.add("broken", seq, f"row {seq}: prev_hash is not the hash "
                             f"of entry {claimed - 1}")
                self.accept(row, claimed)
        elif claimed > self.expect:
            for missing in range(self.expect, claimed):
                self.missing[missing] = seq
            self.accept(row, claimed)
        elif claimed in self.missing:
            self.add("reordered", claimed, f"entry {claimed} is stored at row {seq}, after "
                     f"entries that follow it (it was due before row {self.missing.pop(claimed)})")
        elif (self.last is not None and claimed == self.expect - 1
              and prev_hash == self.before_last):
            # Two rows claim one sequence number: the one the next row links to is the entry.
            if following is not None and following[1] == hash_:
                self.add("inserted", self.last[0], f"row {self.last[0]} claims to be entry "
                         f"{claimed}, but the next entry links to row {seq}")
                self.accept(row, claimed)
            else:
                self.add("inserted", seq, f"row {seq} claims to be entry {claimed}, "
                         f"which row {self.last[0]} already is")
        else:
            self.add("inserted", seq, f"row {seq} claims to be entry {claimed}, which "
                     "the chain already passed")

    def finish(self) -> None:
        for missing, due in sorted(self.missing.items()):
            self.add("deleted", missing, f"entry {missing} is missing (due before row {due})")


def checkpoint_map(checkpoints: Iterable[AuditCheckpoint], keys: KeyRegistry | None,
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


Batches = AsyncGenerator[list[Checked], None]
"""Checked rows a batch at a time. A generator, so that a walk that stops early or fails can
close it at once - and with it the cursor and the connection it holds, which the pool would
otherwise wait for when it closes."""


async def _checked(rows: AsyncIterable[StoredEntry]) -> Batches:
    async for row in rows:
        yield [_checked_row(row)]


async def checked_links(chain: AuditChain, start: int, stop: int | None
                        ) -> Batches:
    """The chain's rows from ``start`` to ``stop``, checked, a batch at a time."""
    check = _checked_link
    async with contextlib.aclosing(chain.link_batches(start, stop)) as batches:
        async for batch in batches:
            yield [check(record) for record in batch]


async def walk_rows(walk: Walk, batches: Batches,
                    held: Checked | None = None) -> Checked | None:
    """Step ``walk`` through ``batches``, after ``held`` (a row not yet placed because its
    successor was unknown); returns the last row, still to place."""
    for_next = held
    async with contextlib.aclosing(batches):
        async for batch in batches:
            for item in batch:
                if for_next is not None:
                    walk.step(for_next, item)
                for_next = item
    return for_next


async def walk_to_end(walk: Walk, batches: Batches,
                      held: Checked | None = None) -> None:
    """:func:`walk_rows`, then the last row placed: nothing follows it."""
    if (last := await walk_rows(walk, batches, held)) is not None:
        walk.step(last, None)


async def _walk_all(walk: Walk, batches: Batches,
                    keys: KeyRegistry | None, to_end: bool) -> VerifyReport:
    await walk_to_end(walk, batches)
    return conclude(walk, keys, to_end)


def conclude(walk: Walk, keys: KeyRegistry | None, to_end: bool) -> VerifyReport:
    """The walk's report once every row is placed: what went missing, what no checkpoint
    covers."""
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
    walk = Walk.starting(start, prev_hash, checkpoints, keys)
    return await _walk_all(walk, _checked(rows), keys, to_end)


async def verify_chain(chain: AuditChain, *, start: int = 0, stop: int | None = None,
                       prev_hash: str = GENESIS_HASH,
                       checkpoints: Iterable[AuditCheckpoint] = (),
                       keys: KeyRegistry | None = None) -> VerifyReport:
    """:func:`verify_entries` over the chain's rows from ``start`` to ``stop`` (to the end of
    the table when None), read with one cursor, the database encoding the next rows while
    these are checked."""
    walk = Walk.starting(start, prev_hash, checkpoints, keys)
    return await _walk_all(walk, checked_links(chain, start, stop), keys, stop is None)
