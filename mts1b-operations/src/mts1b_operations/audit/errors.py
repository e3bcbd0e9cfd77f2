"""The audit chain's errors: one code family; bad input names the field and the value."""

from __future__ import annotations

from typing import ClassVar

from mts1b_foundation import FieldError, MtsError

__all__ = ["AuditError", "AuditInputError"]


class AuditError(MtsError):
    """The audit chain cannot do what was asked (no database, no such entry, a bad proof)."""

    code: ClassVar[str] = "OPERATIONS.AUDIT"


class AuditInputError(AuditError, FieldError):
    """An argument is invalid; ``context`` holds ``field`` and ``value`` (its ``repr``)."""

    code: ClassVar[str] = "OPERATIONS.AUDIT.BAD_INPUT"
