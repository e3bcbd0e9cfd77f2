"""The composition's wire models, built without validating 60,000 decimals one by one.

Why: pydantic validates each entry of an allocation with a Python call (the symbol's pattern,
the decimal's domain) - for a dense fund of 20 sleeves x 3,000 symbols about 100 ms, more than
all the rest of ``compose``. Every entry compose writes is made of values that were validated
already, so the checks can be done in bulk and proven instead:

- strategy ids and symbols were checked on input (:mod:`~mts1b_portfolio.inputs`); the number
  of sleeves is checked here against :data:`~mts1b_foundation.sleeves.MAX_SLEEVES`;
- every share is a sum of wire decimals and integer multiples of a lot size (a wire decimal),
  so it has at most 12 places and is exact (below 1E+15 a 12-place number has at most 27
  digits, inside Decimal's default 28);
- a share below 1E+8 in magnitude has at most 8 + 12 = 20 significant digits, so a symbol
  whose largest share (bounded in float with a margin) is below 1E+8 is in the numeric domain
  entry by entry; every entry of any other symbol is checked with
  :func:`~mts1b_foundation.wire.check_wire_decimal`;
- each symbol's total over the sleeves (the model's own validator) is checked exactly.

When everything holds the model is built with ``model_construct`` (the same object validation
would give; a test compares the two); when anything does not, with
:func:`~mts1b_foundation.parse_message`, which raises
:class:`~mts1b_foundation.ValidationFailed` naming the entry.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from decimal import Decimal, localcontext

import numpy as np
import numpy.typing as npt
from mts1b_foundation import SleeveAllocation, parse_message
from mts1b_foundation.sleeves import MAX_SLEEVES
from mts1b_foundation.wire import check_wire_decimal

__all__ = ["allocation_model", "exact_totals"]

_SAFE = 1e8 * (1 - 1e-9)
"""Largest share magnitude that has at most 20 digits at 12 places, with a margin for the
float bound."""


def _in_domain(value: Decimal) -> bool:
    try:
        check_wire_decimal(value)
    except ValueError:
        return False
    return True


def allocation_model(fund_id: str, as_of: dt.datetime,
                     sleeves: dict[str, dict[str, Decimal]], symbols: Sequence[str],
                     largest: npt.NDArray[np.float64], totals: Sequence[Decimal]
                     ) -> SleeveAllocation:
    """The :class:`~mts1b_foundation.SleeveAllocation` of ``sleeves``.

    ``symbols`` (sorted), ``largest`` (per symbol, an upper bound of ``|share|`` over the
    sleeves) and ``totals`` (per symbol, the exact sum over the sleeves) are aligned.
    ``as_of`` must already be in UTC within the wire's window.
    """
    proven = 1 <= len(sleeves) <= MAX_SLEEVES and all(_in_domain(t) for t in totals)
    if proven:
        risky = {symbols[i] for i in np.flatnonzero(~(largest < _SAFE)).tolist()}
        proven = all(_in_domain(q) for shares in sleeves.values()
                     for symbol, q in shares.items() if symbol in risky)
    if proven:
        return SleeveAllocation.model_construct(
            schema_version=SleeveAllocation.SCHEMA_VERSION, fund_id=fund_id, as_of=as_of,
            sleeves=sleeves)
    return parse_message(SleeveAllocation, {"fund_id": fund_id, "as_of": as_of,
                                            "sleeves": sleeves})


def exact_totals(sleeves: Mapping[str, Mapping[str, Decimal]]) -> dict[str, Decimal]:
    """Per symbol, the exact sum over the sleeves, in one wide decimal context (a sum of many
    27-digit wire values can need more than the default 28 digits). The same sums as
    :meth:`~mts1b_foundation.SleeveAllocation.totals`, with one context for all of them
    instead of one per symbol: the difference is a tenth of a dense compose's time."""
    totals: dict[str, Decimal] = {}
    with localcontext() as ctx:
        ctx.prec = 96
        for holdings in sleeves.values():
            for symbol, quantity in holdings.items():
                totals[symbol] = totals.get(symbol, Decimal(0)) + quantity
    return totals
