"""Errors raised by mts1b-quantkit, each with a stable ``code``.

Every error subclasses :class:`mts1b_foundation.MtsError` (so a caller can catch the whole stack's
failures in one place) and ``ValueError`` where the cause is a bad argument, so that code written
against plain numpy/scipy conventions keeps working.
"""

from __future__ import annotations

from typing import ClassVar

from mts1b_foundation import MtsError

__all__ = [
    "CVError",
    "FactorError",
    "FactorRegistryError",
    "InfeasibleError",
    "MetricsError",
    "OptimizationError",
    "QuantkitError",
    "SingularCovarianceError",
    "SizingError",
    "UnknownFactorError",
]


class QuantkitError(MtsError):
    """Base of every quantkit error."""

    code: ClassVar[str] = "QUANTKIT.ERROR"


class FactorError(QuantkitError, ValueError):
    """A factor or factor primitive got bad input or returned an array of the wrong shape."""

    code: ClassVar[str] = "QUANTKIT.FACTOR"


class FactorRegistryError(QuantkitError, ValueError):
    """Bad factor name, or a second registration of a name without ``replace=True``."""

    code: ClassVar[str] = "QUANTKIT.FACTOR_REGISTRY"


class UnknownFactorError(FactorRegistryError, KeyError):
    """``get(name)`` for a name that is neither registered nor provided by a plugin.

    Prints as ``[code] message``: ``MtsError.__str__`` precedes ``KeyError``'s repr-style one
    in the method resolution order.
    """

    code: ClassVar[str] = "QUANTKIT.UNKNOWN_FACTOR"


class MetricsError(QuantkitError, ValueError):
    """A performance metric got inputs of incompatible shape or an invalid parameter."""

    code: ClassVar[str] = "QUANTKIT.METRICS"


class OptimizationError(QuantkitError, ValueError):
    """A portfolio optimizer got bad input or its solver failed."""

    code: ClassVar[str] = "QUANTKIT.OPTIMIZATION"


class InfeasibleError(OptimizationError):
    """The constraints of a portfolio problem cannot all be met (e.g. bounds vs. budget)."""

    code: ClassVar[str] = "QUANTKIT.INFEASIBLE"


class SingularCovarianceError(OptimizationError):
    """A covariance matrix is singular, not symmetric, or not positive semi-definite."""

    code: ClassVar[str] = "QUANTKIT.SINGULAR_COVARIANCE"


class CVError(QuantkitError, ValueError):
    """A cross-validation splitter got parameters that cannot produce a split."""

    code: ClassVar[str] = "QUANTKIT.CV"


class SizingError(QuantkitError, ValueError):
    """Unknown sizing method or a bad sizing parameter (the message names it)."""

    code: ClassVar[str] = "QUANTKIT.SIZING"
