"""The audit chain: every domain event, appended once, in a hash chain in PostgreSQL.

Why a chain and not a table: a table can be edited by whoever holds the database; a chain whose
entries each hash the previous one, anchored by signed checkpoints kept outside the database,
makes any edit visible to ``mts mts1b-operations audit verify``.
"""

from __future__ import annotations

from mts1b_operations.audit.chain import AppendResult, AuditChain, ChainHead, StoredEntry
from mts1b_operations.audit.chainhash import audit_chain_hash, canonical_event, entry_bytes
from mts1b_operations.audit.db import AuditDb
from mts1b_operations.audit.entries import Incoming, build_entry, mentioned_ids
from mts1b_operations.audit.errors import AuditError, AuditInputError
from mts1b_operations.audit.merkle import (
    consistency_proof,
    inclusion_proof,
    tree_root,
    verify_consistency,
    verify_inclusion,
)
from mts1b_operations.audit.verify import Finding, VerifyReport, verify_chain, verify_entries

__all__ = [
    "AppendResult", "AuditChain", "AuditDb", "AuditError", "AuditInputError", "ChainHead",
    "Finding", "Incoming", "StoredEntry", "VerifyReport", "audit_chain_hash", "build_entry",
    "canonical_event", "consistency_proof", "entry_bytes", "inclusion_proof", "mentioned_ids",
    "tree_root", "verify_chain", "verify_consistency", "verify_entries", "verify_inclusion",
]
