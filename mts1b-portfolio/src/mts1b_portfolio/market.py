"""The symbols of one composition with their prices and trading grid, as arrays.

Why a module of its own: weights become shares through ``price x multiplier`` and shares are
traded in lots; every step of the composer needs these per symbol, as floats for the solver
and as Decimals for the exact output. A symbol without an instrument trades like an
:class:`~mts1b_foundation.Equity` (the OMS's rule): multiplier 1 and the equity defaults for
``lot_size`` and ``min_quantity``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
from mts1b_foundation.instruments import InstrumentBase

from mts1b_portfolio.errors import ComposeInputError
from mts1b_portfolio.inputs import check_decimal

__all__ = ["Market"]

FloatArray = npt.NDArray[np.float64]

_DEFAULT_LOT: Decimal = InstrumentBase.model_fields["lot_size"].default
_DEFAULT_MIN: Decimal = InstrumentBase.model_fields["min_quantity"].default


def _multiplier(instrument: Any) -> Decimal:
    """Contract multiplier: options and futures carry one, everything else trades 1:1."""
    value = getattr(instrument, "multiplier", None)
    return value if isinstance(value, Decimal) else Decimal(1)


@dataclass(frozen=True)
class Market:
    """Per symbol (sorted): the value of one share (``price x multiplier``), the lot size and
    the minimum quantity, exact and as float64 arrays of shape ``(n,)``."""

    symbols: tuple[str, ...]
    value: tuple[Decimal, ...]
    lot: tuple[Decimal, ...]
    min_quantity: tuple[Decimal, ...]
    value_f: FloatArray
    lot_f: FloatArray

    @classmethod
    def build(cls, symbols: Sequence[str], prices: Mapping[str, Any],
              instruments: Mapping[str, Any] | None) -> Market:
        """Check that every symbol has a price > 0 and, when given, an instrument of that
        symbol; build the arrays."""
        if not isinstance(prices, Mapping):
            raise ComposeInputError("prices", type(prices).__name__,
                                    "expected a mapping of symbol -> price")
        if instruments is not None and not isinstance(instruments, Mapping):
            raise ComposeInputError("instruments", type(instruments).__name__,
                                    "expected a mapping of symbol -> instrument")
        values, lots, minimums = [], [], []
        for symbol in symbols:
            if symbol not in prices:
                raise ComposeInputError(f"prices[{symbol!r}]", None,
                                        "missing: every symbol a sleeve or the holdings name "
                                        "needs a price")
            price = check_decimal(prices[symbol], f"prices[{symbol!r}]")
            if price <= 0:
                raise ComposeInputError(f"prices[{symbol!r}]", prices[symbol], "must be > 0")
            instrument = instruments.get(symbol) if instruments is not None else None
            if instrument is None:
                values.append(price)
                lots.append(_DEFAULT_LOT)
                minimums.append(_DEFAULT_MIN)
                continue
            if not isinstance(instrument, InstrumentBase) or instrument.symbol != symbol:
                raise ComposeInputError(f"instruments[{symbol!r}]", instrument,
                                        "expected an instrument of that symbol")
            values.append(price * _multiplier(instrument))
            lots.append(instrument.lot_size)
            minimums.append(instrument.min_quantity)
        return cls(tuple(symbols), tuple(values), tuple(lots), tuple(minimums),
                   np.array([float(v) for v in values], dtype=np.float64),
                   np.array([float(v) for v in lots], dtype=np.float64))
