"""The audit chain: every domain event, appended once, in a hash chain in PostgreSQL.

Why a chain and not a table: a table can be edited by whoever holds the database; a chain whose
entries each hash the previous one, anchored by signed checkpoints kept outside the database,
makes any edit visible to ``mts mts1b-operations audit verify``.
"""

from __future__ import annotations

__all__: list[str] = []
