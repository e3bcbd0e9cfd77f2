"""Errors raised by mts1b-research, each with a stable ``code``."""

from __future__ import annotations

from typing import ClassVar

from mts1b_foundation import FieldError, MtsError, ReplyCode

__all__ = ["ResearchError", "ResearchInputError", "TransitionRefused"]


class ResearchError(MtsError):
    """Base of every mts1b-research error."""

    code: ClassVar[str] = "RESEARCH.ERROR"


class ResearchInputError(ResearchError, FieldError):
    """An argument is invalid; ``context`` holds ``field`` and ``value`` (its ``repr``)."""

    code: ClassVar[str] = "RESEARCH.BAD_INPUT"
    reply_code: ClassVar[ReplyCode] = ReplyCode.VALIDATION_FAILED


class TransitionRefused(ResearchError):
    """A strategy may not move to the asked state (the message says which rule refused)."""

    code: ClassVar[str] = "RESEARCH.TRANSITION_REFUSED"
