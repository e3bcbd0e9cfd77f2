"""The alerts part's errors: one code family; bad input names the field and the value."""

from __future__ import annotations

from typing import ClassVar

from mts1b_foundation import FieldError, MtsError

__all__ = ["AlertsError", "AlertsInputError"]


class AlertsError(MtsError):
    """The router or its store cannot do what was asked (no database, no such silence)."""

    code: ClassVar[str] = "OPERATIONS.ALERTS"


class AlertsInputError(AlertsError, FieldError):
    """An argument or a configuration value is invalid; ``context`` holds ``field`` and
    ``value`` (its ``repr``)."""

    code: ClassVar[str] = "OPERATIONS.ALERTS.BAD_INPUT"
