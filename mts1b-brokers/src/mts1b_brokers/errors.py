"""Errors and reject reasons of mts1b-brokers.

Broker outcomes use the foundation's classes (:class:`~mts1b_foundation.BrokerRejected`,
:class:`~mts1b_foundation.BrokerTransportError`, :class:`~mts1b_foundation.BrokerUnknownOutcome`)
so the OMS can branch on them without importing this library. The reason codes the paper venue
puts in its rejects are the foundation's :class:`~mts1b_foundation.ReplyCode` (one vocabulary
for gates, OMS and brokers). What is added here: the registry's own error, and the error for a
venue or cost model configured with a value it cannot work with.
"""

from __future__ import annotations

from typing import ClassVar

from mts1b_foundation import MtsError, ReplyCode

__all__ = ["BrokerConfigError", "BrokerNotFound", "RejectReason", "config_error"]


RejectReason = ReplyCode
"""Why the paper venue refused a submit, cancel or replace: a foundation ``ReplyCode``.

The reject's ``reason`` text starts with the code (``"TICK_SIZE: ..."``), its ``code`` field
holds it, and ``BrokerRejected.context["reason_code"]`` carries it alone.
"""


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
