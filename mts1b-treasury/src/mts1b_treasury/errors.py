"""Errors raised by mts1b-treasury, each with a stable ``code``.

Why two kinds: bad input (a negative quantity, a lot id that does not exist, a fund that is not
configured) names the field and the value so the caller can fix it; a broken invariant of the
books (an entry that does not balance, a fill posted twice with other terms) is a
:class:`LedgerError` and nothing of that posting is written.
"""

from __future__ import annotations

from typing import ClassVar

from mts1b_foundation import FieldError, MtsError, ReplyCode

__all__ = ["LedgerError", "TreasuryError", "TreasuryInputError"]


class TreasuryError(MtsError):
    """Base of every mts1b-treasury error."""

    code: ClassVar[str] = "TREASURY.ERROR"


class TreasuryInputError(TreasuryError, FieldError):
    """An argument is invalid; ``context`` holds ``field`` and ``value`` (its ``repr``)."""

    code: ClassVar[str] = "TREASURY.BAD_INPUT"
    reply_code: ClassVar[ReplyCode] = ReplyCode.VALIDATION_FAILED


class LedgerError(TreasuryError):
    """The books refused a posting (it would not balance, or contradicts what is posted)."""

    code: ClassVar[str] = "TREASURY.LEDGER"
