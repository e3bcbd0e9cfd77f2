"""Errors raised by mts1b-portfolio, each with a stable ``code``.

Why only input errors: a composition whose constraints cannot all be met is not an error (a
running service must keep trading safely), it is a fallback with a coded reason in the report
(:mod:`mts1b_portfolio.report`). What raises is input no fallback can make sense of - a NaN
weight, a symbol without a price, capital shares over 100 % - and the message names the field
and the value, so the caller can fix the producer.
"""

from __future__ import annotations

from typing import ClassVar

from mts1b_foundation import FieldError, MtsError, ReplyCode

__all__ = ["ComposeInputError", "PortfolioError"]


class PortfolioError(MtsError):
    """Base of every mts1b-portfolio error."""

    code: ClassVar[str] = "PORTFOLIO.ERROR"


class ComposeInputError(PortfolioError, FieldError):
    """An argument of :func:`~mts1b_portfolio.multi_sleeve.compose` is invalid.

    ``context`` holds ``field`` (a path such as ``sleeves[1].weights['AAPL']``) and ``value``
    (its ``repr``).
    """

    code: ClassVar[str] = "PORTFOLIO.BAD_INPUT"
    reply_code: ClassVar[ReplyCode] = ReplyCode.VALIDATION_FAILED
