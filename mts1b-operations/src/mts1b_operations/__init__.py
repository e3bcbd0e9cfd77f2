"""mts1b-operations: the operational trail of MTS1B.

Two parts, each a package of its own: :mod:`mts1b_operations.audit` (a tamper-evident chain of
every domain event in PostgreSQL) and :mod:`mts1b_operations.alerts` (alerts that reach a
person). The CLI (``mts mts1b-operations ...``) gathers the commands of both.
"""

from __future__ import annotations

__all__ = ["__version__"]
__version__ = "0.1.0"
