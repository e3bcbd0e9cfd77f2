"""The alerts part's errors: one code family; bad input names the field and the value."""

from __future__ import annotations

from typing import Any, ClassVar

from mts1b_foundation import FieldError, MtsError
from mts1b_platform.redaction import redact

__all__ = ["AlertsError", "AlertsInputError"]


class AlertsError(MtsError):
    """The router or its store cannot do what was asked (no database, no such silence)."""

    code: ClassVar[str] = "OPERATIONS.ALERTS"


class AlertsInputError(AlertsError, FieldError):
    """An argument or a configuration value is invalid; ``context`` holds ``field`` and
    ``value`` (its ``repr``).

    The message is ``field: reason (got value)`` but where that would lose words: every ``mts``
    error line goes through the platform's redactor, which masks the word after a secret-like
    name and a colon (``bot_token: set it...`` printed as ``bot_token: *** it...``). A field
    whose name the redactor would take so (``bot_token``, ``password``, ``Authorization``)
    reads ``field is invalid: reason (got value)``, and ``missing=True`` - nothing to show -
    ``field is missing: reason``: nothing maskable follows the name directly.
    """

    code: ClassVar[str] = "OPERATIONS.ALERTS.BAD_INPUT"

    def __init__(self, field: str, value: Any, reason: str, *, missing: bool = False) -> None:
        if missing:
            message = f"{field} is missing: {reason}"
        elif _redactor_masks_after(field):
            message = f"{field} is invalid: {reason} (got {value!r})"
        else:
            super().__init__(field, value, reason)
            return
        MtsError.__init__(self, message, field=field, value=repr(value))


def _redactor_masks_after(field: str) -> bool:
    """Whether ``field: word`` loses ``word`` to the redactor: asked of the redactor itself, so
    a name it learns to treat as a secret's is phrased around too."""
    probe = f"{field}: word"
    return redact(probe) != probe
