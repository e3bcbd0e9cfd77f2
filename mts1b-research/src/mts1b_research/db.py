"""The research registry's PostgreSQL schema (``mts_research`` by default)."""

from __future__ import annotations

from typing import Any

import asyncpg
from mts1b_platform.migrations import SchemaDatabase

from mts1b_research.errors import ResearchError

__all__ = ["DEFAULT_SCHEMA", "ResearchDb"]

DEFAULT_SCHEMA = "mts_research"


class ResearchDb(SchemaDatabase):
    """A connection pool on the research schema. Create with :meth:`open`."""

    PACKAGE = "mts1b_research"
    LOCK_KEY = 0x6D74_7273  # advisory lock id for the research migrations ("mtrs")
    DEFAULT_SCHEMA = DEFAULT_SCHEMA
    pool: asyncpg.Pool

    @classmethod
    def connect_error(cls, message: str, **context: Any) -> Exception:
        return ResearchError(message, **context)
