"""The treasury's PostgreSQL schema: one pool, the package's migrations applied on open.

Why a schema of its own (``mts_treasury`` by default): the treasury is the system of record for
funds and their books, and shares a database server with the OMS without sharing its tables.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from mts1b_platform.migrations import SchemaDatabase

from mts1b_treasury.errors import TreasuryError

__all__ = ["DEFAULT_SCHEMA", "TreasuryDb"]

DEFAULT_SCHEMA = "mts_treasury"


class TreasuryDb(SchemaDatabase):
    """A connection pool on the treasury's schema. Create with :meth:`open`."""

    PACKAGE = "mts1b_treasury"
    LOCK_KEY = 0x6D74_7472  # advisory lock id for the treasury's migrations ("mttr")
    DEFAULT_SCHEMA = DEFAULT_SCHEMA
    pool: asyncpg.Pool

    @classmethod
    def connect_error(cls, message: str, **context: Any) -> Exception:
        return TreasuryError(message, **context)
