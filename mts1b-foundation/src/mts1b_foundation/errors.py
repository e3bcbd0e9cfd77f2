"""One base error for the whole stack, with stable machine-readable codes.

Why: callers (and the OMS's denial records, and the DLQ) need to branch on *what* went wrong
without parsing messages. Every library subclasses :class:`MtsError` and gives the subclass a
``code`` that never changes once released.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from mts1b_foundation.enums import ReplyCode


class MtsError(Exception):
    """Base of every error raised by MTS1B libraries.

    ``code`` is stable across releases (e.g. ``"FOUNDATION.VALIDATION"``); ``context`` carries the
    fields and values that explain the failure, so logs and alerts can show them structurally.
    """

    code: ClassVar[str] = "MTS.ERROR"
    reply_code: ClassVar[ReplyCode] = ReplyCode.INTERNAL_ERROR
    """What a service puts in ``CommandReply.code`` when this error answers a command."""

    def __init__(self, message: str, /, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context: Mapping[str, Any] = dict(context)

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


class ValidationFailed(MtsError, ValueError):
    """Input did not validate. ``context['errors']`` lists ``{field, value, reason}`` dicts."""

    code: ClassVar[str] = "FOUNDATION.VALIDATION"
    reply_code: ClassVar[ReplyCode] = ReplyCode.VALIDATION_FAILED


class FieldError(MtsError, ValueError):
    """One argument is invalid: the message and ``context`` name the ``field`` and its
    ``value`` (as ``repr``), so the caller can fix the producer. Libraries subclass it with
    their own ``code`` (the composer's and the treasury's input errors)."""

    code: ClassVar[str] = "FOUNDATION.BAD_INPUT"
    reply_code: ClassVar[ReplyCode] = ReplyCode.VALIDATION_FAILED

    def __init__(self, field: str, value: Any, reason: str) -> None:
        super().__init__(f"{field}: {reason} (got {value!r})", field=field, value=repr(value))


class PanelError(MtsError, ValueError):
    """A :class:`~mts1b_foundation.panel.UniversePanel` was built or sliced inconsistently."""

    code: ClassVar[str] = "FOUNDATION.PANEL"


class SubjectError(MtsError, ValueError):
    """A NATS subject is malformed, unknown, or does not carry the given model."""

    code: ClassVar[str] = "FOUNDATION.SUBJECT"
    reply_code: ClassVar[ReplyCode] = ReplyCode.VALIDATION_FAILED
