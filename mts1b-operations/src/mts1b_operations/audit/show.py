"""What ``audit show`` and ``audit proof`` say about entries: the record, the event, its status.

Why the status is computed on every read: a reader of the trail (a compliance officer, an
engineer chasing an order) must see at once whether the row in front of them is the row that
was recorded - its own hashes, its link to the entry before it, and whether a signed
checkpoint covers it - without running a full ``audit verify`` first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mts1b_foundation import (
    GENESIS_HASH,
    AuditRecord,
    ValidationFailed,
    parse_message,
)
from mts1b_foundation.operations import AuditCheckpoint

from mts1b_operations.audit.chain import AuditChain, StoredEntry
from mts1b_operations.audit.verify import check_row

__all__ = ["EntryView", "entry_views", "record_of"]


@dataclass(frozen=True, slots=True)
class EntryView:
    """One entry as shown: its record (None when the row no longer parses), event, status."""

    row: StoredEntry
    record: AuditRecord | None
    event: Any
    problems: tuple[str, ...]
    checkpoint: int | None

    @property
    def status(self) -> str:
        if self.problems:
            return "FAILED: " + "; ".join(self.problems)
        anchor = (f"in checkpoint {self.checkpoint}" if self.checkpoint is not None
                  else "after the last checkpoint (unanchored)")
        return f"ok, {anchor}"

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.row.seq, "status": "ok" if not self.problems else "failed",
                "problems": list(self.problems), "checkpoint": self.checkpoint,
                "record": None if self.record is None else self.record.model_dump(mode="json"),
                "event": self.event}


def record_of(row: StoredEntry) -> AuditRecord | None:
    """The wire record the row's entry and hashes make, or None if they no longer parse."""
    try:
        body = json.loads(row.entry)
        return parse_message(AuditRecord, {**body, "hash": row.hash,
                                           "prev_hash": row.prev_hash})
    except (ValueError, ValidationFailed, TypeError):
        return None


async def entry_views(chain: AuditChain, rows: list[StoredEntry],
                      checkpoints: list[AuditCheckpoint]) -> list[EntryView]:
    """Each row with its status: self-consistent, linked to the row before it, and the
    smallest checkpoint whose tree contains it."""
    views = []
    for row in rows:
        _, problems = check_row(row)
        if row.seq == 0:
            expected_prev: str | None = GENESIS_HASH
        else:
            before = await chain.entry(row.seq - 1)
            expected_prev = None if before is None else before.hash
        if expected_prev is None:
            problems.append(f"the entry before it (row {row.seq - 1}) is missing")
        elif row.prev_hash != expected_prev:
            problems.append(f"its prev_hash is not the hash of row {row.seq - 1}")
        covering = [c.tree_size for c in checkpoints if c.tree_size > row.seq]
        try:
            event = json.loads(row.event)
        except ValueError:
            event = None
            problems.append("its event is not JSON")
        views.append(EntryView(row, record_of(row), event, tuple(problems),
                               min(covering) if covering else None))
    return views
