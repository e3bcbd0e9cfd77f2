"""Errors and reject reasons of mts1b-brokers.

Broker outcomes use the foundation's classes (:class:`~mts1b_foundation.BrokerRejected`,
:class:`~mts1b_foundation.BrokerTransportError`, :class:`~mts1b_foundation.BrokerUnknownOutcome`)
so the OMS can branch on them without importing this library. What is added here: the stable
reason codes the paper venue puts in its rejects, the registry's own error, and the error for a
venue or cost model configured with a value it cannot work with.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from mts1b_foundation import MtsError

__all__ = ["BrokerConfigError", "BrokerNotFound", "RejectReason", "config_error"]


class RejectReason(StrEnum):
    """Why the paper venue refused a submit, cancel or replace.

    The reject's ``reason`` text starts with the code (``"INVALID_PRICE: ..."``) and
    ``BrokerRejected.context["reason_code"]`` carries it alone.
    """

    INVALID_ORDER = "INVALID_ORDER"
    INVALID_PRICE = "INVALID_PRICE"
    INVALID_QUANTITY = "INVALID_QUANTITY"
    INSUFFICIENT_BUYING_POWER = "INSUFFICIENT_BUYING_POWER"
    SHORT_NOT_ALLOWED = "SHORT_NOT_ALLOWED"
    NO_REFERENCE_PRICE = "NO_REFERENCE_PRICE"
    UNKNOWN_INSTRUMENT = "UNKNOWN_INSTRUMENT"
    INSTRUMENT_CLOSED = "INSTRUMENT_CLOSED"
    SESSION_CLOSED = "SESSION_CLOSED"
    UNKNOWN_ACCOUNT = "UNKNOWN_ACCOUNT"
    UNSUPPORTED = "UNSUPPORTED"
    UNKNOWN_ORDER = "UNKNOWN_ORDER"
    ORDER_NOT_WORKING = "ORDER_NOT_WORKING"


class BrokerNotFound(MtsError, LookupError):
    """No broker of that name is registered in the ``mts1b.brokers`` entry-point group."""

    code: ClassVar[str] = "BROKERS.UNKNOWN_BROKER"


class BrokerConfigError(MtsError, ValueError):
    """A paper venue or cost model was given a value it cannot work with.

    Also a ``ValueError``, so callers that caught the plain ``ValueError`` these checks used to
    raise keep working. ``context`` holds ``field`` and ``value``.
    """

    code: ClassVar[str] = "BROKERS.INVALID_CONFIG"


def config_error(field: str, value: object, requirement: str) -> BrokerConfigError:
    """``BrokerConfigError("<field> must <requirement>, got <value>")`` with field and value in
    the context: one wording for every configuration check."""
    return BrokerConfigError(f"{field} must {requirement}, got {value!r}",
                             field=field, value=value)
