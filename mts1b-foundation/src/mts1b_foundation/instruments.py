"""Instruments of every asset class the stack trades, as one discriminated union.

Why a union on ``asset_class``: a message carrying "an instrument" must say precisely which kind,
and pydantic can then validate the kind-specific fields (an option needs a strike, a future an
expiry) and refuse fields that make no sense for it.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import Field, ModelWrapValidatorHandler, TypeAdapter, model_validator

from mts1b_foundation.enums import AssetClass, OptionRight
from mts1b_foundation.symbols import Symbol
from mts1b_foundation.wire import (
    Identifier,
    PositiveDecimal,
    UtcDatetime,
    ValidatedInstances,
    WireModel,
)

__all__ = [
    "ETF",
    "INSTRUMENT_SCHEMA_VERSION",
    "CryptoPair",
    "Equity",
    "EventContract",
    "Future",
    "FxPair",
    "Instrument",
    "InstrumentBase",
    "Option",
    "instrument_adapter",
]

Currency = Annotated[str, Field(pattern=r"^[A-Z0-9]{3,10}$")]


class InstrumentBase(WireModel):
    """What every tradable thing has: a symbol, where it trades, and its price/size grid."""

    SCHEMA_VERSION = 2
    READABLE_VERSIONS = frozenset({1})

    symbol: Symbol
    currency: Currency = "USD"
    venue: Identifier = "SMART"
    tick_size: PositiveDecimal = Decimal("0.01")
    lot_size: PositiveDecimal = Decimal("1")
    min_quantity: PositiveDecimal = Decimal("1")

    @model_validator(mode="wrap")
    @classmethod
    def _remember_validated(cls, data: Any,
                            handler: ModelWrapValidatorHandler[InstrumentBase]
                            ) -> InstrumentBase:
        """Remember an instrument that passed validation (:func:`validated_instrument`, for
        ``Order.assigned``'s fast path): only one validated from data (an instance given
        where an instrument is expected is taken as it is, unchecked), and only when this is
        the outermost validator of its class - a kind with a check of its own around it (an
        FX or crypto pair's distinct currencies) is not remembered and is validated again
        where it matters. Kept by identity and weakly, like ``Order``'s; every field of an
        instrument is immutable, so a frozen instance stays as validated."""
        inst = handler(data)
        if not isinstance(data, InstrumentBase) and _remembered_last(type(inst)):
            _VALIDATED.add(inst)
        return inst

    @property
    def key(self) -> str:
        """Stable identity across messages: ``<asset_class>:<symbol>@<venue>``."""
        return f"{getattr(self, 'asset_class', 'instrument')}:{self.symbol}@{self.venue}"

    def round_price(self, price: Decimal) -> Decimal:
        """Nearest price on this instrument's tick grid (half-even, as exchanges round)."""
        return (price / self.tick_size).quantize(Decimal(1)) * self.tick_size

    def round_quantity_down(self, quantity: Decimal) -> Decimal:
        """Largest multiple of ``lot_size`` not exceeding ``|quantity|``, keeping the sign."""
        lots = (abs(quantity) / self.lot_size).to_integral_value(rounding="ROUND_FLOOR")
        rounded = lots * self.lot_size
        return rounded if quantity >= 0 else -rounded


class Equity(InstrumentBase):
    asset_class: Literal[AssetClass.EQUITY] = AssetClass.EQUITY
    isin: str | None = Field(default=None, pattern=r"^[A-Z]{2}[A-Z0-9]{9}[0-9]$")
    sector: str | None = None


class ETF(InstrumentBase):
    asset_class: Literal[AssetClass.ETF] = AssetClass.ETF
    isin: str | None = Field(default=None, pattern=r"^[A-Z]{2}[A-Z0-9]{9}[0-9]$")


class Option(InstrumentBase):
    asset_class: Literal[AssetClass.OPTION] = AssetClass.OPTION
    underlying: Symbol
    expiry: dt.date
    strike: PositiveDecimal
    right: OptionRight
    multiplier: PositiveDecimal = Decimal("100")
    exercise_style: Literal["american", "european"] = "american"


class Future(InstrumentBase):
    asset_class: Literal[AssetClass.FUTURE] = AssetClass.FUTURE
    root: Symbol
    expiry: dt.date
    multiplier: PositiveDecimal


class FxPair(InstrumentBase):
    asset_class: Literal[AssetClass.FX] = AssetClass.FX
    base: Currency
    quote: Currency
    tick_size: PositiveDecimal = Decimal("0.00001")

    @model_validator(mode="after")
    def _distinct(self) -> FxPair:
        if self.base == self.quote:
            raise ValueError(f"base and quote must differ, both are {self.base!r}")
        if self.currency != self.quote:
            raise ValueError(
                f"currency must be the quote currency {self.quote!r}, got {self.currency!r}"
            )
        return self


class CryptoPair(InstrumentBase):
    asset_class: Literal[AssetClass.CRYPTO] = AssetClass.CRYPTO
    base: Currency
    quote: Currency
    lot_size: PositiveDecimal = Decimal("0.00000001")
    min_quantity: PositiveDecimal = Decimal("0.00000001")

    @model_validator(mode="after")
    def _distinct(self) -> CryptoPair:
        if self.base == self.quote:
            raise ValueError(f"base and quote must differ, both are {self.base!r}")
        return self


class EventContract(InstrumentBase):
    """A binary contract on an event outcome: sports results or prediction markets.

    Pays ``payout`` per contract if ``outcome`` happens, nothing otherwise; prices live in
    ``[0, payout]``.
    """

    asset_class: Literal[AssetClass.SPORTS, AssetClass.PREDICTION]
    event: str = Field(min_length=1, max_length=500)
    outcome: str = Field(min_length=1, max_length=200)
    settlement: UtcDatetime
    payout: PositiveDecimal = Decimal("1")


_VALIDATED = ValidatedInstances()
_LAST: dict[type, bool] = {}


def _remembered_last(cls: type[InstrumentBase]) -> bool:
    """Whether ``_remember_validated`` is the outermost model validator (after or wrap) of
    ``cls``: pydantic applies them in the order of this mapping, the base class's first, each
    around the ones before it."""
    last = _LAST.get(cls)
    if last is None:
        outer = [name for name, d in cls.__pydantic_decorators__.model_validators.items()
                 if d.info.mode != "before"]
        last = _LAST[cls] = bool(outer) and outer[-1] == "_remember_validated"
    return last


def validated_instrument(value: object) -> bool:
    """Whether ``value`` is an instrument instance that passed its class's validation (and
    not a copy of one, nor one built with ``model_construct``)."""
    return value in _VALIDATED


Instrument = Annotated[
    Equity | ETF | Option | Future | FxPair | CryptoPair | EventContract,
    Field(discriminator="asset_class"),
]

INSTRUMENT_SCHEMA_VERSION = InstrumentBase.SCHEMA_VERSION
"""Version of the ``Instrument`` union's JSON Schema: that of the instruments it joins."""

instrument_adapter: TypeAdapter[Instrument] = TypeAdapter(Instrument)
"""Validate a dict or JSON into the right instrument class by its ``asset_class``."""
